import Synchronization
import TroupeCore

/// The persisted state of one virtual actor and its version.
public struct VersionedState: Sendable, Hashable {
    /// The encoded state.
    public var bytes: [UInt8]
    /// Starts at 1 with the first write and grows by one with every write.
    public var version: Int64

    public init(bytes: [UInt8], version: Int64) {
        self.bytes = bytes
        self.version = version
    }
}

/// Where virtual actors keep their state, with compare-and-set on a version (fencing).
///
/// Engines: ``InMemoryActorStateStore`` here; SQLite and MongoDB engines in TroupeStore.
public protocol ActorStateStore: Sendable {
    /// The state of `type`/`key`, or `nil` if it was never written.
    func load(type: String, key: String) async throws -> VersionedState?
    /// Writes `bytes` as version `expectedVersion + 1` if the stored version is `expectedVersion`
    /// (0: not stored yet). Returns `false`, writing nothing, when another writer got there first.
    func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool
    /// Removes the state of `type`/`key`.
    func delete(type: String, key: String) async throws
}

/// A store that can list what it holds of one actor type (reconcilers and audits; reads the whole set).
public protocol ScannableActorStateStore: ActorStateStore {
    /// The encoded state of every stored actor of `type`, by key.
    func states(ofType type: String) async throws -> [String: [UInt8]]
}

/// An in-process ``ActorStateStore`` (the embedded engine for tests and `troupe demo`).
public final class InMemoryActorStateStore: ScannableActorStateStore {
    private struct Key: Hashable {
        var type: String
        var key: String
    }

    private let entries = Guarded<[Key: VersionedState]>([:])

    public init() {}

    public func load(type: String, key: String) async throws -> VersionedState? {
        entries.withLock { $0[Key(type: type, key: key)] }
    }

    public func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
        entries.withLock { entries in
            let id = Key(type: type, key: key)
            guard (entries[id]?.version ?? 0) == expectedVersion else { return false }
            entries[id] = VersionedState(bytes: bytes, version: expectedVersion + 1)
            return true
        }
    }

    public func delete(type: String, key: String) async throws {
        _ = entries.withLock { $0.removeValue(forKey: Key(type: type, key: key)) }
    }

    public func states(ofType type: String) async throws -> [String: [UInt8]] {
        entries.withLock { entries in
            Dictionary(uniqueKeysWithValues: entries.filter { $0.key.type == type }.map { ($0.key.key, $0.value.bytes) })
        }
    }

    /// Every stored key of `type` (for invariant checks and tests).
    public func keys(ofType type: String) -> [String] {
        entries.withLock { $0.keys.filter { $0.type == type }.map(\.key) }
    }
}
