import Foundation
import Testing
import TroupeCore
import TroupeEtcd
import TroupeTestSupport

let etcdAvailable = ServerProcess.shouldRun("etcd")
let etcdMissing = "etcd is not installed (scripts/test installs etcd-server)"

func withEtcd<T: Sendable>(_ body: @Sendable (ServerProcess, EtcdClient) async throws -> T) async throws -> T {
    let server = try await ServerProcess.etcd()
    do {
        let result = try await withEtcdClient(try EtcdConfiguration(endpoints: [server.endpoint])) { client in
            try await body(server, client)
        }
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

/// Collects watch updates for the test to inspect.
final class Collected: Sendable {
    let updates = Locked<[EtcdWatchUpdate]>([])
    var events: [EtcdEvent] {
        updates.value.flatMap { update -> [EtcdEvent] in
            if case .events(let events, _) = update { return events }
            return []
        }
    }
}

@Suite("etcd client against a real etcd", .enabled(if: etcdAvailable, "\(etcdMissing)"), .serialized)
struct EtcdClientTests {
    @Test("KV: put with previous value, get, prefix range with limit, keys only, delete by prefix")
    func keyValue() async throws {
        try await withEtcd { _, etcd in
            let (first, previous) = try await etcd.put("/t/a", "1")
            #expect(previous == nil)
            let (second, replaced) = try await etcd.put("/t/a", "2")
            #expect(second > first)
            #expect(replaced?.stringValue == "1")
            try await etcd.put("/t/b", "3")
            try await etcd.put("/tz", "outside")
            #expect(try await etcd.get("/t/a")?.stringValue == "2")
            #expect(try await etcd.get("/t/missing") == nil)
            let all = try await etcd.range("/t/", prefix: true)
            #expect(all.kvs.map(\.key) == ["/t/a", "/t/b"])
            let limited = try await etcd.range("/t/", prefix: true, limit: 1)
            #expect(limited.kvs.count == 1 && limited.more && limited.count == 2)
            let keys = try await etcd.range("/t/", prefix: true, keysOnly: true)
            #expect(keys.kvs.allSatisfy { $0.value.isEmpty })
            let old = try await etcd.range("/t/a", revision: first)
            #expect(old.kvs.first?.stringValue == "1", "reads at a past revision")
            #expect(try await etcd.delete("/t/", prefix: true) == 2)
            #expect(try await etcd.get("/tz")?.stringValue == "outside")
        }
    }

    @Test("transactions compare value, version, create and mod revision")
    func transactions() async throws {
        try await withEtcd { _, etcd in
            let created = try await etcd.transaction(if: [.absent("/lock")], then: [.put("/lock", Array("me".utf8))], else: [.get("/lock")])
            #expect(created.succeeded)
            let again = try await etcd.transaction(if: [.absent("/lock")], then: [.put("/lock", Array("you".utf8))], else: [.get("/lock")])
            #expect(!again.succeeded)
            #expect(again.reads.first?.first?.stringValue == "me")
            let current = try #require(try await etcd.get("/lock"))
            let swapped = try await etcd.transaction(
                if: [EtcdCompare(key: "/lock", .modRevision(current.modRevision)), EtcdCompare(key: "/lock", .value(Array("me".utf8)))],
                then: [.put("/lock", Array("swapped".utf8))]
            )
            #expect(swapped.succeeded)
            let stale = try await etcd.transaction(if: [EtcdCompare(key: "/lock", .version(1))], then: [.delete("/lock")])
            #expect(!stale.succeeded, "the version moved to 2")
            #expect(try await etcd.get("/lock")?.stringValue == "swapped")
        }
    }

    @Test("leases: keys vanish when the lease is revoked or expires; keep-alive keeps them")
    func leases() async throws {
        try await withEtcd { _, etcd in
            let lease = try await etcd.grantLease(ttl: .seconds(2))
            try await etcd.put("/leased/a", "x", lease: lease.id)
            #expect(try await etcd.timeToLive(ofLease: lease.id) != nil)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await etcd.keepAlive(lease) }
                try await Task.sleep(for: .seconds(3))
                #expect(try await etcd.get("/leased/a") != nil, "kept alive past its TTL")
                group.cancelAll()
            }
            try await etcd.revokeLease(lease.id)
            #expect(try await etcd.get("/leased/a") == nil)
            #expect(try await etcd.timeToLive(ofLease: lease.id) == nil)

            let short = try await etcd.grantLease(ttl: .seconds(1))
            try await etcd.put("/leased/b", "y", lease: short.id)
            try await Task.sleep(for: .milliseconds(2_500))
            #expect(try await etcd.get("/leased/b") == nil, "expired without keep-alive")
            await #expect(throws: EtcdError.self) { try await etcd.keepAlive(short) }
        }
    }

    @Test("a prefix watch delivers puts and deletes in order")
    func watch() async throws {
        try await withEtcd { _, etcd in
            let collected = Collected()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await etcd.watch("/w/", prefix: true, fromRevision: 1) { update in collected.updates.withLock { $0.append(update) } }
                }
                for index in 0..<5 { try await etcd.put("/w/\(index)", "v\(index)") }
                try await etcd.delete("/w/0")
                try await etcd.put("/other", "ignored")
                try await waitUntil { collected.events.count >= 6 }
                group.cancelAll()
            }
            let events = collected.events
            #expect(events.map(\.key) == ["/w/0", "/w/1", "/w/2", "/w/3", "/w/4", "/w/0"])
            if case .delete = events.last {} else { Issue.record("the last event is not a delete") }
            #expect(events.map(\.revision) == events.map(\.revision).sorted())
        }
    }

    @Test("a watch cut off by an etcd restart resumes from its last revision: nothing lost, nothing repeated")
    func watchResume() async throws {
        try await withEtcd { server, etcd in
            let collected = Collected()
            // From an explicit revision: puts made before the watch stream is up are delivered too (a 200 ms head
            // start was not always enough on a loaded machine).
            let start = try await etcd.put("/not-watched", "x").revision
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await etcd.watch("/r/", prefix: true, fromRevision: start + 1) { update in collected.updates.withLock { $0.append(update) } }
                }
                for index in 0..<3 { try await etcd.put("/r/\(index)", "before") }
                try await waitUntil { collected.events.count >= 3 }
                await server.stop()
                try await server.start()  // same data directory: the history survives
                for index in 3..<6 { try await etcd.put("/r/\(index)", "after") }
                try await waitUntil(timeout: .seconds(15)) { collected.events.count >= 6 }
                try await Task.sleep(for: .milliseconds(300))
                group.cancelAll()
            }
            #expect(collected.events.map(\.key) == (0..<6).map { "/r/\($0)" })
        }
    }

    @Test("a watch resuming from a compacted revision reports it and resynchronises from a fresh range")
    func watchCompaction() async throws {
        try await withEtcd { _, etcd in
            for index in 0..<5 { try await etcd.put("/c/\(index)", "v") }
            let latest = try await etcd.put("/c/last", "v").revision
            try await etcd.compact(revision: latest)
            let collected = Collected()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await etcd.watch("/c/", prefix: true, fromRevision: 2) { update in collected.updates.withLock { $0.append(update) } }
                }
                try await waitUntil { !collected.updates.value.isEmpty }
                try await etcd.put("/c/new", "v")
                try await waitUntil { collected.events.contains { $0.key == "/c/new" } }
                group.cancelAll()
            }
            guard case .resynced(let snapshot, let revision, let compactedAt)? = collected.updates.value.first else {
                Issue.record("no resync first: \(collected.updates.value)")
                return
            }
            #expect(compactedAt == latest)
            #expect(revision >= latest)
            #expect(Set(snapshot.map(\.key)) == Set((0..<5).map { "/c/\($0)" } + ["/c/last"]))
        }
    }

    @Test("invalid endpoints fail at start-up with a clear message", arguments: ["", "localhost", "127.0.0.1:99999", "http://127.0.0.1:0"])
    func invalidEndpoints(endpoint: String) {
        #expect(throws: EtcdError.self) { try EtcdConfiguration(endpoints: [endpoint]) }
    }

    @Test("an unreachable etcd fails calls with 'unavailable' at their deadline")
    func unreachable() async throws {
        let port = try await ServerProcess.freePort()
        try await withEtcdClient(try EtcdConfiguration(endpoints: ["127.0.0.1:\(port)"], callTimeout: .milliseconds(500))) { etcd in
            let start = ContinuousClock.now
            do {
                _ = try await etcd.get("/x")
                Issue.record("a call to nowhere succeeded")
            } catch let error as EtcdError {
                #expect(error.code == .unavailable || error.code == .timeout, "\(error)")
            }
            #expect(ContinuousClock.now - start < .seconds(3))
        }
    }
}

