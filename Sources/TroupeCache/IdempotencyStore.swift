import Metrics
import Synchronization
import TroupeCore

/// Remembers the outcome of requests by idempotency key, so a replay returns the first result.
///
/// ```swift
/// switch try await store.claim(key, ttl: .seconds(86_400)) {
/// case .claimed:            let result = try await handle(); try await store.complete(key, result: result, ttl: .seconds(86_400))
/// case .inProgress:         // 409: a duplicate is running right now
/// case .completed(let r):   // return r again
/// }
/// ```
public struct IdempotencyStore: Sendable {
    /// The outcome of claiming an idempotency key: the claim is yours, another request holds it, or its response is stored.
    public enum Claim: Sendable, Hashable {
        /// The caller owns the key and must run the request, then ``IdempotencyStore/complete(_:result:fingerprint:ttl:)``.
        case claimed
        /// Another caller claimed the key and has not finished.
        case inProgress
        /// The request ran already; here is its result.
        case completed([UInt8])
        /// The key was used before for a different request (another fingerprint): the IETF Idempotency-Key
        /// draft answers such a reuse with 422, never with the first request's result.
        case mismatch
    }

    /// The store claims and results live in.
    public let store: any KeyValueStore
    /// Prepended to every key.
    public let prefix: String

    /// Claims and results in `store`, keyed `prefix` + key.
    public init(store: any KeyValueStore, prefix: String = "idem:") {
        self.store = store
        self.prefix = prefix
    }

    // Stored values: a tag byte, the request's fingerprint (length-prefixed), then the result when completed.
    private static let pendingTag: UInt8 = 2
    private static let completedTag: UInt8 = 3

    private static func marker(_ tag: UInt8, _ fingerprint: [UInt8]) -> [UInt8] {
        [tag, UInt8(min(fingerprint.count, 255))] + fingerprint.prefix(255)
    }

    /// Claims `key` for `ttl` (the in-progress marker expires, so a crashed claimant does not block forever).
    /// `fingerprint` identifies the request (a digest of its method, path and body): a later claim of the same
    /// key with another fingerprint is a ``Claim/mismatch``.
    public func claim(_ key: String, fingerprint: [UInt8] = [], ttl: Duration) async throws -> Claim {
        let pending = Self.marker(Self.pendingTag, fingerprint)
        if try await store.setIfAbsent(prefix + key, pending, ttl: ttl) { return .claimed }
        guard let stored = try await store.get(prefix + key) else {
            // Expired between the two calls: try once more.
            return try await store.setIfAbsent(prefix + key, pending, ttl: ttl) ? .claimed : .inProgress
        }
        guard stored.count >= 2, stored[0] == Self.pendingTag || stored[0] == Self.completedTag, stored.count >= 2 + Int(stored[1]) else {
            throw CacheError(.corrupt, "idempotency record of \(key.prefix(16))… is not in a known format")
        }
        let recorded = Array(stored[2..<(2 + Int(stored[1]))])
        guard recorded == Array(fingerprint.prefix(255)) else { return .mismatch }
        guard stored[0] == Self.completedTag else { return .inProgress }
        return .completed(Array(stored[(2 + Int(stored[1]))...]))
    }

    /// Stores the result of a claimed request for `ttl`.
    public func complete(_ key: String, result: [UInt8], fingerprint: [UInt8] = [], ttl: Duration) async throws {
        try await store.set(prefix + key, Self.marker(Self.completedTag, fingerprint) + result, ttl: ttl)
    }

    /// Releases a claim whose request is known to have had no effect, so that a retry can run it.
    public func release(_ key: String, fingerprint: [UInt8] = []) async throws {
        _ = try await store.delete(prefix + key, ifValueIs: Self.marker(Self.pendingTag, fingerprint))
    }
}

/// Server-side sessions with sliding expiry: every read extends the session by its TTL.
///
/// With `staleIfError`, a read that fails because the store is unreachable (a `TransientError`: Redis
/// restarting, a connection reset) answers the copy this process last read or wrote, if that is younger
/// than `staleIfError` — HTTP's stale-if-error (RFC 5861) for sessions, so a short Redis outage does not log
/// every user out. The trade-off: a session revoked through *another* process shortly before the outage
/// stays usable here for at most `staleIfError` while the store cannot be asked. Revocations and reads
/// that find no session drop the copy at once, and nothing is served stale while the store answers.
public struct SessionStore<Session: Codable & Sendable>: Sendable {
    /// The store sessions live in.
    public let store: any KeyValueStore
    /// How long a session lives without a read (each read extends it by this much).
    public let ttl: Duration
    /// Prepended to every session id.
    public let prefix: String
    /// How old a local copy may be and still be served while the store is unreachable (zero: never).
    public let staleIfError: Duration
    let copies: StaleCopies?

