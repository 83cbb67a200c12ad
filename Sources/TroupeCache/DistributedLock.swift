import Foundation
import Synchronization
import TroupeCore
import TroupeRESP
public import TroupeRedis

/// A held lock: the random token proves ownership; the fencing token grows with every acquisition
/// of the same lock, so a resource can refuse writes from a holder whose lease already ended.
public struct LockLease: Sendable, Hashable {
    /// The lock's name.
    public var name: String
    /// The random token that proves this holder owns the lock (release and extend check it).
    public var token: String
    /// A number that grows with every acquisition of the lock: hand it to the resource you change, which refuses
    /// a lower one than it has seen.
    public var fencingToken: Int64
}

/// A lease-based mutual-exclusion lock.
public protocol DistributedLock: Sendable {
    /// Tries once; `nil` when someone else holds the lock.
    func tryAcquire(_ name: String, ttl: Duration) async throws -> LockLease?
    /// Releases the lease if it still holds the lock; returns whether it did.
    func release(_ lease: LockLease) async throws -> Bool
    /// Extends the lease to `ttl` from now if it still holds the lock.
    func extend(_ lease: LockLease, ttl: Duration) async throws -> Bool
}

extension DistributedLock {
    /// Acquires the lock, retrying with jittered backoff until `timeout`.
    /// - Throws: ``CacheError/Code/lockTimeout`` when it was not acquired in time.
    public func acquire(_ name: String, ttl: Duration, timeout: Duration) async throws -> LockLease {
        let deadline = ContinuousClock.now + timeout
        var backoff = Backoff(initial: .milliseconds(2), maximum: .milliseconds(50))
        while true {
            if let lease = try await tryAcquire(name, ttl: ttl) { return lease }
            let now = ContinuousClock.now
            guard now < deadline else { throw CacheError(.lockTimeout, "lock \(name) not acquired within \(timeout)") }
            try await Task.sleep(for: min(backoff.next(), deadline - now))
        }
    }

    /// Runs `body` while holding the lock, then releases it.
    public func withLock<T: Sendable>(
        _ name: String, ttl: Duration, timeout: Duration, _ body: (LockLease) async throws -> T
    ) async throws -> T {
        let lease = try await acquire(name, ttl: ttl, timeout: timeout)
        do {
            let result = try await body(lease)
            _ = try await release(lease)
            return result
        } catch {
            _ = try? await release(lease)
            throw error
        }
    }
}

/// A ``DistributedLock`` in process memory.
public final class InMemoryLock: DistributedLock {
    private struct Held {
        var token: String
        var expiresAt: ContinuousClock.Instant
    }

    private let state = Guarded<(held: [String: Held], fences: [String: Int64])>(([:], [:]))

    /// An in-process lock table.
    public init() {}

    public func tryAcquire(_ name: String, ttl: Duration) async throws -> LockLease? {
        let now = ContinuousClock.now
        let token = UUID().uuidString
        return state.withLock { state in
            if let held = state.held[name], held.expiresAt > now { return nil }
            state.held[name] = Held(token: token, expiresAt: now + ttl)
            let fence = (state.fences[name] ?? 0) + 1
            state.fences[name] = fence
            return LockLease(name: name, token: token, fencingToken: fence)
        }
    }

    public func release(_ lease: LockLease) async throws -> Bool {
        let now = ContinuousClock.now
        return state.withLock { state in
            guard let held = state.held[lease.name], held.token == lease.token, held.expiresAt > now else { return false }
            state.held[lease.name] = nil
            return true
        }
    }

    public func extend(_ lease: LockLease, ttl: Duration) async throws -> Bool {
        let now = ContinuousClock.now
        return state.withLock { state in
            guard let held = state.held[lease.name], held.token == lease.token, held.expiresAt > now else { return false }
            state.held[lease.name] = Held(token: held.token, expiresAt: now + ttl)
            return true
        }
    }
}

/// A ``DistributedLock`` on Redis: `SET NX PX` with a random token, release and extend by Lua
/// compare-and-delete / compare-and-expire, and a fencing token from `INCR`. The lock key and its
/// fence share a hash tag, so both live in one slot on Redis Cluster.
public struct RedisLock: DistributedLock {
    /// The Redis the locks live in.
    public let redis: any RedisCommandSender
    /// Prepended to every lock's key.
    public let prefix: String

    /// Locks on `redis`, keyed `prefix` + name.
    public init(redis: any RedisCommandSender, prefix: String = "lock:") {
        self.redis = redis
        self.prefix = prefix
    }

    static let acquireScript = RedisScript("""
        if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
          return redis.call('INCR', KEYS[2])
        end
        return 0
        """)
    static let releaseScript = RedisScript("""
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """)
    static let extendScript = RedisScript("""
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        """)

    private func keys(_ name: String) -> [String] {
        ["\(prefix){\(name)}", "\(prefix){\(name)}:fence"]
    }

    private static func millis(_ duration: Duration) -> Int64 {
        max(1, duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }

    public func tryAcquire(_ name: String, ttl: Duration) async throws -> LockLease? {
        let token = UUID().uuidString
        let fence = try await redis.evaluate(Self.acquireScript, keys: keys(name), arguments: [token, Self.millis(ttl)]).int ?? 0
        return fence > 0 ? LockLease(name: name, token: token, fencingToken: fence) : nil
    }

    public func release(_ lease: LockLease) async throws -> Bool {
        try await redis.evaluate(Self.releaseScript, keys: [keys(lease.name)[0]], arguments: [lease.token]).int == 1
    }

    public func extend(_ lease: LockLease, ttl: Duration) async throws -> Bool {
        try await redis.evaluate(Self.extendScript, keys: [keys(lease.name)[0]], arguments: [lease.token, Self.millis(ttl)]).int == 1
    }
}
