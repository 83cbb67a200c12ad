public import TroupeActors
public import TroupeEtcd

/// Actor state in etcd: one key per actor at `{prefix}{type}/{key}`, whose etcd `version` (1 after the
/// first write, +1 per write, 0 when absent) is the store version, so the compare-and-set of
/// `ActorStateStore` is a single transaction. Suits small state and modest write rates (every
/// write goes through raft); the MongoDB and SQLite engines are the general-purpose ones.
public struct EtcdActorStateStore: ActorStateStore {
    /// The etcd client the states are read and written through.
    public let etcd: EtcdClient
    /// The key prefix of the states (`<prefix><type>/<key>`).
    public let prefix: String

    /// States under `prefix` in etcd (compare-and-set on the key's version).
    public init(etcd: EtcdClient, prefix: String = "/troupe/state/") {
        self.etcd = etcd
        self.prefix = prefix
    }

    private func path(_ type: String, _ key: String) -> String { "\(prefix)\(type)/\(key)" }

    public func load(type: String, key: String) async throws -> VersionedState? {
        guard let kv = try await etcd.get(path(type, key)) else { return nil }
        return VersionedState(bytes: kv.value, version: kv.version)
    }

    public func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
        let path = path(type, key)
        return try await etcd.transaction(if: [EtcdCompare(key: path, .version(expectedVersion))], then: [.put(path, bytes)]).succeeded
    }

    public func delete(type: String, key: String) async throws {
        try await etcd.delete(path(type, key))
    }
}
