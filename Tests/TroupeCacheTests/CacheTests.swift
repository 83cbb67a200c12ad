import Foundation
import NIOCore
import Synchronization
import Testing
import TroupeCache
import TroupeCore
import TroupeRedis
import TroupeTestSupport

let redisAvailable = ServerProcess.shouldRun("redis-server")

/// The engines every building block is tested on.
enum Engine: String, CaseIterable, Sendable {
    case memory, redis
}

/// Runs `body` with a key-value store of `engine` (a private redis-server for `.redis`).
func withStore<T: Sendable>(_ engine: Engine, _ body: @Sendable (any KeyValueStore, RedisClient?) async throws -> T) async throws -> T {
    switch engine {
    case .memory:
        return try await body(InMemoryKeyValueStore(), nil)
    case .redis:
        let server = try await ServerProcess.redis()
        do {
            let result = try await withRedisClient(try RedisConfiguration(url: server.redisURL)) { redis in
                try await body(RedisKeyValueStore(redis: redis, prefix: "t:"), redis)
            }
            await server.shutdown()
            return result
        } catch {
            await server.shutdown()
            throw error
        }
    }
}

/// Counts loader calls.
final class LoadCounter: Sendable {
    private let calls = Atomic<Int>(0)
    var count: Int { calls.load(ordering: .relaxed) }
    func record() { calls.add(1, ordering: .relaxed) }
}

let engines: [Engine] = redisAvailable ? Engine.allCases : [.memory]

