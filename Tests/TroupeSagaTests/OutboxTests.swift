import Distributed
import Foundation
import Testing
import TroupeActors
import TroupeBus
import TroupeCore
@testable import TroupeSaga
import TroupeStore
import TroupeMongo
import TroupeRedis
import TroupeTestSupport
import TroupeActorsStore

/// A ledger whose every change emits an event through the outbox.
distributed actor Ledger: PersistentVirtualActor {
    typealias ActorSystem = ClusterActorSystem

    struct State: OutboxCarrying {
        var balance = 0
        var outbox = Outbox()
    }

    var persisted = Persisted(State())

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    func didActivate() async throws {
        _ = try? await relayOutbox()
    }

    distributed func add(_ amount: Int) async throws -> Int {
        try await updateAndEmit { state, events in
            state.balance += amount
            events.emit(OutgoingMessage(topic: "ledger", keys: ["\(id)"], body: Array("\(state.balance)".utf8)))
            return state.balance
        }
    }

    /// Records a reminder due at `at` (milliseconds since 1970), relayed in the background.
    distributed func remind(at: Int64) async throws {
        try await updateAndEmit(relay: .inBackground) { state, events in
            events.emit(OutgoingMessage(topic: "reminders", keys: ["\(id)"], body: Array("due".utf8), delay: .at(at)))
        }
    }

    distributed func pending() -> Int { state.outbox.pending.count }
}

final class CollectingPublisher: OutboxPublisher {
    let events = Locked<[OutboxEvent]>([])
    let failing = Locked(false)
    /// How long each publish takes (a bus that hangs before it fails or answers).
    let latency = Locked(Duration.zero)

    func publish(_ event: OutboxEvent) async throws {
        let latency = latency.withLock { $0 }
        if latency > .zero { try await Task.sleep(for: latency) }
        if failing.withLock({ $0 }) { throw StepFailure() }
        events.withLock { $0.append(event) }
    }
}

