import Testing
import TroupeCore
import TroupeActors
import TroupeTestSupport

@Suite("Single activation with fencing")
struct FencingTests {
    @Test("two activations of one key (membership disagreement): concurrent increments lose no update, one activation survives")
    func disagreement() async throws {
        let store = InMemoryActorStateStore()
        let cluster = LocalCluster()
        // Each node sees only itself, so each believes it owns every key.
        let viewA = InMemoryMembership()
        let viewB = InMemoryMembership()
        let a = try await cluster.start(node: "node-a", membership: viewA, stateStore: store, register: registerTestActors)
        let b = try await cluster.start(node: "node-b", membership: viewB, stateStore: store, register: registerTestActors)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await a.run() }
            group.addTask { try await b.run() }
            try await LocalCluster.waitForMembers([a], count: 1)
            try await LocalCluster.waitForMembers([b], count: 1)

            let key = "contested"
            let refA = try a.reference(Counter.self, key: key)
            let refB = try b.reference(Counter.self, key: key)
            // Both activate (and load version 0) before anyone writes.
            #expect(try await refA.count() == 0)
            #expect(try await refB.count() == 0)
            #expect(a.activeActorIDs.contains(.virtual(type: "Counter", key: key)))
            #expect(b.activeActorIDs.contains(.virtual(type: "Counter", key: key)))

            let perSide = 200
            try await withThrowingTaskGroup(of: Void.self) { increments in
                for index in 0..<(2 * perSide) {
                    let reference = index.isMultiple(of: 2) ? refA : refB
                    increments.addTask { _ = try await reference.increment(by: 1) }
                }
                try await increments.waitForAll()
            }
            let fenced = a.statistics.fenced + b.statistics.fenced
            #expect(fenced > 0, "the two activations never conflicted, so the test proved nothing")
            let stored = try await store.load(type: "Counter", key: key)
            #expect(stored?.version == Int64(2 * perSide), "every increment is exactly one successful write")

