import Testing
import TroupeCore
import TroupeDiscovery
import TroupeEtcd
import TroupeTestSupport

/// The same discovery behaviour on both registry engines.
func checkDiscovery(_ registry: any ServiceRegistry) async throws {
    let discovery = ServiceDiscovery(registry: registry, services: ["payments"])
    let seen = Locked<[[String]]>([])
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await discovery.run() }
        group.addTask { for await list in discovery.changes(of: "payments") { seen.withLock { $0.append(list.map(\.id)) } } }
        let a = ServiceInstance(service: "payments", id: "p-a", host: "127.0.0.1", port: 9001)
        let b = ServiceInstance(service: "payments", id: "p-b", host: "127.0.0.1", port: 9002)
        try await registry.register(a)
        try await registry.register(b)
        try await waitUntil { discovery.instances(of: "payments").map(\.id) == ["p-a", "p-b"] }
        try await registry.deregister(a)
        try await waitUntil { discovery.instances(of: "payments").map(\.id) == ["p-b"] }
        try await waitUntil { seen.value.last == ["p-b"] }
        #expect(discovery.instances(of: "other").isEmpty)
        group.cancelAll()
    }
}

@Suite("Service discovery cache")
struct ServiceDiscoveryTests {
    @Test("the in-memory registry feeds the cache and the change stream")
    func memory() async throws {
        try await checkDiscovery(InMemoryServiceRegistry())
    }

    @Test("the etcd registry feeds the cache and the change stream", .enabled(if: etcdAvailable, "etcd is not installed"))
    func etcd() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                let registry = EtcdServiceRegistry(etcd: etcd, ttl: .seconds(5))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await registry.run() }
                    try await checkDiscovery(registry)
                    group.cancelAll()
                }
            }
        }
    }
}
