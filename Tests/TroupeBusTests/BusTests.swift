import Foundation
import NIOPosix
import Testing
@testable import TroupeBus
import TroupeCore
import TroupeRedis
import TroupeTestSupport
import TroupeRESP

@Suite("Bus semantics on the embedded engine", .serialized)
struct InMemoryBusTests {
    @Test("tags filter, keys and ids look messages up, broadcast reaches every member")
    func tags() async throws { try await withDeadline(.seconds(60)) { try await BusSemantics.tagsKeysAndBroadcast(InMemoryBusEngine()) } }

    @Test("at-least-once: a member killed mid-message; 10,000 messages with members restarting, none lost")
    func atLeastOnce() async throws { try await withDeadline(.seconds(120)) { try await BusSemantics.atLeastOnce(InMemoryBusEngine(), messages: 10_000) } }

    @Test("ordering: 4 orderly members, 1,000 sharding keys, members joining and leaving")
    func ordering() async throws { try await withDeadline(.seconds(120)) { try await BusSemantics.ordering(InMemoryBusEngine(), keys: 1_000, perKey: 5) } }

    @Test("delay levels fire on time; retries follow the schedule, then the dead-letter queue")
    func delays() async throws { try await withDeadline(.seconds(60)) { try await BusSemantics.delaysRetriesAndDeadLetters(InMemoryBusEngine()) } }

    @Test("transactions: commit delivers, rollback never, an orphan half message is resolved by another member")
    func transactions() async throws { try await withDeadline(.seconds(60)) { try await BusSemantics.transactions(InMemoryBusEngine()) } }

    @Test("bad input is refused with a clear error")
    func badInput() async throws { try await BusSemantics.badInput(InMemoryBusEngine()) }

    @Test("retention: messages older than it are dropped, consumed or not, with their lookups")
    func retention() async throws { try await withDeadline(.seconds(30)) { try await BusSemantics.retention(InMemoryBusEngine(retention: .seconds(1))) } }

    @Test("acknowledgements sent with the next read settle exactly those entries")
    func acknowledgeWithRead() async throws { try await withDeadline(.seconds(30)) { try await BusSemantics.acknowledgeWithRead(InMemoryBusEngine()) } }

    @Test("the backlog per queue is measured for troupe_bus_lag and returns to zero")
    func lag() async throws { try await withDeadline(.seconds(30)) { try await BusSemantics.lagReported(InMemoryBusEngine()) } }

    @Test("message ids: 24 hex digits, unique, led by the send time")
    func messageIDs() {
        let before = UInt64(Date().timeIntervalSince1970 * 1000)
        let ids = (0..<10_000).map { _ in BusProducer.newID() }
        let after = UInt64(Date().timeIntervalSince1970 * 1000)
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.utf8.count == 24 && $0.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) } })
        #expect(ids.allSatisfy { BusProducer.idMilliseconds($0).map { UInt64($0) >= before && UInt64($0) <= after } == true })
        #expect(BusProducer.idMilliseconds("0000000001AB" + "0123456789ab") == 0x1AB)
        for foreign in ["order-42-event", "", "0000000001ab0123456789a", "0000000001ab0123456789abc", "+000000001ab0123456789ab", "0000000001ab01234567 9ab"] {
            #expect(BusProducer.idMilliseconds(foreign) == nil, "\(foreign)")
        }
        let times = ids.compactMap { UInt64($0.prefix(12), radix: 16) }
        #expect(times.count == ids.count && times.allSatisfy { (before...after).contains($0) })
    }

    @Test("queue allocation deals every queue to exactly one live member")
    func allocation() {
        let members = ["a", "b", "c"]
        let owned = members.map { BusConsumer.allocate(queues: 8, members: members, me: $0) }
        #expect(owned.reduce(Set<Int>()) { $0.union($1) } == Set(0..<8))
        #expect(owned.map(\.count).reduce(0, +) == 8)
        #expect(BusConsumer.allocate(queues: 8, members: members, me: "z").isEmpty)
    }
}

@Suite("Bus semantics on Redis Streams", .serialized, .enabled(if: ServerProcess.shouldRun("redis-server")))
struct RedisBusTests {
    static func withEngine(_ body: @Sendable (RedisBusEngine, RedisClient) async throws -> Void) async throws {
        let server = try await ServerProcess.redis()
        defer { server.terminate() }
        let configuration = try RedisConfiguration(url: server.redisURL)
        try await withRedisClient(configuration) { redis in
            let engine = RedisBusEngine(redis: redis, blockingReads: configuration)
            do {
                try await body(engine, redis)
            } catch {
                await engine.close()
                throw error
            }
            await engine.close()
        }
    }

    @Test("tags filter, keys and ids look messages up, broadcast reaches every member")
    func tags() async throws { try await withDeadline(.seconds(60)) { try await Self.withEngine { e, _ in try await BusSemantics.tagsKeysAndBroadcast(e) } } }