            // The views converge: one owner remains, the other hands the key off.
            let members = [a.member, b.member]
            for member in members {
                try await viewA.join(member)
                try await viewB.join(member)
            }
            let owner = a.owner(of: .virtual(type: "Counter", key: key))!.node.name
            let loser = owner == a.node.name ? b : a
            try await eventually("the non-owner's activation is passivated") {
                !loser.activeActorIDs.contains(.virtual(type: "Counter", key: key))
            }
            let survivors = [a, b].filter { $0.activeActorIDs.contains(.virtual(type: "Counter", key: key)) }
            #expect(survivors.count <= 1)
            // The store holds every increment. The survivor may have loaded an older version while the
            // views disagreed; its next write is fenced, it reloads, and the call is retried.
            let storedState = try await store.load(type: "Counter", key: key).map { try BinaryDecoder().decode(Counter.State.self, from: $0.bytes) }
            #expect(storedState?.count == 2 * perSide)
            #expect(try await refB.increment(by: 1) == 2 * perSide + 1)
            #expect(try await refA.count() == 2 * perSide + 1)
            #expect(try await refB.count() == 2 * perSide + 1)
            let after = [a, b].filter { $0.activeActorIDs.contains(.virtual(type: "Counter", key: key)) }
            #expect(after.map(\.node.name) == [owner], "exactly one activation, on the owner")
            a.shutdown()
            b.shutdown()
        }
    }

    @Test("an update that changes nothing is not written (no store round trip, the version stays)")
    func unchangedUpdateIsNotWritten() async throws {
        let store = InMemoryActorStateStore()
        try await LocalCluster().run(nodes: 1, stateStore: store, register: registerTestActors) { systems in
            let counter = try systems[0].reference(Counter.self, key: "same")
            #expect(try await counter.increment(by: 2) == 2)
            #expect(try await store.load(type: "Counter", key: "same")?.version == 1)
            for _ in 0..<5 { #expect(try await counter.increment(by: 0) == 2) }
            #expect(try await store.load(type: "Counter", key: "same")?.version == 1, "five no-op updates wrote nothing")
            #expect(try await counter.increment(by: 1) == 3)
            #expect(try await store.load(type: "Counter", key: "same")?.version == 2)
            // Another activation moved the state on: a no-op update on this one is fenced, not answered from old state.
            let newer = try BinaryEncoder().encode(Counter.State(count: 10))
            #expect(try await store.compareAndSet(type: "Counter", key: "same", expectedVersion: 2, bytes: newer))
            #expect(try await counter.increment(by: 0) == 10, "fenced, re-routed, answered from the newer state")
        }
    }

    @Test("a stale activation's write is refused and the activation removed")
    func staleWrite() async throws {
        let store = InMemoryActorStateStore()
        try await LocalCluster().run(nodes: 1, stateStore: store, register: registerTestActors) { systems in
            let system = systems[0]
            let counter = try await system.actor(Counter.self, key: "stale")
            #expect(try await counter.increment(by: 1) == 1)
            // Another writer (a newer activation elsewhere) moves the version on.
            #expect(try await store.compareAndSet(type: "Counter", key: "stale", expectedVersion: 1, bytes: store.load(type: "Counter", key: "stale")!.bytes))
            await #expect(throws: ActorSystemError.self) { try await counter.increment(by: 1) }
            #expect(!system.activeActorIDs.contains(.virtual(type: "Counter", key: "stale")))
            #expect(system.statistics.fenced == 1)
            // A fresh reference activates again with the newer version and writes.
            #expect(try await system.actor(Counter.self, key: "stale").increment(by: 1) == 2)
        }
    }

    @Test("a stale activation does not refuse from old state: it is fenced, and the routed call is answered from the newer state")
    func staleRefusal() async throws {
        let store = InMemoryActorStateStore()
        try await LocalCluster().run(nodes: 1, stateStore: store, register: registerTestActors) { systems in
            let system = systems[0]
            let counter = try system.reference(Counter.self, key: "refuse")
            #expect(try await counter.increment(by: 1) == 1)
            // A newer activation elsewhere raised the count to 10 (version 2) after this one loaded.
            let newer = try store.codec.encode(Counter.State(count: 10))
            #expect(try await store.compareAndSet(type: "Counter", key: "refuse", expectedVersion: 1, bytes: newer))
            // From its own state (1) the activation here would refuse; it checks the stored version first.
            #expect(try await counter.take(5) == 5, "fenced, re-routed, answered from the newer state")
            #expect(system.statistics.fenced == 1)
            // A refusal from current state still reaches the caller as itself.
            await #expect(throws: TestRefusal(reason: "only 5", limit: 5)) { try await counter.take(6) }
        }
    }

    @Test("the read behind a refusal does not hold the activation's writes: a write goes through while it waits")
    func refusalReadOutsideWrite() async throws {
        let store = GatedLoadStore()
        try await LocalCluster().run(nodes: 1, stateStore: store, register: registerTestActors) { systems in
            let counter = try systems[0].reference(Counter.self, key: "gated")
            #expect(try await counter.increment(by: 1) == 1)
            store.gate.close()
            let refused = Task { try await counter.take(2) }
            try await store.gate.waitForWaiter(timeout: .seconds(5))
            // The refusal waits for its read; a write of the same activation does not wait for the refusal.
            let written = try await withDeadline(.seconds(5)) { try await counter.increment(by: 1) }
            #expect(written == 2)
            store.gate.open()
            // Decided at version 1; the store is at 2, written by this activation through a compare-and-set on 1,
            // so nothing else wrote in between: the refusal was current and reaches the caller as itself.
            await #expect(throws: TestRefusal(reason: "only 1", limit: 1)) { _ = try await refused.value }
            #expect(systems[0].statistics.fenced == 0)
        }
    }

    @Test("idle activations are passivated and reactivate with their state")
    func idlePassivation() async throws {
        let cluster = LocalCluster(idleTimeout: .milliseconds(100))
        try await cluster.run(nodes: 1, register: registerTestActors) { systems in
            let system = systems[0]
            let id = ActorID.virtual(type: "Counter", key: "idle")
            _ = try await system.reference(Counter.self, key: "idle").increment(by: 4)
            #expect(system.activeActorIDs.contains(id))
            try await eventually("idle activation passivated") { !system.activeActorIDs.contains(id) }
            #expect(system.statistics.passivated >= 1)
            #expect(try await system.reference(Counter.self, key: "idle").count() == 4)
        }
    }

    @Test("on a manual clock: an idle activation stays until the clock passes its idle timeout, then goes at once — no real wait")
    func idlePassivationOnManualClock() async throws {
        let clock = ManualClock()
        var cluster = LocalCluster(idleTimeout: .seconds(3_600))
        cluster.clock = clock
        try await cluster.run(nodes: 1, register: registerTestActors) { systems in
            let system = systems[0]
            let id = ActorID.virtual(type: "Counter", key: "hour")
            _ = try await system.reference(Counter.self, key: "hour").increment(by: 2)
            /// Moves the clock once the sweep sleeps on it, and waits until it has swept and sleeps again.
            func advance(_ duration: Duration) async throws {
                try await eventually("the sweep sleeps on the clock") { clock.sleepers == 1 }
                clock.advance(by: duration)
                try await eventually("the sweep ran and sleeps again") { clock.sleepers == 1 }
            }
            try await advance(.seconds(3_590))
            #expect(system.activeActorIDs.contains(id), "59 min 50 s idle: still active")
            try await advance(.seconds(20))
            try await eventually("passivated once an hour passed") { !system.activeActorIDs.contains(id) }
            #expect(try await system.reference(Counter.self, key: "hour").count() == 2)
        }
    }

    @Test("after a membership change, an activation that only reads is dropped once another activation of its key wrote; the next read loads the newer state")
    func handoffRecheck() async throws {
        let clock = ManualClock()
        var cluster = LocalCluster()
        cluster.clock = clock
        let store = InMemoryActorStateStore()
        let membership = InMemoryMembership()
        try await cluster.run(nodes: 1, membership: membership, stateStore: store, register: registerTestActors) { systems in
            let system = systems[0]
            let id = ActorID.virtual(type: "Counter", key: "handoff")
            let counter = try system.reference(Counter.self, key: "handoff")
            #expect(try await counter.increment(by: 1) == 1)  // version 1, active here
            // The member list changes (a member that hosts no counters joins): views may differ for a while…
            try await membership.join(ClusterMember(node: NodeID(name: "other", host: "127.0.0.1", port: 1, incarnation: 7), actorTypes: ["None"]))
            try await eventually("the node saw the change") { system.members.count == 2 }
            // …during which another node's activation of the key writes (version 2).
            #expect(try await store.compareAndSet(type: "Counter", key: "handoff", expectedVersion: 1,
                                                  bytes: BinaryEncoder().encode(Counter.State(count: 5))))
            #expect(try await counter.count() == 1, "stale until the re-check")
            try await eventually("the sweep sleeps on the clock") { clock.sleepers >= 1 }
            clock.advance(by: system.configuration.handoffRecheck)
            try await eventually("dropped by the re-check") { !system.activeActorIDs.contains(id) }
            #expect(try await counter.count() == 5)
        }
    }

    @Test("a membership change re-checks many activations in shares, not in one burst of store reads")
    func handoffRecheckInShares() async throws {
        let clock = ManualClock()
        var cluster = LocalCluster()
        cluster.clock = clock
        let store = InMemoryActorStateStore()
        let membership = InMemoryMembership()
        let count = 2_100
        try await cluster.run(nodes: 1, membership: membership, stateStore: store, register: registerTestActors) { systems in
            let system = systems[0]
            for key in 0..<count { _ = try await system.reference(Counter.self, key: "share-\(key)").increment(by: 1) }
            try await membership.join(ClusterMember(node: NodeID(name: "other", host: "127.0.0.1", port: 1, incarnation: 7), actorTypes: ["None"]))
            try await eventually("the node saw the change") { system.members.count == 2 }
            // Another activation of every key writes: every one here is stale.
            for key in 0..<count {
                #expect(try await store.compareAndSet(type: "Counter", key: "share-\(key)", expectedVersion: 1,
                                                      bytes: BinaryEncoder().encode(Counter.State(count: 5))))
            }
            try await eventually("the sweep sleeps on the clock") { clock.sleepers >= 1 }
            clock.advance(by: system.configuration.handoffRecheck)
            // One sweep drops one share; each later sweep (one sweep interval on) the next.
            var expected = count
            while expected > 0 {
                expected -= min(expected, ClusterActorSystem.rechecksPerSweep)
                let left = expected
                try await eventually("\(left) left after this sweep") { system.activeActorIDs.count == left }
                try await eventually("the sweep sleeps again") { clock.sleepers >= 1 }
                #expect(system.activeActorIDs.count == expected, "a sweep re-checks at most its share")
                clock.advance(by: system.configuration.sweepInterval)
            }
            #expect(try await system.reference(Counter.self, key: "share-7").count() == 5)
        }
    }

    @Test("an activation held by a caller is not passivated while held")
    func heldActivation() async throws {
        let cluster = LocalCluster(idleTimeout: .milliseconds(50))
        try await cluster.run(nodes: 1, register: registerTestActors) { systems in
            let system = systems[0]
            let id = ActorID.virtual(type: "Counter", key: "held")
            let held = try await system.actor(Counter.self, key: "held")
            _ = try await held.increment(by: 1)
            try await Task.sleep(for: .milliseconds(300))
            #expect(system.activeActorIDs.contains(id))
            #expect(try await held.increment(by: 1) == 2)
        }
    }
}

