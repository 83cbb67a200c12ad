import NIOCore
import Synchronization
import TroupeRESP
public import TroupeRedis
import TroupeCore

/// The byte store under ``Cache``, ``IdempotencyStore`` and ``SessionStore``: Redis in production,
/// process memory when embedded.
public protocol KeyValueStore: Sendable {
    /// The value of `key`, or nil when absent or expired.
    func get(_ key: String) async throws -> [UInt8]?
    /// Stores `value`; `ttl` `nil` keeps it until deleted.
    func set(_ key: String, _ value: [UInt8], ttl: Duration?) async throws
    /// Stores `value` only if `key` is absent; returns whether it did.
    func setIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration?) async throws -> Bool
    /// Reads `key` and, if present, resets its time to live (sliding expiry).
    func getAndTouch(_ key: String, ttl: Duration) async throws -> [UInt8]?
    /// Deletes `key` (absent: nothing to do).
    func delete(_ key: String) async throws
    /// Deletes `key` only if it holds `expected`; returns whether it did (atomic compare-and-delete).
    func delete(_ key: String, ifValueIs expected: [UInt8]) async throws -> Bool
    /// Replaces `key`'s value with `value` only if it holds `expected` (atomic compare-and-set; an absent
    /// or expired key is never recreated); returns whether it did.
    func set(_ key: String, _ value: [UInt8], ttl: Duration?, ifValueIs expected: [UInt8]) async throws -> Bool
}

/// A ``KeyValueStore`` in process memory with per-key expiry.
public final class InMemoryKeyValueStore: KeyValueStore {
    private struct Entry {
        var value: [UInt8]
        var expiresAt: ContinuousClock.Instant?
    }

    private let entries = Guarded<[String: Entry]>([:])

    /// An empty store.
    public init() {}

    private func live(_ entries: inout [String: Entry], _ key: String, now: ContinuousClock.Instant) -> Entry? {
        guard let entry = entries[key] else { return nil }
        if let expiresAt = entry.expiresAt, expiresAt <= now {
            entries[key] = nil
            return nil
        }
        return entry
    }

    public func get(_ key: String) async throws -> [UInt8]? {
        let now = ContinuousClock.now
        return entries.withLock { live(&$0, key, now: now)?.value }
    }

    public func set(_ key: String, _ value: [UInt8], ttl: Duration?) async throws {
        let now = ContinuousClock.now
        entries.withLock { $0[key] = Entry(value: value, expiresAt: ttl.map { now + $0 }) }
    }

    public func setIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration?) async throws -> Bool {
        let now = ContinuousClock.now
        return entries.withLock { entries in
            guard live(&entries, key, now: now) == nil else { return false }
            entries[key] = Entry(value: value, expiresAt: ttl.map { now + $0 })
            return true
        }
    }

    public func getAndTouch(_ key: String, ttl: Duration) async throws -> [UInt8]? {
        let now = ContinuousClock.now
        return entries.withLock { entries in
            guard var entry = live(&entries, key, now: now) else { return nil }
            entry.expiresAt = now + ttl
            entries[key] = entry
            return entry.value
        }
    }

    public func delete(_ key: String) async throws {
        _ = entries.withLock { $0.removeValue(forKey: key) }
    }

    public func delete(_ key: String, ifValueIs expected: [UInt8]) async throws -> Bool {
        let now = ContinuousClock.now
        return entries.withLock { entries in
            guard live(&entries, key, now: now)?.value == expected else { return false }
            entries[key] = nil
            return true
        }
    }

    public func set(_ key: String, _ value: [UInt8], ttl: Duration?, ifValueIs expected: [UInt8]) async throws -> Bool {
        let now = ContinuousClock.now
        return entries.withLock { entries in
            guard live(&entries, key, now: now)?.value == expected else { return false }
            entries[key] = Entry(value: value, expiresAt: ttl.map { now + $0 })
            return true
        }
    }

    /// The remaining time to live of `key` (tests).
    public func timeToLive(_ key: String) -> Duration? {
        let now = ContinuousClock.now
        return entries.withLock { entries in live(&entries, key, now: now)?.expiresAt.map { $0 - now } }
    }
}

/// A ``KeyValueStore`` on Redis (a client, a cluster client or one connection); keys get `prefix`.
public struct RedisKeyValueStore: KeyValueStore {
    /// The Redis the values live in.
    public let redis: any RedisCommandSender
    /// Prepended to every key.
    public let prefix: String

    /// A store on `redis`, keyed `prefix` + key.
    public init(redis: any RedisCommandSender, prefix: String = "") {
        self.redis = redis
        self.prefix = prefix
    }

    public func get(_ key: String) async throws -> [UInt8]? {
        try await redis.get(prefix + key).map { Array(buffer: $0) }
    }

    public func set(_ key: String, _ value: [UInt8], ttl: Duration?) async throws {
        try await redis.set(prefix + key, to: value, options: RedisSetOptions(expiry: ttl))
    }

    public func setIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration?) async throws -> Bool {
        try await redis.set(prefix + key, to: value, options: RedisSetOptions(expiry: ttl, condition: .ifNotExists))
    }

    public func getAndTouch(_ key: String, ttl: Duration) async throws -> [UInt8]? {
        try await redis.send(["GETEX", prefix + key, "PX", Self.milliseconds(ttl)], timeout: nil).bytes
    }

    /// A TTL in whole milliseconds, at least 1 (Redis's PX).
    static func milliseconds(_ ttl: Duration) -> Int64 {
        max(1, ttl.components.seconds * 1000 + ttl.components.attoseconds / 1_000_000_000_000_000)
    }

    public func delete(_ key: String) async throws {
        try await redis.delete([prefix + key])
    }

    static let compareAndDelete = RedisScript("""
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """)

    public func delete(_ key: String, ifValueIs expected: [UInt8]) async throws -> Bool {
        try await redis.evaluate(Self.compareAndDelete, keys: [prefix + key], arguments: [expected]).int == 1
    }

    /// ARGV: expected, new value, TTL in milliseconds (0: none).
    static let compareAndSet = RedisScript("""
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) else redis.call('SET', KEYS[1], ARGV[2]) end
        return 1
        """)

    public func set(_ key: String, _ value: [UInt8], ttl: Duration?, ifValueIs expected: [UInt8]) async throws -> Bool {
        let milliseconds = ttl.map(Self.milliseconds) ?? 0
        return try await redis.evaluate(Self.compareAndSet, keys: [prefix + key],
                                        arguments: [expected, value, Array(String(milliseconds).utf8)]).int == 1
    }
}
