import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import TroupeCore
import TroupeTestSupport

/// The executable's `/metrics` as Prometheus reads it: `troupe demo` (the shop on embedded engines, metrics on
/// its gateway) under its own workload, scraped and linted with promtool.
@Suite("Prometheus export of a running troupe", .serialized, .enabled(if: PrometheusLinter.shouldRun))
struct MetricsExportTests {
    /// `GET url` (nil when it cannot be fetched yet).
    static func fetch(_ url: String) async -> String? {
        guard let url = URL(string: url), let (data, response) = try? await URLSession.shared.data(from: url),
              (response as? HTTPURLResponse)?.statusCode == 200 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    @Test("/metrics of troupe demo passes promtool check metrics, with HELP, RED series by route and actor type, and process figures")
    func demoMetricsLint() async throws {
        let troupe = ShopClusterTests.troupeExecutable
        let demo = try await ServerProcess.launch("troupe", installHint: "swift build", executable: troupe, startTimeout: .seconds(60)) { port, _ in
            ["demo", "--nodes", "2", "--duration", "60", "--port", "\(port)", "--log-level", "warning"]
        }
        defer { demo.send(SIGKILL); demo.terminate() }
        // Wait until the workload has placed orders through the gateway (the series exist once first used).
        let wanted = [#"troupe_gateway_requests_total{route="/orders",method="POST",status="2xx"}"#, #"troupe_actor_calls_total{"#,
                      "troupe_actor_call_duration_seconds_bucket{", "troupe_gateway_request_duration_seconds_bucket{",
                      #"troupe_cache_reads_total{cache="#, #"troupe_rate_limit_decisions_total{limiter="user",decision="allowed"}"#,
                      #"troupe_sagas_finished_total{saga="#, #"troupe_saga_steps_total{saga="#, "troupe_saga_step_duration_seconds_bucket{",
                      #"troupe_outbox_relayed_total{outcome="published"}"#, "troupe_actor_activations{"]
        let text = try await withDeadline(.seconds(60)) {
            while true {
                if let text = await Self.fetch("http://127.0.0.1:\(demo.port)/metrics"), wanted.allSatisfy({ text.contains($0) }) { return text }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        let problems = try PrometheusLinter.problems(in: text)
        #expect(problems == nil, "promtool: \(problems ?? "")")

        // Every family Troupe reports here is one it describes, with its HELP line.
        let families = Set(text.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("# TYPE ") else { return nil }
            return line.split(separator: " ").dropFirst(2).first.map(String.init)
        })
        let described = Set(MetricFamilies.all.map(\.name))
        for family in families where family.hasPrefix("troupe_") {
            #expect(described.contains(family), "\(family) is reported but not in MetricFamilies")
            #expect(text.contains("# HELP \(family) "), "\(family) has no HELP")
        }
        for process in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"] {
            #expect(families.contains(process), "\(process) missing")
        }
        // Durations in seconds from 100 µs: a local actor call lands in the low buckets, not all in the first.
        #expect(text.contains(#"le="0.0001""#), "buckets start at 100 µs")
        #expect(text.contains(#"type="OrderActor""#), "actor calls are labelled by actor type")
        #expect(text.contains(#"type="OrderActor",method="place",locality=""#), "…by method, and whether they ran on the calling node")
        #expect(text.contains(#"locality="local""#) && text.contains(#"locality="remote""#))
        #expect(text.contains("troupe_saga_duration_seconds_bucket{"), "sagas' durations from start to final status")
        #expect(text.contains("troupe_outbox_relay_lag_seconds_bucket{"), "the outbox's relay lag")
        #expect(text.contains("\ntroupe_outbox_backlog "), "the outbox's backlog")
        let activations = text.split(separator: "\n").filter { $0.hasPrefix("troupe_actor_activations{") }
        #expect(activations.contains { $0.contains(#"type="OrderActor""#) && !$0.hasSuffix(" 0.0") }, "activations by type: \(activations)")
        // No key, id or user in any label: no user name (user-N) and no generated id (ten digits or more) in a value.
        let idInLabel = try NSRegularExpression(pattern: #"="[^"]*(user-\d|\d{10,})[^"]*""#)
        let found = idInLabel.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)).flatMap { Range($0.range, in: text) }.map { text[$0] }
        #expect(found == nil, "a label holds a user or an id: \(found ?? "")")
    }
}
