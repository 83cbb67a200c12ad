import NIOCore
import Testing
import TroupeRESP
import TroupeRedis
import TroupeTestSupport
import Foundation

@Suite("Hash slots")
struct HashSlotTests {
    @Test("CRC16 and slots match the cluster specification", arguments: [
        ("123456789", 12739), ("foo", 12182), ("bar", 5061), ("", 0),
    ])
    func slots(key: String, slot: Int) {
        #expect(HashSlot.of(key) == slot)
    }

    @Test("hash tags put related keys in one slot; empty tags are ignored")
    func hashTags() {
        #expect(HashSlot.of("{user1000}.following") == HashSlot.of("{user1000}.followers"))
        #expect(HashSlot.of("{user1000}.following") == HashSlot.of("user1000"))
        #expect(HashSlot.of("foo{}{bar}") == HashSlot.of("foo{}{bar}"))
        #expect(HashSlot.of("foo{}{bar}") != HashSlot.of("bar"))
        #expect(HashSlot.of("foo{{bar}}zap") == HashSlot.of("{bar"))
    }

    @Test("redirect texts parse")
    func redirects() {
        let moved = ClusterTopology.parseRedirect("MOVED 3999 127.0.0.1:6381")
        #expect(moved?.slot == 3999 && moved?.node == ClusterTopology.Node(host: "127.0.0.1", port: 6381))
        #expect(ClusterTopology.parseRedirect("MOVED x y") == nil)
    }
}

@Suite("Redis Cluster against three real masters", .enabled(if: redisAvailable, "\(redisMissing)"), .serialized)
struct RedisClusterTests {
    func withCluster(_ body: @Sendable (RedisClusterFixture, RedisClusterClient) async throws -> Void) async throws {
        let fixture = try await RedisClusterFixture.start(masters: 3)
        do {
            let client = try RedisClusterClient(configuration: .init(seeds: [.init(host: "127.0.0.1", port: fixture.ports[0])]))
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await client.run() }
                defer { client.shutdown() }
                try await body(fixture, client)
                client.shutdown()
            }
        } catch {
            await fixture.shutdown()
            throw error
        }
        await fixture.shutdown()
    }

    @Test("keys spread across all masters; multi-key commands in one slot work, across slots fail clearly")
    func spread() async throws {
        try await withCluster { fixture, cluster in
            try await cluster.refreshTopology()
            #expect(cluster.topology.coversAllSlots)
            #expect(cluster.topology.primaries.count == 3)
            for index in 0..<300 { try await cluster.set("spread:\(index)", to: index) }
            var perNode: [Int] = []
            for port in fixture.ports {
                let count = try await RedisClusterFixture.cli(port, ["DBSIZE"]).trimmingCharacters(in: .whitespacesAndNewlines)
                perNode.append(Int(count) ?? -1)
            }
            #expect(perNode.reduce(0, +) == 300)
            #expect(perNode.allSatisfy { $0 > 50 }, "keys per master: \(perNode)")
            for index in 0..<300 { #expect(try await cluster.getString("spread:\(index)") == String(index)) }
            try await cluster.multiSet([("{u1}.a", "1"), ("{u1}.b", "2")])
            #expect(try await cluster.multiGet(["{u1}.a", "{u1}.b"]).compactMap { $0.map { String(buffer: $0) } } == ["1", "2"])
            do {
                _ = try await cluster.multiGet(["a", "b"])
                Issue.record("a cross-slot MGET was sent")
            } catch let error as RedisError {
                #expect(error.code == .crossSlot)
            }
            let script = RedisScript("return redis.call('INCR', KEYS[1])")
            #expect(try await cluster.evaluate(script, keys: ["{u1}.n"]).int == 1)
        }
    }

    @Test("a slot migrated while traffic runs: ASK and MOVED are followed and no command fails")
    func migration() async throws {
        try await withCluster { fixture, cluster in
            try await cluster.refreshTopology()
            let keys = (0..<40).map { "{hot}.k\($0)" }
            let slot = HashSlot.of(keys[0])
            let source = try #require(cluster.topology.primary(forSlot: slot))
            let target = try #require(cluster.topology.primaries.first { $0 != source })
            let sourceID = try await RedisClusterFixture.cli(source.port, ["CLUSTER", "MYID"]).trimmingCharacters(in: .whitespacesAndNewlines)
            let targetID = try await RedisClusterFixture.cli(target.port, ["CLUSTER", "MYID"]).trimmingCharacters(in: .whitespacesAndNewlines)
            for key in keys { try await cluster.set(key, to: 0) }

            let increments = 40
            try await withThrowingTaskGroup(of: Int.self) { group in
                for key in keys {
                    group.addTask {
                        // Spread over ~0.4 s so that the traffic overlaps the whole migration.
                        for _ in 0..<increments {
                            _ = try await cluster.increment(key)
                            try await Task.sleep(for: .milliseconds(10))
                        }
                        return increments
                    }
                }
                // Migrate the slot while the increments run (the cluster spec's resharding steps).
                try await Task.sleep(for: .milliseconds(20))
                try await RedisClusterFixture.cli(target.port, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", sourceID])
                try await RedisClusterFixture.cli(source.port, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", targetID])
                while true {
                    let batch = try await RedisClusterFixture.cli(source.port, ["CLUSTER", "GETKEYSINSLOT", String(slot), "5"])
                        .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
                    if batch.isEmpty { break }
                    try await RedisClusterFixture.cli(source.port, ["MIGRATE", "127.0.0.1", String(target.port), "", "0", "5000", "KEYS"] + batch)
                    try await Task.sleep(for: .milliseconds(5))
                }
                for port in fixture.ports {
                    try await RedisClusterFixture.cli(port, ["CLUSTER", "SETSLOT", String(slot), "NODE", targetID])
                }
                let done = try await group.reduce(0, +)
                #expect(done == keys.count * increments)
            }
            for key in keys { #expect(try await cluster.getString(key) == String(increments)) }
            #expect(cluster.topology.primary(forSlot: slot) == target, "MOVED updated the slot map")
            let redirects = cluster.redirectsFollowed
            #expect(redirects.moved > 0 && redirects.ask > 0, "both redirect kinds were exercised: \(redirects)")
        }
    }
}
