import Distributed
import Foundation
import Testing
import TroupeActors
import TroupeCore
import TroupeDiscovery
import TroupeEtcd
import TroupeTestSupport
import TroupeActorsEtcd

let etcdAvailable = ServerProcess.shouldRun("etcd")

/// Polls `condition` until it holds, failing after `timeout`.
func waitUntil(timeout: Duration = .seconds(5), _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw DeadlineExceeded(description: "condition not met within \(timeout)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

func withEtcdServer<T: Sendable>(_ body: @Sendable (ServerProcess) async throws -> T) async throws -> T {
    let server = try await ServerProcess.etcd()
    do {
        let result = try await body(server)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

func configuration(_ server: ServerProcess) throws -> EtcdConfiguration {
    try EtcdConfiguration(endpoints: [server.endpoint], callTimeout: .seconds(3))
}

@Suite("Service registry and etcd membership", .enabled(if: etcdAvailable, "etcd is not installed (scripts/test installs it)"), .serialized)
struct DiscoveryTests {
    @Test("a registered instance appears to a watcher within 1 s; a graceful stop deregisters it")
    func registerAndWatch() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                let seen = Locked<[[ServiceInstance]]>([])
                let registry = EtcdServiceRegistry(etcd: etcd, ttl: .seconds(5))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await registry.watchInstances(of: "orders") { list in seen.withLock { $0.append(list) } } }
                    group.addTask { try await registry.run() }
                    try await waitUntil { !seen.value.isEmpty }
                    let start = ContinuousClock.now
                    try await registry.register(ServiceInstance(service: "orders", id: "o-1", host: "10.0.0.1", port: 8080, metadata: ["zone": "a"]))
                    try await waitUntil(timeout: .seconds(1)) { seen.value.last?.map(\.id) == ["o-1"] }
                    #expect(ContinuousClock.now - start < .seconds(1))
                    #expect(seen.value.last?.first?.metadata["zone"] == "a")
                    try await registry.deregister(ServiceInstance(service: "orders", id: "o-1", host: "10.0.0.1", port: 8080))
                    try await waitUntil(timeout: .seconds(1)) { seen.value.last?.isEmpty == true }
                    group.cancelAll()
                }
            }
        }
    }

    @Test("an instance whose process dies without deregistering disappears after its TTL")
    func killedInstanceExpires() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { observer in
                let seen = Locked<[ServiceInstance]>([])
                let watcher = EtcdServiceRegistry(etcd: observer)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await watcher.watchInstances(of: "cart") { list in seen.withLock { $0 = list } } }
                    // The "process": its own client and registry, killed by cutting its connection.
                    let doomed = try EtcdClient(configuration: try configuration(server))
                    let registry = EtcdServiceRegistry(etcd: doomed, ttl: .seconds(2))
                    group.addTask { try? await doomed.run() }
                    let process = Task { try? await registry.run() }
                    try await registry.register(ServiceInstance(service: "cart", id: "c-1", host: "127.0.0.1", port: 9000))
                    try await waitUntil { seen.value.count == 1 }
                    // kill -9: no new calls can leave the process (so no revoke), and the keep-alive stops.
                    doomed.shutdown()
                    process.cancel()
                    let killed = ContinuousClock.now
                    try await waitUntil(timeout: .seconds(6)) { seen.value.isEmpty }
                    let gone = ContinuousClock.now - killed
                    #expect(gone >= .seconds(1) && gone < .seconds(5), "disappeared after \(gone)")
                    group.cancelAll()
                }
            }
        }
    }

    @Test("after the lease is lost the registry registers again by itself, with growing jittered delays")
    func reRegistersAfterLeaseLoss() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                let registry = EtcdServiceRegistry(etcd: etcd, ttl: .seconds(3))
                let instance = ServiceInstance(service: "stock", id: "s-1", host: "127.0.0.1", port: 7000)
                // What the lease-lost handler saw: whether the registration was still absent (it runs before registering again).
                let lapses = Locked<[Bool]>([])
                registry.onLeaseLost {
                    let absent = (try? await etcd.get("/services/stock/s-1")) == nil
                    lapses.withLock { $0.append(absent) }
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await registry.run() }
                    try await registry.register(instance)
                    try await waitUntil { try await etcd.get("/services/stock/s-1") != nil }
                    #expect(lapses.value.isEmpty)
                    // Someone revokes the lease (an operator, or etcd losing it): the key is gone.
                    let lease = try #require(try await etcd.get("/services/stock/s-1")?.lease)
                    try await etcd.revokeLease(lease)
                    #expect(try await etcd.get("/services/stock/s-1") == nil)
                    try await waitUntil(timeout: .seconds(5)) { try await etcd.get("/services/stock/s-1") != nil }
                    #expect(registry.registrationRounds >= 2)
                    #expect(lapses.value == [true], "the handler ran once, before the instance was registered again")
                    // etcd restarts (same data directory): the instance is registered again without help.
                    await server.stop()
                    try await Task.sleep(for: .milliseconds(500))
                    try await server.start()
                    try await waitUntil(timeout: .seconds(10)) { try await etcd.get("/services/stock/s-1") != nil }
                    group.cancelAll()
                }
                let delays = registry.retryDelays
                #expect(!delays.isEmpty)
                #expect(delays.allSatisfy { $0 <= .seconds(5) })
            }
        }
    }

    @Test("backoff delays grow and are jittered")
    func backoffShape() {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        let delays = (0..<8).map { _ in backoff.next() }
        #expect(Set(delays).count == delays.count, "jittered: no two equal")
        var bounded = Backoff(initial: .milliseconds(100), maximum: .seconds(5), jitter: 0)
        let ceilings = (0..<8).map { _ in bounded.next() }
        #expect(ceilings == ceilings.sorted() && ceilings.last == .seconds(5))
        #expect(zip(delays, ceilings).allSatisfy { $0 <= $1 })
    }

    @Test("3 actor nodes sharing one etcd: a node that dies is dropped after its TTL and its keys are served by the others with their state")
    func actorMembership() async throws {
        try await withEtcdServer { server in
            let store = InMemoryActorStateStore()
            let cluster = LocalCluster()
            let secret = cluster.secret
            var nodes: [(system: ClusterActorSystem, membership: EtcdMembership, etcd: EtcdClient)] = []
            for index in 1...3 {
                let etcd = try EtcdClient(configuration: try configuration(server))
                let membership = EtcdMembership(registry: EtcdServiceRegistry(etcd: etcd, ttl: .seconds(2)), cluster: "shop")
                let system = try await ClusterActorSystem.start(
                    ClusterConfiguration(clusterName: "shop", nodeName: "node-\(index)", secret: secret), membership: membership, stateStore: store
                )
                system.register(EtcdCounter.self)
                nodes.append((system, membership, etcd))
            }
            let all = nodes
            try await withThrowingTaskGroup(of: Void.self) { group in
                for node in all {
                    group.addTask { try? await node.etcd.run() }
                    group.addTask { try? await node.system.run() }
                }
                // Each node's membership in a task of its own, so that one node can be killed.
                let memberships = all.map { node in Task { try? await node.membership.run() } }
                let systems = all.map(\.system)
                try await waitUntil(timeout: .seconds(10)) { systems.allSatisfy { $0.members.count == 3 } }
                let keys = (0..<300).map { "k\($0)" }
                for key in keys { _ = try await systems[0].actor(EtcdCounter.self, key: key).add(5) }
                let victim = all[2]
                let orphaned = keys.filter { systems[0].owner(of: .virtual(type: "EtcdCounter", key: $0))?.node.name == victim.system.node.name }
                #expect(!orphaned.isEmpty)
                // kill -9: the node's connections drop and its lease is no longer refreshed; nothing is deregistered.
                victim.etcd.shutdown()
                memberships[2].cancel()
                victim.system.shutdown()
                let killed = ContinuousClock.now
                try await waitUntil(timeout: .seconds(8)) { systems.prefix(2).allSatisfy { $0.members.count == 2 } }
                for key in orphaned {
                    let counter = try await systems[1].actor(EtcdCounter.self, key: key)
                    #expect(try await counter.add(1) == 6, "state intact")
                }
                #expect(ContinuousClock.now - killed < .seconds(2 + 2 + 3), "served within TTL + 2 s (plus the calls)")
                for node in all { node.system.shutdown(); node.etcd.shutdown() }
                for membership in memberships { membership.cancel() }
                group.cancelAll()
            }
        }
    }
}

distributed actor EtcdCounter: PersistentVirtualActor {
    typealias ActorSystem = ClusterActorSystem
    struct State: Codable, Sendable { var value = 0 }
    var persisted = Persisted(State())

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    distributed func add(_ amount: Int) async throws -> Int {
        try await update { state in
            state.value += amount
            return state.value
        }
    }
}
