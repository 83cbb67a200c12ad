import Foundation
import Logging
public import ServiceLifecycle
import Synchronization
import TroupeCore
public import TroupeEtcd

/// Dynamic configuration: a snapshot readable without a round trip, typed reads, and a stream of
/// changes for hot reload.
public protocol ConfigSource: Sendable {
    /// Every key (relative to the source's prefix) and its value.
    func snapshot() -> [String: String]
    /// Full snapshots, starting with the current one, after every change.
    func updates() -> AsyncStream<[String: String]>
}

extension ConfigSource {
    /// The text of `key`, if set.
    public func string(_ key: String) -> String? { snapshot()[key] }
    /// The value of `key` as an integer (surrounding spaces ignored); nil when unset or not an integer.
    public func int(_ key: String) -> Int? { string(key).flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    /// The value of `key` as a number; nil when unset or not a number.
    public func double(_ key: String) -> Double? { string(key).flatMap { Double($0.trimmingCharacters(in: .whitespaces)) } }
    /// The value of `key` as a boolean (`true/false/1/0/yes/no/on/off`, any case); nil otherwise.
    public func bool(_ key: String) -> Bool? {
        switch string(key)?.lowercased().trimmingCharacters(in: .whitespaces) {
        case "true", "1", "yes", "on": true
        case "false", "0", "no", "off": false
        default: nil
        }
    }
    /// A value of `T` decoded from JSON.
    public func json<T: Decodable>(_ key: String, as type: T.Type) throws -> T? {
        guard let text = string(key) else { return nil }
        return try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }
}

/// A ``ConfigSource`` in memory (tests, `troupe demo`).
public final class InMemoryConfigSource: ConfigSource {
    private let values: Broadcaster<[String: String]>

    /// A source holding `values`.
    public init(_ values: [String: String] = [:]) {
        self.values = Broadcaster(values)
    }

    /// Sets `key` to `value` (nil removes it) and notifies the subscribers.
    public func set(_ key: String, _ value: String?) {
        values.update { $0[key] = value }
    }

    public func snapshot() -> [String: String] { values.value }
    public func updates() -> AsyncStream<[String: String]> { values.subscribe() }
}

/// A ``ConfigSource`` over etcd keys under `/config/{app}/{env}/`, kept current by a watch.
/// Run it as a `Service`; `ready()` returns once the first snapshot is loaded.
public final class EtcdConfigSource: ConfigSource, Service {
    /// The etcd it reads.
    public let etcd: EtcdClient
    /// The key prefix read (`/config/{app}/{env}/`).
    public let prefix: String
    private let publisher = Broadcaster<[String: String]>([:])
    private let loaded = Guarded(false)

    /// A source over `/config/{app}/{env}/`.
    /// - Throws: `EtcdError` with kind `invalidConfiguration` when `app` or `environment` is empty or holds a `/`.
    public init(etcd: EtcdClient, app: String, environment: String) throws {
        guard !app.isEmpty, !environment.isEmpty, !app.contains("/"), !environment.contains("/") else {
            throw EtcdError(.invalidConfiguration, "app and environment must be non-empty and contain no '/'")
        }
        self.etcd = etcd
        self.prefix = "/config/\(app)/\(environment)/"
    }

    public func snapshot() -> [String: String] { publisher.value }
    public func updates() -> AsyncStream<[String: String]> { publisher.subscribe() }

    /// Whether the first snapshot has been loaded.
    public var isLoaded: Bool { loaded.withLock { $0 } }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            let initial = try await self.etcd.range(self.prefix, prefix: true)
            var values = Dictionary(initial.kvs.map { (self.relative($0.key), $0.stringValue) }, uniquingKeysWith: { $1 })
            self.publisher.set(values)
            self.loaded.withLock { $0 = true }
            let current = Locked(values)
            values = [:]
            try await self.etcd.watch(self.prefix, prefix: true, fromRevision: initial.revision + 1) { update in
                let next = current.withLock { values -> [String: String] in
                    switch update {
                    case .events(let events, _):
                        for event in events {
                            switch event {
                            case .put(let kv): values[self.relative(kv.key)] = kv.stringValue
                            case .delete(let key, _): values[self.relative(key)] = nil
                            }
                        }
                    case .resynced(let snapshot, _, _):
                        values = Dictionary(snapshot.map { (self.relative($0.key), $0.stringValue) }, uniquingKeysWith: { $1 })
                    }
                    return values
                }
                self.publisher.set(next)
            }
        }
    }

    private func relative(_ key: String) -> String {
        key.hasPrefix(prefix) ? String(key.dropFirst(prefix.count)) : key
    }
}
