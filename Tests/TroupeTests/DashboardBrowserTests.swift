import Foundation
import Testing
import TroupeTestSupport

/// The live dashboard as a person sees it: `troupe demo` under its own workload, the page opened in headless
/// Chromium (`scripts/dashboard-check`, over the DevTools protocol), read from the DOM twice, seconds apart.
@Suite("The live dashboard in a browser", .serialized, .enabled(if: ServerProcess.shouldRun("chromium")))
struct DashboardBrowserTests {
    struct Reading: Decodable {
        struct Chart: Decodable {
            var points: Int
            var last: [String: Double]
        }
        var status: String
        var charts: [String: Chart]
        var tables: [String: Int]
    }

    struct Check: Decodable {
        var first: Reading
        var second: Reading
    }

    @Test("the charts fill from the pushed samples and move; the tables show the members and nodes")
    func liveCharts() async throws {
        let demo = try await ServerProcess.launch("troupe", installHint: "swift build", executable: ShopClusterTests.troupeExecutable,
                                                  startTimeout: .seconds(60)) { port, _ in
            ["demo", "--nodes", "2", "--duration", "90", "--port", "\(port)", "--log-level", "warning"]
        }
        defer { demo.send(SIGKILL); demo.terminate() }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/dashboard-check").path
        let output = try await Command.runDetached([script, "http://127.0.0.1:\(demo.port)/dashboard", "--wait", "8", "--again", "4"],
                                                   timeout: .seconds(120))
        guard let line = output.split(separator: "\n").last, let check = try? JSONDecoder().decode(Check.self, from: Data(line.utf8)) else {
            Issue.record("dashboard-check printed no reading: \(output.suffix(2000))")
            return
        }
        let (first, second) = (check.first, check.second)
        #expect(second.status.hasPrefix("live"), "the page receives the stream: \(second.status)")
        for chart in ["orders", "latency", "http", "calls", "callLatency", "activations", "sagas", "sagasActive", "bus", "outbox", "cache"] {
            #expect((first.charts[chart]?.points ?? 0) > 0, "\(chart) has points after 8 s: \(first.charts[chart].map { "\($0)" } ?? "missing")")
            #expect((second.charts[chart]?.points ?? 0) > (first.charts[chart]?.points ?? 0), "\(chart) gained points in 4 s")
        }
        #expect(first.charts["orders"]?.last.keys.contains("completed") == true, "orders by final state: \(first.charts["orders"]?.last ?? [:])")
        #expect(first.charts["calls"]?.last.keys.sorted() == ["node-1", "node-2"], "calls per node")
        let moving = ["http", "calls", "orders", "activations"].filter { first.charts[$0]?.last != second.charts[$0]?.last }
        #expect(!moving.isEmpty, "the newest values change over time")
        #expect(second.tables["members"] == 2 && second.tables["nodes"] == 2, "\(second.tables)")
        #expect(second.tables["backlog"] == 2)
    }
}
