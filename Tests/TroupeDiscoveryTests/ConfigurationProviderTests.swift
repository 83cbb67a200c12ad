import Configuration
import Testing
import TroupeCore
import TroupeDiscovery
import TroupeEtcd
import TroupeTestSupport

@Suite("swift-configuration provider")
struct ConfigurationProviderTests {
    @Test("a ConfigReader reads typed values from a config source and follows its changes")
    func reader() async throws {
        let source = InMemoryConfigSource(["http.port": "8080", "feature.checkout": "on", "limits.rate": "2.5", "zones": "a, b"])
        let reader = ConfigReader(provider: ConfigSourceProvider(source: source))
        #expect(reader.int(forKey: "http.port") == 8080)
        #expect(reader.bool(forKey: "feature.checkout") == true)
        #expect(reader.double(forKey: "limits.rate") == 2.5)
        #expect(reader.stringArray(forKey: "zones") == ["a", "b"])
        #expect(reader.string(forKey: "http.port") == "8080")
        #expect(reader.int(forKey: "missing") == nil)
        #expect(reader.int(forKey: "feature.checkout") == nil, "not convertible → nil, no crash")
        let seen = Locked<[Int?]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await reader.watchInt(forKey: "http.port") { updates in
                    for await value in updates {
                        seen.withLock { $0.append(value) }
                        if value == 9090 { return }
                    }
                }
            }
            try await waitUntil { seen.value.first == 8080 }
            source.set("http.port", "9090")
            try await group.waitForAll()
        }
        #expect(seen.value.last == 9090)
    }

    @Test("through etcd: a value put in etcd reaches a ConfigReader watch", .enabled(if: etcdAvailable, "etcd is not installed"))
    func etcd() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                try await etcd.put("/config/shop/prod/pool.size", "4")
                let source = try EtcdConfigSource(etcd: etcd, app: "shop", environment: "prod")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await source.run() }
                    try await waitUntil { source.isLoaded }
                    let reader = ConfigReader(provider: ConfigSourceProvider(source: source))
                    #expect(reader.int(forKey: "pool.size") == 4)
                    try await etcd.put("/config/shop/prod/pool.size", "16")
                    try await waitUntil(timeout: .seconds(1)) { reader.int(forKey: "pool.size") == 16 }
                    group.cancelAll()
                }
            }
        }
    }
}
