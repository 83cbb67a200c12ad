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
    public enum Claim: Sendable, Hashable {
        /// The caller owns the key and must run the request, then ``IdempotencyStore/complete(_:result:ttl:)``.
        case claimed
        /// Another caller claimed the key and has not finished.
        case inProgress
        /// The request ran already; here is its result.
        case completed([UInt8])
    }

    public let store: any KeyValueStore
    public let prefix: String

    public init(store: any KeyValueStore, prefix: String = "idem:") {
        self.store = store
        self.prefix = prefix
    }

    private static let pending: [UInt8] = [0]

    /// Claims `key` for `ttl` (the in-progress marker expires, so a crashed claimant does not block forever).
    public func claim(_ key: String, ttl: Duration) async throws -> Claim {
        if try await store.setIfAbsent(prefix + key, Self.pending, ttl: ttl) { return .claimed }
        guard let stored = try await store.get(prefix + key) else {
            // Expired between the two calls: try once more.
            return try await store.setIfAbsent(prefix + key, Self.pending, ttl: ttl) ? .claimed : .inProgress
        }
        guard stored.first == 1 else { return .inProgress }
        return .completed(Array(stored.dropFirst()))
    }

    /// Stores the result of a claimed request for `ttl`.
    public func complete(_ key: String, result: [UInt8], ttl: Duration) async throws {
        try await store.set(prefix + key, [1] + result, ttl: ttl)
    }

    /// Releases a claim whose request failed, so that a retry can run it.
    public func release(_ key: String) async throws {
        _ = try await store.delete(prefix + key, ifValueIs: Self.pending)
    }
}

/// Server-side sessions with sliding expiry: every read extends the session by its TTL.
public struct SessionStore<Session: Codable & Sendable>: Sendable {
    public let store: any KeyValueStore
    public let ttl: Duration
    public let prefix: String

    public init(store: any KeyValueStore, ttl: Duration = .seconds(1800), prefix: String = "session:") {
        self.store = store
        self.ttl = ttl
        self.prefix = prefix
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
        guard let bytes = try await store.getAndTouch(prefix + id, ttl: ttl) else { return nil }
        do {
            return try BinaryDecoder().decode(Session.self, from: bytes)
        } catch {
            throw CacheError(.corrupt, "session \(id.prefix(6))… cannot be decoded", underlying: error)
        }
    }

    /// Replaces the session's data (and extends it).
    public func update(_ id: String, _ session: Session) async throws {
        try await store.set(prefix + id, try BinaryEncoder().encode(session), ttl: ttl)
    }

    /// Revokes the session (logout).
    public func revoke(_ id: String) async throws {
        try await store.delete(prefix + id)
    }
}
