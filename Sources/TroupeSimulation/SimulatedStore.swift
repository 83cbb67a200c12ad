import TroupeActors
import TroupeCore

/// The actor-state store of a simulation: compare-and-set on versions as the real engines, with latency,
/// stalls, failures before or after the write lands (the caller cannot tell which), and writes of a process
/// that dies mid-request landing or not. Each node incarnation gets its own handle (``handle(host:)``), so a
/// dead process stops reaching it.
///
/// Invariant (why `@unchecked Sendable`): touched only from the simulation thread.
final class SimulatedStore: @unchecked Sendable {
    struct Key: Hashable, Comparable {
        var type: String
        var key: String
        static func < (a: Key, b: Key) -> Bool { (a.type, a.key) < (b.type, b.key) }
    }

    let world: SimulationWorld
    private(set) var entries: [Key: VersionedState] = [:]
    /// Probability that one request fails, and that one is stalled 0.2–2 s (raised during a store fault).
    var failureRate = 0.0
    var stallRate = 0.0
    private(set) var writes = 0

    init(world: SimulationWorld) { self.world = world }

    func handle(host: String, alive: @escaping @Sendable () -> Bool) -> any ActorStateStore {
        Handle(store: self, host: host, alive: alive)
    }

    func states(ofType type: String) -> [(key: String, state: VersionedState)] {
        entries.filter { $0.key.type == type }.sorted { $0.key < $1.key }.map { ($0.key.key, $0.value) }
    }

    private func latency() -> Int64 {
        world.chance(stallRate) ? world.nanoseconds(between: .milliseconds(200), and: .seconds(2))
            : world.nanoseconds(between: .microseconds(200), and: .milliseconds(3))
    }

    /// One request: half the latency to reach the server, `apply` there, half to answer. Fails before or
    /// after applying at the failure rate; a request of a process that died meanwhile lands or not at random.
    private func request<T>(host: String, alive: () -> Bool, _ apply: () -> T) async throws -> T {
        let latency = latency()
        try? await world.clock.sleep(for: .nanoseconds(latency / 2))
        if !alive(), world.chance(0.5) { throw SimulationError("\(host) died before its request reached the store") }
        if world.chance(failureRate) { throw SimulationError("store unavailable") }
        let result = apply()
        try? await world.clock.sleep(for: .nanoseconds(latency - latency / 2))
        if !alive() { throw SimulationError("\(host) died before the store answered") }
        if world.chance(failureRate) { throw SimulationError("store request timed out (it was applied)") }
        return result
    }

    private struct Handle: ActorStateStore {
        let store: SimulatedStore
        let host: String
        let alive: @Sendable () -> Bool

        func load(type: String, key: String) async throws -> VersionedState? {
            try await store.request(host: host, alive: alive) { store.entries[Key(type: type, key: key)] }
        }

        func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
            try await store.request(host: host, alive: alive) {
                let id = Key(type: type, key: key)
                let stored = store.entries[id]?.version ?? 0
                if stored != expectedVersion {
                    guard store.world.mutation == .noFencing else { return false }
                    // Mutation: the write is accepted whatever it was based on.
                }
                store.entries[id] = VersionedState(bytes: bytes, version: stored + 1)
                store.writes += 1
                return true
            }
        }

        func delete(type: String, key: String) async throws {
            try await store.request(host: host, alive: alive) { store.entries[Key(type: type, key: key)] = nil }
        }
    }
}
