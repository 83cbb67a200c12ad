import Distributed
import Testing
import TroupeCore
@testable import TroupeActors
import TroupeTestSupport

@Suite("Stale instances")
struct StaleInstanceTests {
    @Test("an instance dropped after a lapse whose late write is fenced does not take down the activation that replaced it")
    func lateWriteOfDroppedInstance() async throws {
        let store = InMemoryActorStateStore()
        try await LocalCluster().run(nodes: 1, stateStore: store, register: registerTestActors) { systems in
            let system = systems[0]
            let id = ActorID.virtual(type: "Counter", key: "replaced")
            // The old instance, kept by a caller (as a saga's drive or an outbox relay keeps its actor).
            let old = try await system.actor(Counter.self, key: "replaced")
            #expect(try await old.increment(by: 1) == 1)
            // The membership lapses: every activation is dropped; the old instance does not know.
            await system.dropActivationsAfterLapse()
            #expect(!system.activeActorIDs.contains(id))
            // A new activation takes the key and writes.
            let current = try system.reference(Counter.self, key: "replaced")
            #expect(try await current.increment(by: 1) == 2)
            #expect(system.activeActorIDs.contains(id))
            // The old instance's late write loses the compare-and-set…
            await #expect(throws: ActorSystemError.self) { try await old.increment(by: 100) }
            // …and the activation that replaced it is still there, writing.
            #expect(system.activeActorIDs.contains(id), "the newer activation was removed by the stale instance's fenced write")
            #expect(system.statistics.fenced == 0)
            #expect(try await current.increment(by: 1) == 3)
        }
    }

    @Test("an activation whose own write in didActivate is fenced is not registered; the call goes to a fresh one")
    func fencedWhileActivating() async throws {
        let store = InMemoryActorStateStore()
        // The key exists at version 1.
        #expect(try await store.compareAndSet(type: "ActivatingWriter", key: "k", expectedVersion: 0,
                                              bytes: BinaryEncoder().encode(ActivatingWriter.State())))
        // Once: another writer moves the version on between this node's load and its first write.
        ActivatingWriter.beforeFirstWrite.withLock { $0 = {
            let stored = try await store.load(type: "ActivatingWriter", key: "k")!
            _ = try await store.compareAndSet(type: "ActivatingWriter", key: "k", expectedVersion: stored.version, bytes: stored.bytes)
        } }
        try await LocalCluster().run(nodes: 1, stateStore: store, register: { $0.register(ActivatingWriter.self) }) { systems in
            let writer = try systems[0].reference(ActivatingWriter.self, key: "k")
            #expect(try await writer.bump() == 1, "answered by a fresh activation after the fenced one")
            #expect(try await writer.bump() == 2, "and the registered activation writes")
            #expect(ActivatingWriter.beforeFirstWrite.withLock { $0 } == nil, "the interference happened")
        }
    }
}

/// Writes in `didActivate` (as an outbox relay does); a test hook runs once before that write.
distributed actor ActivatingWriter: PersistentVirtualActor {
    typealias ActorSystem = ClusterActorSystem
    struct State: Codable, Sendable {
        var activations = 0
        var bumps = 0
    }
    static let beforeFirstWrite = Locked<(@Sendable () async throws -> Void)?>(nil)

    var persisted = Persisted(State())
    init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }

    func didActivate() async throws {
        let hook = Self.beforeFirstWrite.withLock { hook in
            defer { hook = nil }
            return hook
        }
        try await hook?()
        _ = try? await update { $0.activations += 1 }
    }

    distributed func bump() async throws -> Int {
        try await update { state in
            state.bumps += 1
            return state.bumps
        }
    }
}