@Suite("Outbox in the actor's own state", .serialized)
struct OutboxTests {
    @Test("10,000 state changes give 10,000 events, in per-actor order")
    func ordering() async throws {
        let publisher = CollectingPublisher()
        try await LocalCluster().run(nodes: 2, register: { $0.register(Ledger.self) }) { systems in
            for system in systems { system.outboxRelay.setPublisher(publisher) }
            defer { for system in systems { system.outboxRelay.removePublisher() } }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for actor in 0..<10 {
                    group.addTask {
                        let ledger = try systems[actor % 2].reference(Ledger.self, key: "l\(actor)")
                        for _ in 0..<1_000 { _ = try await ledger.add(1) }
                    }
                }
                try await group.waitForAll()
            }
            let events = publisher.events.withLock { $0 }
            var unique: [String: OutboxEvent] = [:]
            for event in events { unique[event.id] = event }
            #expect(unique.count == 10_000, "every change published (duplicates allowed, losses not)")
            for actor in 0..<10 {
                let sequences = events.filter { $0.keys == ["virtual:Ledger/l\(actor)"] || $0.keys.first?.hasSuffix("l\(actor)") == true }.map(\.sequence)
                var seen = Set<Int64>()
                let firstOccurrences = sequences.filter { seen.insert($0).inserted }
                #expect(firstOccurrences == Array(1...1_000), "actor l\(actor): events in order")
            }
        }
    }

    @Test("the node dies between the state write and the publish: the restarted node publishes from the stored outbox")
    func crashBetweenWriteAndPublish() async throws {
        let store = InMemoryActorStateStore()
        let publisher = CollectingPublisher()
        publisher.failing.withLock { $0 = true }  // the "crash": the publish never happens
        try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(publisher)
            defer { systems[0].outboxRelay.removePublisher() }
            let ledger = try systems[0].reference(Ledger.self, key: "crash")
            #expect(try await ledger.add(5) == 5)
            #expect(try await ledger.add(7) == 12)
            #expect(try await ledger.pending() == 2, "state written, events kept in the same document")
        }
        #expect(publisher.events.withLock { $0.isEmpty })
        publisher.failing.withLock { $0 = false }
        // Restart on the same store: the activation relays exactly what the outbox holds.
        try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(publisher)
            defer { systems[0].outboxRelay.removePublisher() }
            let ledger = try systems[0].reference(Ledger.self, key: "crash")
            #expect(try await ledger.pending() == 0)
            let bodies = publisher.events.withLock { $0 }.map { String(decoding: $0.body, as: UTF8.self) }
            #expect(bodies == ["5", "12"])
        }
    }

    @Test("a relayed event is forgotten with the actor's next write, not with a write of its own; passivation stores what is left")
    func relayedEventsForgottenWithNextWrite() async throws {
        let store = InMemoryActorStateStore()
        let publisher = CollectingPublisher()
        @Sendable func stored() async throws -> (version: Int64, pending: [Int64]) {
            let versioned = try #require(try await store.load(type: "Ledger", key: "deferred"))
            return (versioned.version, try BinaryDecoder().decode(Ledger.State.self, from: versioned.bytes).outbox.pending.map(\.sequence))
        }
        try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(publisher)
            defer { systems[0].outboxRelay.removePublisher() }
            let ledger = try systems[0].reference(Ledger.self, key: "deferred")
            #expect(try await ledger.add(1) == 1)
            #expect(try await ledger.pending() == 0, "relayed before the call returned")
            var now = try await stored()
            #expect(now.version == 1 && now.pending == [1], "one write: the relayed event is still stored, \(now)")
            #expect(try await ledger.add(2) == 3)
            now = try await stored()
            #expect(now.version == 2 && now.pending == [2], "the next write dropped event 1: \(now)")
        }
        // The cluster stopped: the activation was passivated and stored what it had deferred.
        let last = try await stored()
        #expect(last.version == 3 && last.pending.isEmpty, "\(last)")
        #expect(publisher.events.withLock { $0 }.map(\.sequence) == [1, 2], "each event published once")
    }

    @Test("the bus is down when the event is written: the activation keeps retrying and publishes once it is back")
    func relayRetriesAfterOutage() async throws {
        let publisher = CollectingPublisher()
        publisher.failing.withLock { $0 = true }
        try await LocalCluster().run(nodes: 1, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(publisher)
            defer { systems[0].outboxRelay.removePublisher() }
            let ledger = try systems[0].reference(Ledger.self, key: "outage")
            #expect(try await ledger.add(3) == 3)
            #expect(try await ledger.pending() == 1, "kept in the outbox while the bus is down")
            #expect(try await ledger.add(4) == 7)
            #expect(systems[0].outboxRelay.pendingEvents == 2, "the backlog counts what waits for the bus")
            publisher.failing.withLock { $0 = false }
            // Nothing calls the actor's methods that emit again: the retry alone must publish.
            let deadline = ContinuousClock.now + .seconds(15)
            while try await ledger.pending() > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(try await ledger.pending() == 0)
            #expect(publisher.events.withLock { $0 }.map { String(decoding: $0.body, as: UTF8.self) } == ["3", "7"])
            #expect(systems[0].outboxRelay.pendingEvents == 0, "and nothing once it is out")
        }
    }

    @Test("a background relay: the write does not wait for a hanging bus, and a delayed event keeps the due time it was given")
    func backgroundRelayKeepsDueTime() async throws {
        let publisher = CollectingPublisher()
        publisher.latency.withLock { $0 = .seconds(3) }
        try await LocalCluster().run(nodes: 1, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(publisher)
            defer { systems[0].outboxRelay.removePublisher() }
            let ledger = try systems[0].reference(Ledger.self, key: "reminder")
            let due: Int64 = 4_102_444_800_000  // 2100-01-01
            let started = ContinuousClock.now
            try await ledger.remind(at: due)
            #expect(ContinuousClock.now - started < .seconds(2), "the call waited for its write only, not for the 3 s publish")
            #expect(try await ledger.pending() == 1)
            let deadline = ContinuousClock.now + .seconds(15)
            while try await ledger.pending() > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            let events = publisher.events.withLock { $0 }
            #expect(events.count == 1)
            #expect(events.first?.deliverAt == due, "relayed late, still due when it was meant to be")
        }
        // Through a real bus: the delayed message is scheduled for its due time, not delivered now.
        let bus = try Bus(engine: InMemoryBusEngine())
        try await LocalCluster().run(nodes: 1, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(bus.producer(group: "reminders"))
            defer { systems[0].outboxRelay.removePublisher() }
            let ledger = try systems[0].reference(Ledger.self, key: "reminder-bus")
            try await ledger.remind(at: nowMilliseconds() + 60_000)
            let deadline = ContinuousClock.now + .seconds(10)
            while try await ledger.pending() > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await ledger.pending() == 0, "relayed")
            #expect(try await bus.engine.messages(topic: "reminders", limit: 10).isEmpty, "not delivered before it is due")
            #expect(try await bus.engine.promoteDue(nowMS: nowMilliseconds() + 61_000) == 1, "scheduled for its due time")
        }
    }

    @Test("two systems in one process keep their own saga definitions and outbox publishers")
    func perSystemRegistries() async throws {
        let first = CollectingPublisher(), second = CollectingPublisher()
        try await LocalCluster().run(nodes: 2, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(first)
            systems[1].outboxRelay.setPublisher(second)
            systems[0].sagas.register(SagaDefinition("only-on-node-1", steps: []))
            #expect(systems[0].sagas.definition("only-on-node-1") != nil)
            #expect(systems[1].sagas.definition("only-on-node-1") == nil, "a definition belongs to the system it was registered on")
            // Every key of one ledger lives on one node; its events go to that node's publisher only.
            for key in 0..<20 { _ = try await systems[0].reference(Ledger.self, key: "per-system-\(key)").add(1) }
            let counts = (first.events.withLock { $0.count }, second.events.withLock { $0.count })
            #expect(counts.0 + counts.1 == 20)
            #expect(counts.0 > 0 && counts.1 > 0, "both nodes own some keys and relay through their own publisher: \(counts)")
        }
    }

    @Test("events relayed through the bus keep their ids, so an inbox can drop redeliveries")
    func busRelay() async throws {
        let bus = try Bus(engine: InMemoryBusEngine())
        let producer = bus.producer(group: "ledger-service")
        try await LocalCluster().run(nodes: 1, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(producer)
            defer { systems[0].outboxRelay.removePublisher() }
            _ = try await systems[0].reference(Ledger.self, key: "bus").add(3)
            let stored = try await bus.engine.messages(topic: "ledger", limit: 10)
            #expect(stored.count == 1)
            #expect(stored.first?.message.id.hasSuffix("#1") == true)
        }
    }

    @Test("an activation that relayed its events and died before storing that: the next one does not relay them again")
    func relayedBeforeCrash() async throws {
        let store = InMemoryActorStateStore()
        let bus = try Bus(engine: InMemoryBusEngine())
        let producer = bus.producer(group: "ledger-service")
        let leftByTheCrash = Locked<[UInt8]>([])
        try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(producer)
            defer { systems[0].outboxRelay.removePublisher() }
            #expect(try await systems[0].reference(Ledger.self, key: "crash").add(4) == 4)
            // What a crash right after the relay leaves: the event stored, its removal not yet written.
            let stored = try #require(try await store.load(type: "Ledger", key: "crash")).bytes
            leftByTheCrash.withLock { $0 = stored }
        }
        let version = try #require(try await store.load(type: "Ledger", key: "crash")).version
        #expect(try await store.compareAndSet(type: "Ledger", key: "crash", expectedVersion: version, bytes: leftByTheCrash.withLock { $0 }))
        try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(Ledger.self) }) { systems in
            systems[0].outboxRelay.setPublisher(producer)
            defer { systems[0].outboxRelay.removePublisher() }
            let ledger = try systems[0].reference(Ledger.self, key: "crash")
            #expect(try await ledger.pending() == 0, "the activation went through its stored outbox")
            #expect(try await ledger.add(1) == 5)
        }
        let ids = try await bus.engine.messages(topic: "ledger", limit: 10).map(\.message.id)
        #expect(ids.count == 2 && Set(ids).count == 2, "each event on the bus once: \(ids)")
    }
}

