import TroupeActors
import TroupeDiscovery
import TroupeEtcd
import Foundation
import Testing
import TroupeTestSupport
import TroupeActorsEtcd

/// The `troupe` executable built next to the test bundle.
func troupeExecutable() throws -> String {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let path = directory.appendingPathComponent("troupe").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw DeadlineExceeded(description: "the troupe executable is not built at \(path) (run swift build --build-tests)")
    }
    return path
}

@Suite("troupe node processes on etcd", .enabled(if: etcdAvailable, "etcd is not installed (scripts/test installs it)"), .serialized)
struct NodeProcessTests {
    @Test("3 troupe node processes share one etcd; after kill -9 of one, its keys are served by the others within TTL + 2 s, state intact")
    func killNode() async throws {
        let troupe = try troupeExecutable()
        try await withEtcdServer { server in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-nodes-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            var configs: [String] = []
            for index in 1...3 {
                let port = try await ServerProcess.freePort()
                let path = directory.appendingPathComponent("node-\(index).json").path
                try """
                    {"cluster": "bank", "node": "node-\(index)", "host": "127.0.0.1", "port": \(port), "secretEnv": "TROUPE_SECRET",
                     "etcd": {"endpoints": ["\(server.endpoint)"], "ttlSeconds": 2, "actorState": true}, "callTimeoutMs": 3000}
                    """.write(toFile: path, atomically: true, encoding: .utf8)
                configs.append(path)
            }
            let environment = ["TROUPE_SECRET": "node-process-test-secret-0123456789"]
            var processes: [Process] = []
            defer { for process in processes where process.isRunning { process.terminate() } }
            for config in configs {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: troupe)
                process.arguments = ["node", "--config", config, "--log-level", "warning"]
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
                process.standardOutput = FileHandle.nullDevice
                process.standardError = FileHandle.nullDevice
                try process.run()
                processes.append(process)
            }
            func bank(_ words: [String]) async throws -> String {
                try await Command.runDetached([troupe, "bank", words[0], "--config", configs[0]] + words.dropFirst(), environment: environment)
            }
            // Wait until all three nodes registered.
            try await waitUntil(timeout: .seconds(20)) {
                (try? Command.run(["etcdctl", "--endpoints=\(server.endpoint)", "get", "--prefix", "/services/troupe-bank/", "--keys-only"],
                                  environment: ["ETCDCTL_API": "3"]))?.split(separator: "\n").filter { !$0.isEmpty }.count == 3
            }
            let accounts = (0..<12).map { "acct-\($0)" }
            for account in accounts { _ = try await bank(["deposit", account, "100"]) }
            // "acct-N: 100 (on node-X)"
            let balances = try await bank(["balance"] + accounts)
            let owners = Dictionary(uniqueKeysWithValues: balances.split(separator: "\n").compactMap { line -> (String, String)? in
                let parts = line.split(separator: " ")
                guard parts.count == 4 else { return nil }
                return (String(parts[0].dropLast()), String(parts[3].dropLast()))
            })
            #expect(owners.count == accounts.count, "\(balances)")
            let victim = try #require(owners.values.first { $0 != "node-1" })
            let orphaned = owners.filter { $0.value == victim }.map(\.key)
            let index = try #require(Int(victim.dropFirst("node-".count)))
            kill(processes[index - 1].processIdentifier, SIGKILL)
            let killed = ContinuousClock.now
            var served = false
            var askedAt = killed
            while ContinuousClock.now - killed < .seconds(2 + 2 + 3) {
                askedAt = ContinuousClock.now
                if let output = try? await bank(["balance"] + orphaned),
                   output.split(separator: "\n").count == orphaned.count,
                   output.split(separator: "\n").allSatisfy({ $0.contains(": 100 (on ") && !$0.contains(victim) }) {
                    served = true
                    break
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            // The client process needs a moment to start and learn the members, so the deadline applies
            // to when the successful request was issued.
            let elapsed = askedAt - killed
            #expect(served, "the dead node's accounts were not served with their balance within \(elapsed)")
            #expect(elapsed <= .seconds(2 + 2), "served by a request issued \(elapsed) after the kill (TTL 2 s + 2 s)")
        }
    }

    @Test("a node whose etcd is gone still stops within 3 s of SIGTERM (clean-ups wait at most a second for etcd)")
    func stopsWithoutEtcd() async throws {
        let troupe = try troupeExecutable()
        try await withEtcdServer { server in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-nodes-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let port = try await ServerProcess.freePort()
            let config = directory.appendingPathComponent("node-1.json").path
            try """
                {"cluster": "bank", "node": "node-1", "host": "127.0.0.1", "port": \(port), "secretEnv": "TROUPE_SECRET",
                 "etcd": {"endpoints": ["\(server.endpoint)"], "ttlSeconds": 5}}
                """.write(toFile: config, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: troupe)
            process.arguments = ["node", "--config", config, "--log-level", "warning"]
            process.environment = ProcessInfo.processInfo.environment.merging(["TROUPE_SECRET": "node-process-test-secret-0123456789"]) { $1 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            try await waitUntil(timeout: .seconds(20)) {
                (try? Command.run(["etcdctl", "--endpoints=\(server.endpoint)", "get", "--prefix", "/services/troupe-bank/", "--keys-only"],
                                  environment: ["ETCDCTL_API": "3"]))?.split(separator: "\n").filter { !$0.isEmpty }.count == 1
            }
            await server.stop()
            let stopped = ContinuousClock.now
            process.terminate()
            while process.isRunning, ContinuousClock.now - stopped < .seconds(15) { try await Task.sleep(for: .milliseconds(50)) }
            let took = ContinuousClock.now - stopped
            #expect(!process.isRunning)
            #expect(took < .seconds(3), "the node took \(took) to stop after SIGTERM with etcd gone")
        }
    }
}

@Suite("Actor state in etcd", .enabled(if: etcdAvailable, "etcd is not installed (scripts/test installs it)"))
struct EtcdActorStateStoreTests {
    @Test("compare-and-set on the etcd version: the first write needs 0, a stale version is refused")
    func compareAndSet() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                let store = EtcdActorStateStore(etcd: etcd)
                #expect(try await store.load(type: "Account", key: "a") == nil)
                #expect(try await store.compareAndSet(type: "Account", key: "a", expectedVersion: 0, bytes: [1]))
                #expect(try await !store.compareAndSet(type: "Account", key: "a", expectedVersion: 0, bytes: [2]), "already exists")
                #expect(try await store.compareAndSet(type: "Account", key: "a", expectedVersion: 1, bytes: [3]))
                #expect(try await !store.compareAndSet(type: "Account", key: "a", expectedVersion: 1, bytes: [4]), "stale")
                #expect(try await store.load(type: "Account", key: "a") == VersionedState(bytes: [3], version: 2))
                try await store.delete(type: "Account", key: "a")
                #expect(try await store.load(type: "Account", key: "a") == nil)
            }
        }
    }
}
