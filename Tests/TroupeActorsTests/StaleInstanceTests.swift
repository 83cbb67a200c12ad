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
}
