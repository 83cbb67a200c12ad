import Testing
import TroupeCore
import TroupeActors
import TroupeTestSupport

@Suite("Bounded activations and keys")
struct ActivationLimitTests {
    @Test("past maxActivations the least recently used activations are passivated; the most recent stay")
    func activationLimit() async throws {
        var configuration = LocalCluster().configuration(node: "node-1")
        configuration.maxActivations = 50
        let system = try await ClusterActorSystem.start(configuration, membership: InMemoryMembership())
        registerTestActors(system)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await system.run() }
            try await LocalCluster.waitForMembers([system], count: 1)
            for index in 0..<200 { _ = try await system.reference(Counter.self, key: "k\(index)").count() }
            try await eventually("the node is back under its limit") { system.activeActorIDs.count <= 50 }
            #expect(system.activeActorIDs.contains(.virtual(type: "Counter", key: "k199")), "the most recent activation stays")
            #expect(!system.activeActorIDs.contains(.virtual(type: "Counter", key: "k0")), "the least recent is passivated")
            // A passivated actor comes back with its state.
            #expect(try await system.reference(Counter.self, key: "k0").increment(by: 3) == 3)
            system.shutdown()
        }
    }

    @Test("reads of keys with no stored state leave no lasting activation; an actor that wrote its state stays")
    func emptyStateActivationsPassivateSoon() async throws {
        var configuration = LocalCluster().configuration(node: "node-1")
        configuration.emptyStateIdleTimeout = .milliseconds(300)
        let system = try await ClusterActorSystem.start(configuration, membership: InMemoryMembership())
        registerTestActors(system)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await system.run() }
            try await LocalCluster.waitForMembers([system], count: 1)
            #expect(try await system.reference(Counter.self, key: "written").increment(by: 2) == 2)
            for index in 0..<100 { #expect(try await system.reference(Counter.self, key: "random-\(index)").count() == 0) }
            #expect(system.activeActorIDs.count == 101)
            try await eventually("the empty activations are passivated") { system.activeActorIDs.count == 1 }
            #expect(system.activeActorIDs == [.virtual(type: "Counter", key: "written")], "the idle timeout of a written actor is unchanged")
            // An actor that first read nothing and then wrote keeps its activation like any other.
            #expect(try await system.reference(Counter.self, key: "late").count() == 0)
            #expect(try await system.reference(Counter.self, key: "late").increment(by: 1) == 1)
            try await Task.sleep(for: .milliseconds(800))
            #expect(system.activeActorIDs.contains(.virtual(type: "Counter", key: "late")))
            system.shutdown()
        }
    }

    @Test("a key longer than 1,024 bytes is refused with invalidKey before any call, not sent as an empty key")
    func keyLength() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems async throws in
            let long = String(repeating: "x", count: 70_000)
            let error = #expect(throws: ActorSystemError.self) { try systems[0].reference(Counter.self, key: long) }
            #expect(error?.code == .invalidKey)
            await #expect(throws: ActorSystemError.self) { _ = try await systems[0].actor(Counter.self, key: long) }
            let edge = String(repeating: "y", count: ActorID.maxKeyBytes)
            #expect(try await systems[0].reference(Counter.self, key: edge).increment(by: 1) == 1)
            #expect(systems.allSatisfy { $0.activeActorIDs.allSatisfy { $0.key != "" } })
        }
    }
}