@Suite("Cache protections on both engines")
struct CacheTests {
    @Test("1,000 concurrent reads of a cold hot key call the loader once", arguments: engines)
    func breakdown(engine: Engine) async throws {
        try await withStore(engine) { store, _ in
            let cache = try Cache<String>(store: store)
            let loads = LoadCounter()
            try await withThrowingTaskGroup(of: String?.self) { group in
                for _ in 0..<1_000 {
                    group.addTask {
                        try await cache.get("hot") {
                            loads.record()
                            try await Task.sleep(for: .milliseconds(50))
                            return "value"
                        }
                    }
                }
                for try await value in group { #expect(value == "value") }
            }
            #expect(loads.count == 1)
        }
    }

    @Test("1,000 reads of a missing key hit the loader once, then the null marker", arguments: engines)
    func penetration(engine: Engine) async throws {
        try await withStore(engine) { store, _ in
            let cache = try Cache<String>(store: store, options: CacheOptions(nullTTL: .seconds(10)))
            let loads = LoadCounter()
            for _ in 0..<1_000 {
                let value = try await cache.get("ghost") {
                    loads.record()
                    return nil
                }
                #expect(value == nil)
            }
            #expect(loads.count == 1)
            #expect(cache.statistics.nullHits == 999)
        }
    }

    @Test("the Bloom filter rejects keys never added and never rejects added ones", arguments: engines)
    func bloom(engine: Engine) async throws {
        try await withStore(engine) { store, redis in
            let parameters = try BloomParameters(expectedItems: 1_000, falsePositiveRate: 0.01)
            let bloom: any BloomFilter = redis.map { RedisBloomFilter(redis: $0, key: "bloom:products", parameters: parameters) }
                ?? InMemoryBloomFilter(parameters: parameters)
            for index in 0..<1_000 { try await bloom.add("product-\(index)") }
            for index in 0..<1_000 { #expect(try await bloom.mightContain("product-\(index)")) }
            var falsePositives = 0
            for index in 0..<2_000 where try await bloom.mightContain("other-\(index)") { falsePositives += 1 }
            #expect(falsePositives < 60, "\(falsePositives) false positives in 2,000 (target rate 1%)")

            let cache = try Cache<String>(store: store, options: CacheOptions(bloomFilter: bloom))
            let loads = LoadCounter()
            #expect(try await cache.get("never-added") { loads.record(); return "x" } == nil)
            #expect(loads.count == 0)
            #expect(try await cache.get("product-7") { loads.record(); return "seven" } == "seven")
            #expect(cache.statistics.bloomRejections == 1)
        }
    }

    @Test("logical expiry serves stale data while exactly one refresh runs", arguments: engines)
    func logicalExpiry(engine: Engine) async throws {
        try await withStore(engine) { store, _ in
            let refresher = CacheRefresher()
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await refresher.run() }
                let cache = try Cache<Int>(
                    store: store, options: CacheOptions(ttl: .milliseconds(100), ttlJitter: 0, breakdown: .logicalExpiry), refresher: refresher
                )
                let version = Atomic<Int>(1)
                let loads = LoadCounter()
                let loader: @Sendable () async throws -> Int? = {
                    loads.record()
                    try await Task.sleep(for: .milliseconds(500))
                    return version.load(ordering: .relaxed)
                }
                #expect(try await cache.get("config", loader: loader) == 1)
                version.store(2, ordering: .relaxed)
                try await Task.sleep(for: .milliseconds(150))  // logically expired now
                // Many reads during the refresh: all get the stale value immediately.
                let start = ContinuousClock.now
                for _ in 0..<50 { #expect(try await cache.get("config", loader: loader) == 1) }
                #expect(ContinuousClock.now - start < .milliseconds(450), "stale reads did not wait for the loader")
                try await eventually { refresher.refreshesCompleted >= 1 }
                #expect(try await cache.get("config", loader: loader) == 2)
                #expect(loads.count == 2, "one initial load and exactly one refresh")
                #expect(cache.statistics.staleServed >= 50)
                refresher.shutdown()
            }
        }
    }

    @Test("jittered TTLs spread keys cached together", arguments: engines)
    func avalanche(engine: Engine) async throws {
        try await withStore(engine) { store, redis in
            let cache = try Cache<Int>(store: store, options: CacheOptions(ttl: .seconds(100), ttlJitter: 0.2))
            for index in 0..<100 { try await cache.set("k\(index)", index) }
            var ttls: [Double] = []
            for index in 0..<100 {
                if let redis {
                    guard case .expires(let ttl) = try await redis.timeToLive("t:cache:k\(index)") else { Issue.record("no TTL"); return }
                    ttls.append(ttl.seconds)
                } else if let memory = store as? InMemoryKeyValueStore, let ttl = memory.timeToLive("cache:k\(index)") {
                    ttls.append(ttl.seconds)
                }
            }
            #expect(ttls.count == 100)
            #expect(ttls.allSatisfy { $0 > 99 && $0 <= 120.01 })
            #expect((ttls.max() ?? 0) - (ttls.min() ?? 0) > 10, "TTLs are spread over the jitter range")
            #expect(Set(ttls.map { Int($0) }).count > 10)
        }
    }

    @Test("with the store mutex, two processes share one rebuild", .enabled(if: redisAvailable))
    func mutexAcrossProcesses() async throws {
        try await withStore(.redis) { store, redis in
            let redis = try #require(redis)
            let options = CacheOptions(breakdown: .mutex(lockTTL: .seconds(5), wait: .seconds(3)))
            // Two caches on two stores = two processes sharing Redis.
            let first = try Cache<String>(store: store, options: options)
            let second = try Cache<String>(store: RedisKeyValueStore(redis: redis, prefix: "t:"), options: options)
            let loads = LoadCounter()
            try await withThrowingTaskGroup(of: String?.self) { group in
                for index in 0..<400 {
                    let cache = index.isMultiple(of: 2) ? first : second
                    group.addTask {
                        try await cache.get("shared") {
                            loads.record()
                            try await Task.sleep(for: .milliseconds(100))
                            return "built"
                        }
                    }
                }
                for try await value in group { #expect(value == "built") }
            }
            #expect(loads.count == 1)
        }
    }

    @Test("an L1 answers repeated reads without the store; invalidation clears both levels", arguments: engines)
    func firstLevel(engine: Engine) async throws {
        try await withStore(engine) { store, _ in
            let cache = try Cache<Int>(store: store, options: CacheOptions(l1Capacity: 10, l1TTL: .seconds(5)))
            #expect(try await cache.get("a") { 1 } == 1)
            for _ in 0..<50 { #expect(try await cache.get("a") { 2 } == 1) }
            #expect(cache.statistics.l1Hits == 50)
            try await cache.invalidate("a")
            #expect(try await cache.get("a") { 3 } == 3)
        }
    }

    @Test("Redis down: reads are answered by the source at once (one load per key), not failed", .enabled(if: redisAvailable))
    func storeDown() async throws {
        let server = try await ServerProcess.redis()
        defer { server.terminate() }
        var configuration = try RedisConfiguration(url: server.redisURL)
        configuration.failFastWhileDown = true
        try await withRedisClient(configuration) { redis in
            let cache = try Cache<Int>(store: RedisKeyValueStore(redis: redis, prefix: "t:"))
            #expect(try await cache.get("a") { 1 } == 1)
            await server.stop(signal: SIGKILL)
            let loads = LoadCounter()
            let started = ContinuousClock.now
            let values = try await withThrowingTaskGroup(of: Int?.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await cache.get("a") {
                            loads.record()
                            try await Task.sleep(for: .milliseconds(50))
                            return 7
                        }
                    }
                }
                return try await group.reduce(into: [Int?]()) { $0.append($1) }
            }
            #expect(values.allSatisfy { $0 == 7 }, "the source's value: \(values)")
            #expect(ContinuousClock.now - started < .seconds(2), "answered without waiting for Redis")
            #expect(loads.count <= 3, "concurrent reads of one key share loads: \(loads.count)")
            #expect(cache.statistics.storeUnavailable >= 1)
        }
    }
}

/// Polls `condition` for up to 5 s.
func eventually(_ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met in time")
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}
