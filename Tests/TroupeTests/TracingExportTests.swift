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

    @Test("troupe demo exports one trace per request: the gateway's span, the actor calls under it on both nodes, the bus consumer; JSON logs carry the ids")
    func demoTraces() async throws {
        let python = OTLPReceiver.python
        let script = OTLPReceiver.script
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-spans-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let receiver = try await ServerProcess.launch("otlp-receiver", installHint: "scripts/install-servers", executable: python) { port, _ in
            [script, "\(port)", output]
        }
        defer { receiver.terminate() }
        let demoPort = try await ServerProcess.freePort()
        let logs = try await Command.runDetached(
            [ShopClusterTests.troupeExecutable, "demo", "--nodes", "2", "--duration", "2", "--port", "\(demoPort)", "--log-level", "warning"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(receiver.port)", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                          "OTEL_BSP_SCHEDULE_DELAY": "200", "TROUPE_LOG_FORMAT": "json", "TROUPE_LOG_LEVEL": "debug"],
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

        // Logs: every line a JSON object; records made inside a span carry its ids.
        let lines = logs.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(lines.count > 10)
        let records = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(records.count == lines.count, "every log line parses as JSON")
        #expect(records.allSatisfy { $0["level"] != nil && $0["message"] != nil && $0["time"] != nil })
        let traced = records.filter { ($0["trace_id"] as? String).map { id in traces[id] != nil } == true }
        #expect(!traced.isEmpty, "log records made in a span name a trace the receiver has")
    }
}