/// An in-memory store whose loads wait while its gate is closed (writes never wait).
private final class GatedLoadStore: ActorStateStore {
    let gate = LoadGate()
    private let inner = InMemoryActorStateStore()

    func load(type: String, key: String) async throws -> VersionedState? {
        await gate.pass()
        return try await inner.load(type: type, key: key)
    }

    func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
        try await inner.compareAndSet(type: type, key: key, expectedVersion: expectedVersion, bytes: bytes)
    }

    func delete(type: String, key: String) async throws {
        try await inner.delete(type: type, key: key)
    }
}

/// Holds loads while closed; built on the runtime's `ChangeSignal` (every change of the gate notifies it).
private final class LoadGate: Sendable {
    private let state = Locked((closed: false, waiting: 0))
    private let changed = ChangeSignal()

    func close() { state.withLock { $0.closed = true } }

    func open() {
        state.withLock { $0.closed = false }
        changed.notify()
    }

    func pass() async {
        state.withLock { $0.waiting += 1 }
        changed.notify()
        while true {
            let version = changed.version
            guard state.withLock({ $0.closed }) else { break }
            await changed.wait(after: version, timeout: .seconds(10))
        }
        state.withLock { $0.waiting -= 1 }
    }

    /// Returns once a load is waiting at the closed gate.
    func waitForWaiter(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let version = changed.version
            if state.withLock({ $0.closed && $0.waiting > 0 }) { return }
            guard ContinuousClock.now < deadline else { throw DeadlineExceeded(description: "no load reached the gate within \(timeout)") }
            await changed.wait(after: version, timeout: deadline - ContinuousClock.now)
        }
    }
}