    /// Sessions in `store`, keyed `prefix` + id, living `ttl` after their last read.
    public init(store: any KeyValueStore, ttl: Duration = .seconds(1800), prefix: String = "session:", staleIfError: Duration = .zero,
                maxStaleCopies: Int = 10_000) {
        self.store = store
        self.ttl = ttl
        self.prefix = prefix
        self.staleIfError = staleIfError
        self.copies = staleIfError > .zero ? StaleCopies(capacity: max(1, maxStaleCopies)) : nil
    }

    /// Creates a session and returns its id (128 random bits, hex).
    public func create(_ session: Session) async throws -> String {
        var generator = SystemRandomNumberGenerator()
        let id = (0..<2).map { _ in String(generator.next(), radix: 16) }.map { String(repeating: "0", count: 16 - $0.count) + $0 }.joined()
        try await store.set(prefix + id, try BinaryEncoder().encode(session), ttl: ttl)
        return id
    }

    /// The session, extending its expiry; `nil` when it expired or was revoked.
    public func get(_ id: String) async throws -> Session? {
        let bytes: [UInt8]
        do {
            guard let stored = try await store.getAndTouch(prefix + id, ttl: ttl) else {
                copies?.forget(id)
                return nil
            }
            bytes = stored
            copies?.remember(id, stored)
        } catch let error as any TransientError {
            guard let copy = copies?.recall(id, within: staleIfError) else { throw error }
            bytes = copy
        }
        do {
            return try BinaryDecoder().decode(Session.self, from: bytes)
        } catch {
            throw CacheError(.corrupt, "session \(id.prefix(6))… cannot be decoded", underlying: error)
        }
    }

    /// Changes the session with `change` and writes it back only if nobody changed or revoked it meanwhile
    /// (compare-and-set on its stored bytes; a concurrent change is re-read and `change` runs again, at most
    /// `attempts` times). A revoked or expired session is never recreated: returns `nil` then.
    public func modify<R>(_ id: String, attempts: Int = 8, _ change: (inout Session) throws -> R) async throws -> R? {
        for _ in 0..<max(1, attempts) {
            guard let stored = try await store.getAndTouch(prefix + id, ttl: ttl) else { return nil }
            var session: Session
            do {
                session = try BinaryDecoder().decode(Session.self, from: stored)
            } catch {
                throw CacheError(.corrupt, "session \(id.prefix(6))… cannot be decoded", underlying: error)
            }
            let result = try change(&session)
            let changed = try BinaryEncoder().encode(session)
            if try await store.set(prefix + id, changed, ttl: ttl, ifValueIs: stored) {
                copies?.remember(id, changed)
                return result
            }
        }
        throw CacheError(.conflict, "session \(id.prefix(6))… kept changing; try again")
    }

    /// Revokes the session (logout).
    public func revoke(_ id: String) async throws {
        copies?.forget(id)
        try await store.delete(prefix + id)
    }
}

/// The last stored bytes of recently used sessions, by id, with when they were last confirmed by the store.
/// Bounded: when full, copies older than the longest window asked for go first, then the oldest.
final class StaleCopies: Sendable {
    private struct Copy { var bytes: [UInt8]; var confirmed: ContinuousClock.Instant }
    private let copies = Guarded<[String: Copy]>([:])
    private let capacity: Int
    private let served = Counter(label: MetricFamilies.sessionsServedStale.name)

    init(capacity: Int) { self.capacity = capacity }

    func remember(_ id: String, _ bytes: [UInt8]) {
        let now = ContinuousClock.now
        copies.withLock { copies in
            if copies.count >= capacity, copies[id] == nil {
                // Drop the oldest eighth at once, so that a full table costs one scan per many insertions.
                let oldest = copies.sorted { $0.value.confirmed < $1.value.confirmed }.prefix(max(1, capacity / 8))
                for (key, _) in oldest { copies[key] = nil }
            }
            copies[id] = Copy(bytes: bytes, confirmed: now)
        }
    }

    func forget(_ id: String) { _ = copies.withLock { $0.removeValue(forKey: id) } }

    func recall(_ id: String, within window: Duration) -> [UInt8]? {
        let now = ContinuousClock.now
        let bytes = copies.withLock { copies -> [UInt8]? in
            guard let copy = copies[id] else { return nil }
            guard now - copy.confirmed <= window else {
                copies[id] = nil
                return nil
            }
            return copy.bytes
        }
        if bytes != nil { served.increment() }
        return bytes
    }
}
