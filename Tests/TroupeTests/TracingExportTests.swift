import Foundation
import Testing
import TroupeTestSupport

/// Traces over OTLP from a running troupe, into a real receiver: `scripts/otlp-receiver` (opentelemetry-proto's
/// messages, installed by `scripts/install-servers`) collects what `troupe demo` exports while its workload runs.
enum OTLPReceiver {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// The project's venv (not a python on PATH: the receiver needs opentelemetry-proto).
    static let python = repository.appendingPathComponent(".venv-mongo/bin/python").path
    static let script = repository.appendingPathComponent("scripts/otlp-receiver").path
}

@Suite("OTLP trace export and JSON logs of a running troupe", .serialized,
       .enabled(if: FileManager.default.isExecutableFile(atPath: OTLPReceiver.python) || TestEnv.isCI))
struct TracingExportTests {
    struct Span: Decodable {
        var trace: String, span: String, parent: String, name: String, service: String
    }

    @Test("troupe demo exports one trace per request (the gateway's span, the actor calls under it on both nodes, the bus consumer), its metrics and its logs over OTLP; JSON logs carry the ids")
    func demoTraces() async throws {
        let python = OTLPReceiver.python
        let script = OTLPReceiver.script
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-spans-\(UUID().uuidString).jsonl").path
        defer { for suffix in ["", ".metrics", ".logs"] { try? FileManager.default.removeItem(atPath: output + suffix) } }
        let receiver = try await ServerProcess.launch("otlp-receiver", installHint: "scripts/install-servers", executable: python) { port, _ in
            [script, "\(port)", output]
        }
        defer { receiver.terminate() }
        let demoPort = try await ServerProcess.freePort()
        let logs = try await Command.runDetached(
            [ShopClusterTests.troupeExecutable, "demo", "--nodes", "2", "--duration", "2", "--port", "\(demoPort)", "--log-level", "warning"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(receiver.port)", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                          "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "500",
                          "TROUPE_LOG_FORMAT": "json", "TROUPE_LOG_LEVEL": "debug"],
            timeout: .seconds(120))

        // The demo flushed its spans before it exited.
        let text = try String(contentsOfFile: output, encoding: .utf8)
        let spans = try text.split(separator: "\n").map { try JSONDecoder().decode(Span.self, from: Data($0.utf8)) }
        #expect(spans.count > 100, "\(spans.count) spans")
        let byID = Dictionary(spans.map { ($0.span, $0) }, uniquingKeysWith: { first, _ in first })
        let orphans = spans.filter { !$0.parent.isEmpty && byID[$0.parent] == nil }
        #expect(orphans.isEmpty, "spans whose parent never arrived: \(orphans.prefix(3).map(\.name))")
        #expect(Set(spans.map(\.service)) == ["troupe-demo"])
        // An order: POST at the root, actor calls under it (served by both nodes over the cluster transport),
        // the bus consumer of its event in the same trace.
        let traces = Dictionary(grouping: spans, by: \.trace)
        let orders = traces.values.filter { trace in
            trace.contains { $0.name == "POST" && $0.parent.isEmpty }
                && trace.contains { $0.name == "actor.call" && byID[$0.parent]?.name == "POST" }
                && trace.contains { $0.name.hasPrefix("bus.consume") }
        }
        #expect(orders.count > 10, "\(orders.count) order traces with the gateway span, actor calls and the bus consumer")
        #expect(orders.contains { trace in trace.filter { $0.name == "actor.call" }.count >= 2 }, "nested actor calls in one trace")
        // The rest of the tree: the saga's steps, the outbox relay, the bus publish, and the consumer under the publish.
        let whole = orders.filter { trace in
            trace.contains { $0.name.hasPrefix("saga.step ") } && trace.contains { $0.name == "outbox.relay" }
                && trace.contains { $0.name.hasPrefix("bus.consume") && byID[$0.parent]?.name.hasPrefix("bus.publish") == true }
        }
        #expect(whole.count > 10, "\(whole.count) order traces with saga steps, the outbox relay and publish → consume")
        #expect(spans.contains { $0.name.hasPrefix("actor.call") && byID[$0.parent]?.name.hasPrefix("saga.step ") == true },
                "a saga step's actor calls are its children")

        // Logs: every line a JSON object; records made inside a span carry its ids.
        let lines = logs.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(lines.count > 10)
        let records = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(records.count == lines.count, "every log line parses as JSON")
        #expect(records.allSatisfy { $0["level"] != nil && $0["message"] != nil && $0["time"] != nil })
        let traced = records.filter { ($0["trace_id"] as? String).map { id in traces[id] != nil } == true }
        #expect(!traced.isEmpty, "log records made in a span name a trace the receiver has")

        // Metrics over OTLP too (beside /metrics): the same families, with their labels.
        let points = try String(contentsOfFile: output + ".metrics", encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(Point.self, from: Data($0.utf8)) }
        let calls = points.filter { $0.name == "troupe_actor_calls_total" && $0.attributes["outcome"] == "ok" }
        #expect(Set(calls.compactMap { $0.attributes["node"] }) == ["node-1", "node-2"], "actor calls of both nodes")
        #expect(calls.contains { $0.value > 0 })
        #expect(points.contains { $0.name == "troupe_gateway_request_duration_seconds" && $0.kind == "histogram" && $0.value > 0 })
        #expect(points.contains { $0.name == "troupe_sagas_finished_total" && $0.attributes["status"] == "completed" && $0.value > 0 })
        #expect(Set(points.map(\.service)) == ["troupe-demo"])
        // Log records over OTLP: those made in a span carry its ids, and the receiver has that trace.
        let exported = try String(contentsOfFile: output + ".logs", encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(LogRecord.self, from: Data($0.utf8)) }
        #expect(exported.count > 10, "\(exported.count) log records exported")
        #expect(exported.contains { !$0.trace.isEmpty && traces[$0.trace] != nil }, "exported records made in a span name its trace")
    }

    struct Point: Decodable {
        var name: String
        var kind: String
        var value: Double
        var attributes: [String: String]
        var service: String
    }

    struct LogRecord: Decodable {
        var severity: String
        var body: String
        var trace: String
    }
}