    @Test("at-least-once: a member killed mid-message; 10,000 messages with members restarting, none lost")
    func atLeastOnce() async throws { try await withDeadline(.seconds(180)) { try await Self.withEngine { e, _ in try await BusSemantics.atLeastOnce(e, messages: 10_000) } } }

    @Test("ordering: 4 orderly members, 1,000 sharding keys, members joining and leaving")
    func ordering() async throws { try await withDeadline(.seconds(180)) { try await Self.withEngine { e, _ in try await BusSemantics.ordering(e, keys: 1_000, perKey: 5) } } }

    @Test("delay levels fire on time; retries follow the schedule, then the dead-letter queue")
    func delays() async throws { try await withDeadline(.seconds(60)) { try await Self.withEngine { e, _ in try await BusSemantics.delaysRetriesAndDeadLetters(e) } } }

    @Test("transactions: commit delivers, rollback never, an orphan half message is resolved by another member")
    func transactions() async throws { try await withDeadline(.seconds(60)) { try await Self.withEngine { e, _ in try await BusSemantics.transactions(e) } } }

    @Test("a send while Redis is down fails as retryable (a 503 for a request, not a 500); a refused message does not")
    func outageIsTransient() async throws {
        try await withDeadline(.seconds(30)) {
            let server = try await ServerProcess.redis()
            defer { server.terminate() }
            var settings = try RedisConfiguration(url: server.redisURL)
            settings.commandTimeout = .milliseconds(500)
            let configuration = settings
            try await withRedisClient(configuration) { redis in
                let engine = RedisBusEngine(redis: redis, blockingReads: configuration)
                let bus = try Bus(engine: engine)
                let producer = bus.producer(group: "outage")
                _ = try await producer.send(OutgoingMessage(topic: "outage", body: [1]))
                await server.stop(signal: SIGKILL)
                var failure: (any Error)?
                do {
                    _ = try await producer.send(OutgoingMessage(topic: "outage", body: [2]))
                } catch {
                    failure = error
                }
                #expect(failure is BusError, "the bus's own error type: \(String(describing: failure))")
                #expect(failure.map(isTransient) == true, "Redis unreachable is worth a retry: \(String(describing: failure))")
                #expect(!isTransient(BusError(.invalidMessage, "negative delay")))
                #expect(!isTransient(BusError(.engine, "XADD returned no id")), "an engine failure without a retryable cause")
                await engine.close()
            }
        }
    }

    @Test("acknowledgements travel with the next read on the blocking connection; an XACK the server refuses is reported")
    func acknowledgeWithRead() async throws {
        try await withDeadline(.seconds(30)) {
            try await Self.withEngine { engine, _ in
                try await BusSemantics.acknowledgeWithRead(engine)
                try await engine.createTopic("acks-bad", queues: 1)
                try await engine.ensureGroup(topic: "acks-bad", group: "g", fromEnd: false)
                var failure: BusError?
                do throws(BusError) {
                    _ = try await engine.read(acknowledging: [BusAck(group: "g", topic: "acks-bad", queue: 0, entryIDs: ["not-an-entry-id"])],
                                              group: "g", consumer: "c", topic: "acks-bad", queues: [0], count: 1, block: .milliseconds(50))
                } catch {
                    failure = error
                }
                #expect(failure.map { "\($0)".contains("XACK") } == true, "an XACK the server refuses fails clearly: \(String(describing: failure))")
            }
        }
    }

    @Test("lookup by id of unindexed messages reads the stream around the id's time, page by page")
    func lookupAcrossPages() async throws {
        try await withDeadline(.seconds(60)) {
            try await Self.withEngine { engine, redis in
                try await BusSemantics.withBus(engine) { bus in
                    try await bus.createTopic("many", queues: 1)
                    let producer = bus.producer(group: "p")
                    var ids: [String] = []
                    for i in 0..<1_200 { ids.append(try await producer.send(OutgoingMessage(topic: "many", body: Array("m\(i)".utf8))).messageID) }
                    let indexKeys = try await redis.send(["KEYS", "bus:{many:0}:id:*"], timeout: nil).array ?? []
                    #expect(indexKeys.isEmpty, "plain appends leave no index keys")
                    for index in [0, 700, 1_199] {
                        #expect(try await bus.message(id: ids[index]).map { String(decoding: $0.body, as: UTF8.self) } == "m\(index)")
                    }
                }
            }
        }
    }

    @Test("retention: the stream is trimmed to messages younger than it (MINID), the indexes expire")
    func retention() async throws {
        try await withDeadline(.seconds(30)) {
            try await Self.withEngine { e, redis in
                try await BusSemantics.retention(RedisBusEngine(redis: redis, retention: .seconds(1)))
                _ = e
            }
        }
    }

    @Test("the backlog per queue is measured for troupe_bus_lag and returns to zero")
    func lag() async throws { try await withDeadline(.seconds(30)) { try await Self.withEngine { e, _ in try await BusSemantics.lagReported(e) } } }

