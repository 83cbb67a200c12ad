import Synchronization
import Testing
import TroupeActors
import TroupeTestSupport

/// An in-memory store whose writes take `delay` and can be made to fail; it counts writes.
final class SlowStateStore: ActorStateStore {
    let inner = InMemoryActorStateStore()
    let delay: Duration
    let writes = Atomic<Int>(0)
    let failNext = Atomic<Bool>(false)

    struct WriteFailed: Error {}

    init(delay: Duration) { self.delay = delay }

    func load(type: String, key: String) async throws -> VersionedState? { try await inner.load(type: type, key: key) }

    func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
        try await Task.sleep(for: delay)
        writes.add(1, ordering: .relaxed)
        if failNext.exchange(false, ordering: .relaxed) { throw WriteFailed() }
        return try await inner.compareAndSet(type: type, key: key, expectedVersion: expectedVersion, bytes: bytes)
    }

    func delete(type: String, key: String) async throws { try await inner.delete(type: type, key: key) }
}

@Suite("Group commit of a persistent actor's concurrent updates")
struct GroupCommitTests {
    func withNode<T: Sendable>(_ store: SlowStateStore, _ body: @Sendable (ClusterActorSystem) async throws -> T) async throws -> T {
        let system = try await ClusterActorSystem.start(LocalCluster().configuration(node: "node-1"), membership: InMemoryMembership(), stateStore: store)
        registerTestActors(system)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await system.run(); return nil }
            try await LocalCluster.waitForMembers([system], count: 1)
            let result = try await body(system)
            system.shutdown()
            try await group.waitForAll()
            return result
        }
    }

    @Test("100 concurrent increments: each caller sees its own step, the total is exact, and far fewer than 100 writes happen")
    func batchesConcurrentUpdates() async throws {
        let store = SlowStateStore(delay: .milliseconds(20))
        let (answers, total) = try await withNode(store) { system in
            let counter = try system.reference(Counter.self, key: "hot")
            let answers = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<100 { group.addTask { try await counter.increment(by: 1) } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            return (answers, try await counter.count())
        }
        #expect(answers.sorted() == Array(1...100), "every update returned the count its own change produced")
        #expect(total == 100)
        let writes = store.writes.load(ordering: .relaxed)
        #expect(writes < 20, "\(writes) writes for 100 updates")
        let stored = try await store.inner.load(type: "Counter", key: "hot")
        #expect(stored?.version == Int64(writes), "one version per write")
    }

    @Test("a failed write fails the updates in it and those queued behind it; nothing of theirs is kept; later updates work")
    func failedBatch() async throws {
        let store = SlowStateStore(delay: .milliseconds(300))
        try await withNode(store) { system in
            let counter = try system.reference(Counter.self, key: "k")
            #expect(try await counter.increment(by: 1) == 1)
            store.failNext.store(true, ordering: .relaxed)
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<10 {
                    group.addTask { (try? await counter.increment(by: 1)) != nil }
                    try await Task.sleep(for: .milliseconds(2))
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            // The first write (one or more updates) fails; the ones queued behind it were built on it and fail too.
            #expect(outcomes.allSatisfy { !$0 }, "\(outcomes)")
            #expect(try await counter.count() == 1, "nothing of the failed updates was kept")
            #expect(try await counter.increment(by: 5) == 6)
        }
    }
}
