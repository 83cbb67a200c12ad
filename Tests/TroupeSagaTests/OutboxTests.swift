import Distributed
import Foundation
import Testing
import TroupeActors
import TroupeBus
import TroupeCore
@testable import TroupeSaga
import TroupeTestSupport

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

    distributed func pending() -> Int { state.outbox.pending.count }
}

final class CollectingPublisher: OutboxPublisher {
    let events = Locked<[OutboxEvent]>([])
    let failing = Locked(false)

    func publish(_ event: OutboxEvent) async throws {
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
            for system in systems { OutboxRelay.setPublisher(publisher, for: system) }
            defer { for system in systems { OutboxRelay.removePublisher(for: system) } }
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
            OutboxRelay.setPublisher(publisher, for: systems[0])
            defer { OutboxRelay.removePublisher(for: systems[0]) }
            let ledger = try systems[0].reference(Ledger.self, key: "crash")
            #expect(try await ledger.add(5) == 5)
            #expect(try await ledger.add(7) == 12)
            #expect(try await ledger.pending() == 2, "state written, events kept in the same document")
        }
        #expect(publisher.events.withLock { $0.isEmpty })
        publisher.failing.withLock { $0 = false }
        // Restart on the same store: the activation relays exactly what the outbox holds.
        try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(Ledger.self) }) { systems in
            OutboxRelay.setPublisher(publisher, for: systems[0])
            defer { OutboxRelay.removePublisher(for: systems[0]) }
            let ledger = try systems[0].reference(Ledger.self, key: "crash")
            #expect(try await ledger.pending() == 0)
            let bodies = publisher.events.withLock { $0 }.map { String(decoding: $0.body, as: UTF8.self) }
            #expect(bodies == ["5", "12"])
        }
    }

    @Test("events relayed through the bus keep their ids, so an inbox can drop redeliveries")
    func busRelay() async throws {
        let bus = try Bus(engine: InMemoryBusEngine())
        let producer = bus.producer(group: "ledger-service")
        try await LocalCluster().run(nodes: 1, register: { $0.register(Ledger.self) }) { systems in
            OutboxRelay.setPublisher(producer, for: systems[0])
            defer { OutboxRelay.removePublisher(for: systems[0]) }
            _ = try await systems[0].reference(Ledger.self, key: "bus").add(3)
            let stored = try await bus.engine.messages(topic: "ledger", limit: 10)
            #expect(stored.count == 1)
            #expect(stored.first?.message.id.hasSuffix("#1") == true)
        }
    }
}
