import Foundation
import Testing
import TroupeTestSupport

/// How the processes start and stop, as an operator sees them: a stop asked at any time is honoured at once,
/// and a server that cannot be reached is named, once per interval, not once per retry.
@Suite("Start-up and stop of troupe processes", .serialized)
struct StartStopTests {
    /// `troupe` with `arguments`, its output in a file of its own.
    static func launch(_ arguments: [String]) throws -> (process: Process, log: URL) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-startstop-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ShopClusterTests.troupeExecutable)
        process.arguments = arguments
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return (process, log)
    }

    /// Sends `signal` and returns how long the process took to exit (it is killed after `limit`).
    static func stop(_ process: Process, with signal: Int32, limit: Duration = .seconds(90)) async throws -> Duration {
        let start = ContinuousClock.now
        kill(process.processIdentifier, signal)
        while process.isRunning {
            if ContinuousClock.now - start > limit {
                kill(process.processIdentifier, SIGKILL)
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return ContinuousClock.now - start
    }

    static func waitFor(_ text: String, in log: URL, timeout: Duration) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if output.contains(text) { return output }
            guard ContinuousClock.now < deadline else { throw StartStopFailure(description: "no \"\(text)\" within \(timeout): \(output.suffix(2000))") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    struct StartStopFailure: Error, CustomStringConvertible {
        var description: String
    }

    @Test("troupe demo, serving until Ctrl-C, stops promptly (measured 0.3 s; bound 2 s for loaded machines)")
    func demoStops() async throws {
        let port = try await ServerProcess.freePort()
        let (process, log) = try Self.launch(["demo", "--port", "\(port)"])
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }  // a failed wait must not leave it running
            try? FileManager.default.removeItem(at: log)
        }
        _ = try await Self.waitFor("Ctrl-C stops", in: log, timeout: .seconds(60))
        let took = try await Self.stop(process, with: SIGINT)
        #expect(took < .seconds(2), "the demo took \(took) to stop")
        #expect(process.terminationStatus == 0)
    }

    @Test("a gateway whose Redis and MongoDB are down names them once per 10 s and stops at once on SIGTERM, before it was ever ready")
    func gatewayWaitingForServers() async throws {
        let (redisPort, mongoPort, httpPort, memberPort) = (try await ServerProcess.freePort(), try await ServerProcess.freePort(),
                                                            try await ServerProcess.freePort(), try await ServerProcess.freePort())
        let configuration = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-gw-down-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: configuration) }
        try """
            {"cluster": "shop", "node": "gw-1", "host": "127.0.0.1", "port": 0, "secret": "0123456789abcdef0123",
             "members": [{"node": "node-1", "host": "127.0.0.1", "port": \(memberPort)}],
             "mongo": {"uri": "mongodb://127.0.0.1:\(mongoPort)/", "database": "shop"}, "redis": {"url": "redis://127.0.0.1:\(redisPort)"},
             "gateway": {"port": \(httpPort), "jwtSecret": "0123456789abcdef0123456789abcdef", "workerID": 1}}
            """.write(to: configuration, atomically: true, encoding: .utf8)
        let (process, log) = try Self.launch(["gateway", "--config", configuration.path])
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(at: log)
        }
        let output = try await Self.waitFor("mongodb server unreachable", in: log, timeout: .seconds(30))
        try await Task.sleep(for: .seconds(3))
        let took = try await Self.stop(process, with: SIGTERM)
        let lines = ((try? String(contentsOf: log, encoding: .utf8)) ?? output).split(separator: "\n")
        #expect(took < .seconds(2), "the gateway took \(took) to honour SIGTERM")
        #expect(lines.contains { $0.contains("redis unreachable") && $0.contains("127.0.0.1:\(redisPort)") && $0.contains("Connection refused") },
                "\(lines)")
        #expect(lines.contains { $0.contains("mongodb server unreachable") && $0.contains("127.0.0.1:\(mongoPort)") }, "\(lines)")
        #expect(lines.count <= 10, "a few lines in ~4 s, not one per retry: \(lines.count) lines")
        #expect(!lines.contains { $0.contains("gateway ready") }, "never ready without its servers")
        #expect(lines.contains { $0.contains("stopped before it was ready") })
    }
}
