import Foundation
import Testing
import TroupeCore
import TroupeDiscovery
import TroupeEtcd
import TroupeTestSupport

@Suite("Dynamic configuration and coordination on etcd", .enabled(if: etcdAvailable, "etcd is not installed (scripts/test installs it)"), .serialized)
struct ConfigCoordinatorTests {
    @Test("a value written with etcdctl reaches a running subscriber within 1 s; typed reads")
    func hotReload() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                try await etcd.put("/config/shop/prod/limits.rps", "100")
                try await etcd.put("/config/shop/prod/feature.checkout", "on")
                try await etcd.put("/config/shop/staging/limits.rps", "5")
                let source = try EtcdConfigSource(etcd: etcd, app: "shop", environment: "prod")
                let seen = Locked<[[String: String]]>([])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await source.run() }
                    group.addTask { for await snapshot in source.updates() { seen.withLock { $0.append(snapshot) } } }
                    try await waitUntil { source.isLoaded }
                    #expect(source.int("limits.rps") == 100)
                    #expect(source.bool("feature.checkout") == true)
                    #expect(source.snapshot().count == 2, "other environments stay out")
                    let start = ContinuousClock.now
                    _ = try EtcdCLI.etcdctl(endpoint: server.endpoint, ["put", "/config/shop/prod/limits.rps", "250"])
                    try await waitUntil(timeout: .seconds(1)) { seen.value.last?["limits.rps"] == "250" }
                    #expect(ContinuousClock.now - start < .seconds(1))
                    _ = try EtcdCLI.etcdctl(endpoint: server.endpoint, ["del", "/config/shop/prod/feature.checkout"])
                    try await waitUntil(timeout: .seconds(1)) { source.bool("feature.checkout") == nil }
                    group.cancelAll()
                }
            }
        }
    }

    @Test("8 contenders incrementing a counter under the etcd mutex lose no update; fencing tokens grow")
    func mutex() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                let coordinator = EtcdCoordinator(etcd: etcd)
                let tokens = Locked<[Int64]>([])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<8 {
                        group.addTask {
                            for _ in 0..<5 {
                                try await coordinator.withLock("counter", ttl: .seconds(5), timeout: .seconds(30)) { held in
                                    tokens.withLock { $0.append(held.fencingToken) }
                                    let current = Int(try await etcd.get("/counter")?.stringValue ?? "0") ?? 0
                                    try await Task.sleep(for: .milliseconds(2))
                                    try await etcd.put("/counter", String(current + 1))
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(try await etcd.get("/counter")?.stringValue == "40")
                let issued = tokens.value
                #expect(Set(issued).count == 40)
            }
        }
    }

    @Test("a holder whose lease expires loses the lock; its fencing token is then refused")
    func expiredHolder() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                let coordinator = EtcdCoordinator(etcd: etcd)
                // The resource accepts a write only with a token at least as new as the newest it has seen.
                func fencedWrite(_ token: Int64, _ value: String) async throws -> Bool {
                    let seen = Int64(try await etcd.get("/resource/fence")?.stringValue ?? "0") ?? 0
                    guard token >= seen else { return false }
                    let result = try await etcd.transaction(
                        if: [EtcdCompare(key: "/resource/fence", .value(Array(String(seen).utf8)))].filter { _ in seen > 0 }
                            + (seen == 0 ? [.absent("/resource/fence")] : []),
                        then: [.put("/resource/fence", Array(String(token).utf8)), .put("/resource/data", Array(value.utf8))]
                    )
                    return result.succeeded
                }
                let stale = try await coordinator.lock("job", ttl: .seconds(1), timeout: .seconds(5))
                #expect(try await fencedWrite(stale.fencingToken, "from stale"))
                // The stale holder stops refreshing (a long GC pause, a partition): its lease expires.
                try await Task.sleep(for: .milliseconds(2_500))
                #expect(try await !coordinator.isHeld(stale))
                let fresh = try await coordinator.lock("job", ttl: .seconds(5), timeout: .seconds(5))
                #expect(fresh.fencingToken > stale.fencingToken)
                #expect(try await fencedWrite(fresh.fencingToken, "from fresh"))
                #expect(try await !fencedWrite(stale.fencingToken, "late stale write"), "the stale token is refused")
                #expect(try await etcd.get("/resource/data")?.stringValue == "from fresh")
                try await coordinator.unlock(fresh)
            }
        }
    }

    @Test("election: when the leader resigns or dies another candidate becomes leader")
    func election() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                let coordinator = EtcdCoordinator(etcd: etcd)
                let observed = Locked<[String?]>([])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await coordinator.observe("scheduler") { leader in observed.withLock { $0.append(leader) } } }
                    let first = try await coordinator.campaign("scheduler", value: "node-a", ttl: .seconds(2), timeout: .seconds(5))
                    #expect(try await coordinator.leader("scheduler") == "node-a")
                    let second = Task { try await coordinator.campaign("scheduler", value: "node-b", ttl: .seconds(5), timeout: .seconds(10)) }
                    try await Task.sleep(for: .milliseconds(200))
                    try await coordinator.resign(first)
                    let leadership = try await second.value
                    #expect(try await coordinator.leader("scheduler") == "node-b")
                    // node-b dies (its lease is not refreshed): node-c takes over after the TTL.
                    let third = Task { try await coordinator.campaign("scheduler", value: "node-c", ttl: .seconds(5), timeout: .seconds(15)) }
                    _ = leadership  // node-b stops refreshing: campaign's keep-alive ended when it returned
                    let elected = try await third.value
                    #expect(elected.key.contains("election/scheduler/"))
                    #expect(try await coordinator.leader("scheduler") == "node-c")
                    try await waitUntil { observed.value.contains("node-c") }
                    #expect(observed.value.compactMap { $0 } == ["node-a", "node-b", "node-c"])
                    try await coordinator.resign(elected)
                    group.cancelAll()
                }
            }
        }
    }
}

/// Runs the real `etcdctl` against a test server.
enum EtcdCLI {
    static func etcdctl(endpoint: String, _ arguments: [String]) throws -> String {
        try Command.run(["etcdctl", "--endpoints=\(endpoint)"] + arguments, environment: ["ETCDCTL_API": "3"])
    }
}