@Suite("Transactional messages for plain services")
struct TransactionalPublisherTests {
    struct Order: Codable, Sendable {
        var _id: String
        var total: Int
    }

    @Test("the message goes out only when the local transaction commits; the checker resolves a half message from the local record")
    func transactional() async throws {
        let engine = try await SQLiteDocumentStore.open()
        let store = DocumentStore(engine: engine)
        var configuration = BusConfiguration()
        configuration.firstCheckAfter = .zero
        let bus = try Bus(engine: InMemoryBusEngine(), configuration: configuration)
        let producer = bus.producer(group: "orders")
        let publisher = try await TransactionalPublisher(store: store, producer: producer)
        let orders = try await store.collection("orders", of: Order.self)
        try await publisher.send(OutgoingMessage(topic: "order-events", body: Array("o1".utf8))) { tx in
            try await orders.in(tx).insert(Order(_id: "o1", total: 10))
        }
        struct LocalFailure: Error {}
        await #expect(throws: (any Error).self) {
            try await publisher.send(OutgoingMessage(topic: "order-events", body: Array("o2".utf8))) { tx in
                try await orders.in(tx).insert(Order(_id: "o2", total: 20))
                throw LocalFailure()
            }
        }
        #expect(try await orders.count() == 1)
        // A producer that died after the half message and its local commit: the checker finds the record.
        let orphan = try await producer.sendTransactional(OutgoingMessage(topic: "order-events", body: Array("o3".utf8))) { half in
            try await store.collection("tx_messages", of: TransactionalPublisher.Record.self).insert(.init(_id: half.id, topic: half.topic, at: Date()))
            return .unknown
        }
        _ = try await producer.sendTransactional(OutgoingMessage(topic: "order-events", body: Array("o4".utf8))) { _ in .unknown }
        #expect(try await producer.checkHalfMessages() == 2, "o3 committed from its record, o4 rolled back for lack of one")
        _ = orphan
        let delivered = try await bus.engine.messages(topic: "order-events", limit: 10).map { String(decoding: $0.message.body, as: UTF8.self) }
        #expect(delivered == ["o1", "o3"])
        await engine.close()
    }
}