    @Test("consumers and their listeners run on the pool by default, on the engine's event loops when asked")
    func execution() async throws {
        try await withDeadline(.seconds(30)) {
            try await Self.withEngine { engine, _ in
                try await BusSemantics.withBus(engine) { bus in
                    try await bus.createTopic("where", queues: 2)
                    let onLoop = Locked<[Bool]>([]), onPool = Locked<[Bool]>([])
                    let members = Members()
                    defer { members.cancelAll() }
                    members.start(BusConsumer(bus: bus, group: "loops", topic: "where", listener: .concurrent { _ in
                        onLoop.withLock { $0.append(MultiThreadedEventLoopGroup.currentEventLoop != nil) }
                        return .success
                    }, execution: .engine))
                    members.start(BusConsumer(bus: bus, group: "default", topic: "where", listener: .concurrent { _ in
                        onPool.withLock { $0.append(MultiThreadedEventLoopGroup.currentEventLoop != nil) }
                        return .success
                    }))
                    let ordered = Locked<[Bool]>([])
                    members.start(BusConsumer(bus: bus, group: "ordered", topic: "where", listener: .orderly { _ in
                        ordered.withLock { $0.append(MultiThreadedEventLoopGroup.currentEventLoop != nil) }
                        return .success
                    }, execution: .engine))
                    let producer = bus.producer(group: "p")
                    for index in 0..<20 { try await producer.send(OutgoingMessage(topic: "where", body: Array("m\(index)".utf8))) }
                    #expect(await waitUntil(.seconds(10)) {
                        onLoop.withLock { $0.count } == 20 && onPool.withLock { $0.count } == 20 && ordered.withLock { $0.count } == 20
                    })
                    #expect(onLoop.withLock { $0 } == Array(repeating: true, count: 20), "listeners ran on an event loop")
                    #expect(ordered.withLock { $0 } == Array(repeating: true, count: 20), "orderly queue workers ran on an event loop")
                    #expect(onPool.withLock { $0 } == Array(repeating: false, count: 20), "listeners ran on the pool")
                }
            }
        }
    }

    @Test("bad input: oversized body refused; a malformed stream entry goes to the DLQ with the reason")
    func badInput() async throws {
        try await withDeadline(.seconds(60)) {
            try await Self.withEngine { engine, redis in
                try await BusSemantics.badInput(engine)
                try await BusSemantics.withBus(engine) { bus in
                    try await bus.createTopic("raw", queues: 1)
                    try await engine.ensureGroup(topic: "raw", group: "readers", fromEnd: false)
                    try await redis.streamAdd(RedisBusEngine.stream("raw", 0), fields: [("garbage", "not a message")])
                    let members = Members()
                    defer { members.cancelAll() }
                    members.start(BusConsumer(bus: bus, group: "readers", topic: "raw", listener: .concurrent { _ in .success }))
                    let deadLettered = try await waitUntil(.seconds(10)) { try await !bus.deadLetters(group: "readers").isEmpty }
                    #expect(deadLettered)
                    let dead = try await bus.deadLetters(group: "readers").first
                    #expect(dead?.properties["DLQ_REASON"]?.contains("no decodable message") == true)
                    let drained = try await waitUntil(.seconds(5)) { try await bus.lag(group: "readers", topic: "raw").values.reduce(0, +) == 0 }
                    #expect(drained, "acknowledged, not retried forever")
                }
            }
        }
    }
}

@Suite("Bus semantics on a 3-master Redis Cluster", .serialized, .enabled(if: ServerProcess.shouldRun("redis-server")))
struct RedisClusterBusTests {
    static func withEngine(_ body: @Sendable (RedisBusEngine) async throws -> Void) async throws {
        let fixture = try await RedisClusterFixture.start(masters: 3)
        do {
            let client = try RedisClusterClient(configuration: .init(seeds: [.init(host: "127.0.0.1", port: fixture.ports[0])]))
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await client.run() }
                defer { client.shutdown() }
                try await body(RedisBusEngine(redis: client))
                client.shutdown()
            }
        } catch {
            await fixture.shutdown()
            throw error
        }
        await fixture.shutdown()
    }

    @Test("tags, keys, broadcast; transactions; delays, retries and dead letters — queues spread over the masters")
    func semantics() async throws {
        try await withDeadline(.seconds(120)) {
            try await Self.withEngine { engine in
                try await BusSemantics.tagsKeysAndBroadcast(engine)
                try await BusSemantics.transactions(engine)
                try await BusSemantics.delaysRetriesAndDeadLetters(engine)
            }
        }
    }

    @Test("at-least-once and per-key order on the cluster")
    func deliveryAndOrder() async throws {
        try await withDeadline(.seconds(240)) {
            try await Self.withEngine { engine in
                try await BusSemantics.atLeastOnce(engine, messages: 2_000)
                try await BusSemantics.ordering(engine, keys: 200, perKey: 5)
            }
        }
    }
}
