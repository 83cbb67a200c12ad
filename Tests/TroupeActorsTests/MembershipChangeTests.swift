import Testing
import TroupeCore
import TroupeActors
import TroupeTestSupport

@Suite("Membership changes: departed members and a lapsed membership")
struct MembershipChangeTests {
    @Test("a call in flight to a member that leaves the membership fails at once, as retryable, instead of waiting out its deadline")
    func departedMemberFailsCallsInFlight() async throws {
        let membership = InMemoryMembership()
        try await LocalCluster(callTimeout: .seconds(20)).run(nodes: 2, membership: membership, register: registerTestActors) { systems in
            let (caller, callee) = (systems[0], systems[1])
            // A key that the callee owns, so the call crosses the network.
            let key = try #require((0..<500).map { "k\($0)" }.first {
                caller.owner(of: .virtual(type: "Counter", key: $0))?.node.name == callee.node.name
            })
            let counter = try caller.reference(Counter.self, key: key)
            let started = ContinuousClock.now
            let call = Task { try await counter.sleep(milliseconds: 15_000) }
            try await Task.sleep(for: .milliseconds(300))
            // The failure detector removes the callee (its lease expired: dead, or partitioned with a silent connection).
            membership.remove(nodeNamed: callee.node.name)
            let error = await #expect(throws: ActorSystemError.self) { try await call.value }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed < .seconds(3), "the call waited \(elapsed) for a member that had left")
            #expect(error.map(isTransient) == true, "a departed member's call is retryable: \(String(describing: error))")
        }
    }

    @Test("a call to a member that cannot be reached waits for the membership to drop it and goes to the key's new owner")
    func unreachableOwnerReroutes() async throws {
        let membership = InMemoryMembership()
        try await LocalCluster(callTimeout: .seconds(5)).run(nodes: 2, membership: membership, register: registerTestActors) { systems in
            let (caller, dead) = (systems[0], systems[1])
            let key = try #require((0..<500).map { "k\($0)" }.first {
                caller.owner(of: .virtual(type: "Counter", key: $0))?.node.name == dead.node.name
            })
            // The owner dies (its port refuses connections) but is still a member until its lease expires.
            dead.shutdown()
            try await Task.sleep(for: .milliseconds(200))
            let removal = Task {
                try await Task.sleep(for: .milliseconds(400))
                membership.remove(nodeNamed: dead.node.name)
            }
            let started = ContinuousClock.now
            #expect(try await caller.reference(Counter.self, key: key).increment(by: 1) == 1, "served by the new owner")
            let took = ContinuousClock.now - started
            #expect(took < .seconds(2), "answered \(took) after the call, once the membership changed")
            try await removal.value
        }
    }

    @Test("a lapsed membership drops every activation, so reads come from the store again, not from stale memory")
    func lapseDropsActivations() async throws {
        let store = InMemoryActorStateStore()
        let membership = InMemoryMembership()
        try await LocalCluster().run(nodes: 1, membership: membership, stateStore: store, register: registerTestActors) { systems in
            let system = systems[0]
            let counter = try system.reference(Counter.self, key: "moved-away")
            #expect(try await counter.increment(by: 1) == 1)
            // While this node was cut off, the key's new owner wrote newer state.
            let newer = try BinaryEncoder().encode(Counter.State(count: 5))
            #expect(try await store.compareAndSet(type: "Counter", key: "moved-away", expectedVersion: 1, bytes: newer))
            #expect(try await counter.count() == 1, "before the lapse is known, the activation answers from memory")
            await membership.lapse()
            #expect(system.activeActorIDs.isEmpty, "every activation was dropped")
            #expect(try await counter.count() == 5, "the next read loads the newer state")
        }
    }
}
