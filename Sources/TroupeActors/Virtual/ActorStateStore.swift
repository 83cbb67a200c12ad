import Synchronization
import TroupeCore

/// The persisted state of one virtual actor and its version.
public struct VersionedState: Sendable, Hashable {
    /// The encoded state.
    public var bytes: [UInt8]
    /// Starts at 1 with the first write and grows by one with every write.
    public var version: Int64
    /// The form `bytes` are in, for the store's ``ActorStateStore/codec`` (a store that changed its form keeps
    /// reading the older one).
    public var encoding: StateEncoding

    /// A stored state of `version`, in the form `encoding` names.
    public init(bytes: [UInt8], version: Int64, encoding: StateEncoding = .binary) {
        self.bytes = bytes
        self.version = version
        self.encoding = encoding
    }
}

/// The name of a form of encoded actor state (extensible: a store names its own).
public struct StateEncoding: Sendable, Hashable, CustomStringConvertible {
    /// The form's name.
    public var name: String

    /// A form named `name`.
    public init(_ name: String) { self.name = name }

    /// Troupe's compact binary form (`BinaryEncoder`).
    public static let binary = StateEncoding("binary")

    public var description: String { name }
}

/// Encodes the states of virtual actors for a store and decodes what it loads.
public protocol ActorStateCodec: Sendable {
    /// The bytes a write of `value` stores (in the store's current form).
    func encode<T: Encodable>(_ value: T) throws -> [UInt8]
    /// Decodes a loaded state, in whichever form ``VersionedState/encoding`` names.
    func decode<T: Decodable>(_ type: T.Type, from state: VersionedState) throws -> T
}

/// Troupe's compact binary form: the default codec of a store.
public struct BinaryStateCodec: ActorStateCodec {
    /// The codec (stateless).
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] { try BinaryEncoder().encode(value) }

    public func decode<T: Decodable>(_ type: T.Type, from state: VersionedState) throws -> T {
        guard state.encoding == .binary else {
            throw ActorSystemError(.serialization, "a state stored as \(state.encoding) cannot be read by the binary codec")
        }
        return try BinaryDecoder().decode(type, from: state.bytes)
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
    /// How states are encoded for this store and decoded from it (default: ``BinaryStateCodec``).
    var codec: any ActorStateCodec { get }
}

extension ActorStateStore {
    public var codec: any ActorStateCodec { BinaryStateCodec() }
}

/// A store that can list what it holds of one actor type (reconcilers and audits; reads the whole set).
public protocol ScannableActorStateStore: ActorStateStore {
    /// The stored state of every actor of `type`, by key.
    func states(ofType type: String) async throws -> [String: VersionedState]
}

extension ScannableActorStateStore {
    /// Every stored actor of `type` decoded as `State`, by key.
    /// - Throws: the first state that cannot be decoded (``ActorSystemError/Code/serialization``), or the store's error.
    public func states<State: Decodable>(ofType type: String, as state: State.Type) async throws -> [String: State] {
        var out: [String: State] = [:]
        for (key, stored) in try await states(ofType: type) {
            do {
                out[key] = try codec.decode(State.self, from: stored)
            } catch {
                throw ActorSystemError(.serialization, "the stored state of \(type)/\(key) cannot be decoded as \(State.self)", underlying: error)
            }
        }
        return out
    }
}

/// An in-process ``ActorStateStore`` (the embedded engine for tests and `troupe demo`).
public final class InMemoryActorStateStore: ScannableActorStateStore {
    private struct Key: Hashable {
        var type: String
        var key: String
    }

    private let entries = Guarded<[Key: VersionedState]>([:])

    /// An empty store.
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

    public func states(ofType type: String) async throws -> [String: VersionedState] {
        entries.withLock { entries in
            Dictionary(uniqueKeysWithValues: entries.filter { $0.key.type == type }.map { ($0.key.key, $0.value) })
        }
    }

    /// Every stored key of `type` (for invariant checks and tests).
    public func keys(ofType type: String) -> [String] {
        entries.withLock { $0.keys.filter { $0.type == type }.map(\.key) }
    }
}