@Suite("Outbox and saga with actor state in MongoDB (SecantusDB)", .serialized, .enabled(if: ServerProcess.shouldRunMongo))
struct MongoOutboxSagaTests {
    @Test("outbox survives a crash between write and publish; a saga fails over and one compensates; on MongoDB state")
    func onMongo() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                let store = try await DocumentActorStateStore(store: DocumentStore(engine: MongoDocumentStore(database: client.database("actors"))))
                let publisher = CollectingPublisher()
                publisher.failing.withLock { $0 = true }
                try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(Ledger.self) }) { systems in
                    systems[0].outboxRelay.setPublisher(publisher)
                    defer { systems[0].outboxRelay.removePublisher() }
                    let balance = try await systems[0].reference(Ledger.self, key: "m").add(4)
                    #expect(balance == 4)
                }
                publisher.failing.withLock { $0 = false }
                try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(Ledger.self) }) { systems in
                    systems[0].outboxRelay.setPublisher(publisher)
                    defer { systems[0].outboxRelay.removePublisher() }
                    let pending = try await systems[0].reference(Ledger.self, key: "m").pending()
                    #expect(pending == 0)
                    #expect(publisher.events.withLock { $0 }.map { String(decoding: $0.body, as: UTF8.self) } == ["4"])
                }
                let saga = SagaDefinition("mongo-saga", steps: [
                    SagaStep("a", action: { record($0.sagaID, "a") }, compensation: { record($0.sagaID, "undo a") }),
                    SagaStep("b", maxAttempts: 1, compensateOnFailure: false, action: { _ in throw StepFailure() },
                             compensation: { record($0.sagaID, "undo b") }),
                ])
                try await SagaTests.failover(store: store, definition: "mongo-order")
                try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(SagaActor.self); $0.sagas.register(saga) }) { systems in
                    _ = try await systems[0].reference(SagaActor.self, key: "mongo-1").start(definition: "mongo-saga", input: [])
                    let snapshot = try await waitForSaga(systems[0], "mongo-1")
                    #expect(snapshot.status == .compensated)
                    #expect(snapshot.compensatedSteps == ["a"])
                    #expect(journal.withLock { $0["SagaActor/mongo-1"] ?? [] } == ["a", "undo a"])
                }
            }
        }
    }
}


@Suite("Outbox relayed through the Redis Streams bus", .serialized, .enabled(if: ServerProcess.shouldRun("redis-server")))
struct RedisOutboxTests {
    @Test("events relayed by actors arrive on a Redis consumer with their outbox ids, in per-actor order")
    func redisRelay() async throws {
        let server = try await ServerProcess.redis()
        defer { server.terminate() }
        let configuration = try RedisConfiguration(url: server.redisURL)
        try await withDeadline(.seconds(60)) {
            try await withRedisClient(configuration) { redis in
                let engine = RedisBusEngine(redis: redis, blockingReads: configuration)
                let bus = try Bus(engine: engine)
                let received = Locked<[String]>([])
                let consumer = BusConsumer(bus: bus, group: "audit", topic: "ledger", listener: .orderly { message in
                    received.withLock { $0.append(message.id) }
                    return .success
                })
                let running = Task { try await consumer.run() }
                defer { running.cancel() }
                try await LocalCluster().run(nodes: 1, register: { $0.register(Ledger.self) }) { systems in
                    systems[0].outboxRelay.setPublisher(bus.producer(group: "ledger-service"))
                    defer { systems[0].outboxRelay.removePublisher() }
                    let ledger = try systems[0].reference(Ledger.self, key: "redis")
                    for _ in 0..<50 { _ = try await ledger.add(1) }
                }
                let deadline = ContinuousClock.now + .seconds(20)
                while received.withLock({ $0.count }) < 50, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
                let ids = received.withLock { $0 }
                #expect(ids.count == 50)
                #expect(ids.compactMap { Int($0.split(separator: "#").last ?? "") } == Array(1...50), "outbox ids, in order")
                running.cancel()
                _ = try? await running.value
                await engine.close()
            }
        }
    }
}
