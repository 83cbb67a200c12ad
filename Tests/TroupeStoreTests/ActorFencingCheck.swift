import Distributed
import Testing
import TroupeActors
import TroupeCore
import TroupeTestSupport

/// A persistent counter for the fencing check.
distributed actor Tally: PersistentVirtualActor {
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

    distributed func value() -> Int { state.value }
}

/// The runtime's fencing guarantees, re-run on a given state store: two activations of one key (the
/// nodes disagree about membership) race; every increment lands exactly once, and stale writes are refused.
enum ActorFencingCheck {
    static func run(_ store: any ActorStateStore) async throws {
        let cluster = LocalCluster()
        let a = try await cluster.start(node: "node-a", membership: InMemoryMembership(), stateStore: store) { $0.register(Tally.self) }
        let b = try await cluster.start(node: "node-b", membership: InMemoryMembership(), stateStore: store) { $0.register(Tally.self) }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await a.run() }
            group.addTask { try await b.run() }
            try await LocalCluster.waitForMembers([a], count: 1)
            try await LocalCluster.waitForMembers([b], count: 1)
            let refA = try a.reference(Tally.self, key: "contested")
            let refB = try b.reference(Tally.self, key: "contested")
            #expect(try await refA.value() == 0)
            #expect(try await refB.value() == 0)
            let perSide = 50
            try await withThrowingTaskGroup(of: Void.self) { increments in
                for index in 0..<(2 * perSide) {
                    let reference = index.isMultiple(of: 2) ? refA : refB
                    increments.addTask { _ = try await reference.add(1) }
                }
                try await increments.waitForAll()
            }
            #expect(a.statistics.fenced + b.statistics.fenced > 0, "the activations never conflicted, so the check proved nothing")
            let stored = try await store.load(type: "Tally", key: "contested")
            #expect(stored?.version == Int64(2 * perSide), "every increment is exactly one successful write")
            let decoded = try stored.map { try store.codec.decode(Tally.State.self, from: $0) }
            #expect(decoded?.value == 2 * perSide)
            // A write with an old version is refused.
            let stale = try store.codec.encode(decoded)
            #expect(try await store.compareAndSet(type: "Tally", key: "contested", expectedVersion: 1, bytes: stale) == false)
            a.shutdown()
            b.shutdown()
        }
    }
}