@Suite("etcd cluster failover", .enabled(if: etcdAvailable, "\(etcdMissing)"))
struct EtcdFailoverTests {
    @Test("stop the leader of a 3-member cluster: the client keeps working through another member")
    func leaderFailover() async throws {
        let cluster = try await EtcdClusterFixture.start(size: 3)
        do {
            try await withEtcdClient(try EtcdConfiguration(endpoints: cluster.endpoints, callTimeout: .seconds(10))) { etcd in
                try await etcd.put("/f/before", "1")
                let status = try await etcd.status()
                let members = try await etcd.members()
                let leaderURL = try #require(members.first { $0.id == status.leader }?.clientURLs.first)
                let leader = try #require(cluster.members.first { leaderURL.hasSuffix(":\($0.port)") })
                await leader.stop()
                for index in 0..<20 { try await etcd.put("/f/after-\(index)", "2") }
                #expect(try await etcd.get("/f/before")?.stringValue == "1")
                #expect(try await etcd.range("/f/after-", prefix: true).count == 20)
            }
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }
}

/// Polls `condition` until it holds, failing after `timeout`.
func waitUntil(timeout: Duration = .seconds(5), _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw DeadlineExceeded(description: "condition not met within \(timeout)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

@Suite("etcd bad input and authentication", .enabled(if: etcdAvailable, "\(etcdMissing)"), .serialized)
struct EtcdBadInputTests {
    @Test("a watch on keys with invalid UTF-8 and huge values delivers them without crashing")
    func hostileValues() async throws {
        try await withEtcd { _, etcd in
            let collected = Collected()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await etcd.watch("/bad/", prefix: true, fromRevision: 1) { update in collected.updates.withLock { $0.append(update) } }
                }
                try await etcd.put("/bad/utf8", [0xC3, 0x28, 0xFF, 0xFE])
                try await etcd.put("/bad/huge", [UInt8](repeating: 0x41, count: 1_000_000))
                try await etcd.put("/bad/after", "still alive")
                try await waitUntil { collected.events.count >= 3 }
                group.cancelAll()
            }
            let values = collected.events.compactMap { event -> [UInt8]? in
                if case .put(let kv) = event { return kv.value }
                return nil
            }
            #expect(values.first == [0xC3, 0x28, 0xFF, 0xFE])
            #expect(values.dropFirst().first?.count == 1_000_000)
            #expect(try await etcd.get("/bad/after")?.stringValue == "still alive")
        }
    }

    @Test("with authentication enabled: the right password works, a wrong one fails with a clear error")
    func authentication() async throws {
        let server = try await ServerProcess.etcd()
        do {
            let ctl = ["etcdctl", "--endpoints=\(server.endpoint)"]
            try await Command.runDetached(ctl + ["user", "add", "root:root-pass"], environment: ["ETCDCTL_API": "3"])
            try await Command.runDetached(ctl + ["user", "add", "app:app-pass"], environment: ["ETCDCTL_API": "3"])
            try await Command.runDetached(ctl + ["role", "add", "app"], environment: ["ETCDCTL_API": "3"])
            try await Command.runDetached(ctl + ["role", "grant-permission", "app", "--prefix=true", "readwrite", "/app/"], environment: ["ETCDCTL_API": "3"])
            try await Command.runDetached(ctl + ["user", "grant-role", "app", "app"], environment: ["ETCDCTL_API": "3"])
            try await Command.runDetached(ctl + ["auth", "enable"], environment: ["ETCDCTL_API": "3"])
            try await withEtcdClient(try EtcdConfiguration(endpoints: [server.endpoint], username: "app", password: "app-pass")) { etcd in
                try await etcd.put("/app/x", "1")
                #expect(try await etcd.get("/app/x")?.stringValue == "1")
                do {
                    try await etcd.put("/other/x", "1")
                    Issue.record("wrote outside the role's prefix")
                } catch let error as EtcdError {
                    #expect(error.code == .permissionDenied, "\(error)")
                }
            }
            try await withEtcdClient(try EtcdConfiguration(endpoints: [server.endpoint], username: "app", password: "wrong")) { etcd in
                do {
                    _ = try await etcd.get("/app/x")
                    Issue.record("a wrong password was accepted")
                } catch let error as EtcdError {
                    #expect(error.code == .authenticationFailed, "\(error)")
                }
            }
            #expect(throws: EtcdError.self) { try EtcdConfiguration(endpoints: [server.endpoint], username: "app") }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }
}
