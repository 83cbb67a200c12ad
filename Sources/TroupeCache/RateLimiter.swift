import Foundation
public import Logging
import Synchronization
import TroupeRESP
public import TroupeRedis
import TroupeCore

/// The answer of a ``RateLimiter``.
public struct RateLimitDecision: Sendable, Hashable {
    /// Whether the request may go ahead.
    public var allowed: Bool
    /// When denied: how long until a request could be admitted.
    public var retryAfter: Duration
    /// Permits left right after this decision (token bucket: tokens; sliding window: free slots).
    public var remaining: Int
}

/// The limit a ``RateLimiter`` enforces.
public enum RateLimit: Sendable, Hashable {
    /// A bucket refilled at `ratePerSecond`, holding at most `burst` tokens; each request takes one.
    case tokenBucket(ratePerSecond: Double, burst: Int)
    /// At most `limit` requests in any `window` (a log of request times per key).
    case slidingWindow(limit: Int, window: Duration)

    func validate() throws {
        switch self {
        case .tokenBucket(let rate, let burst):
            guard rate > 0, burst >= 1 else { throw CacheError(.invalidConfiguration, "a token bucket needs ratePerSecond > 0 and burst ≥ 1") }
        case .slidingWindow(let limit, let window):
            guard limit >= 1, window > .zero else { throw CacheError(.invalidConfiguration, "a sliding window needs limit ≥ 1 and a positive window") }
        }
    }
}

/// Admits or denies requests per key.
public protocol RateLimiter: Sendable {
    /// Decides one request of `key` (a user, an address, `global`): admitted or denied, and when to retry.
    func acquire(_ key: String) async throws -> RateLimitDecision
}

// MARK: - Local engine

/// A ``RateLimiter`` in process memory (the embedded engine, and the fallback of ``RedisRateLimiter``).
public final class LocalRateLimiter: RateLimiter {
    /// The limit enforced per key.
    public let limit: RateLimit
    private let state = Guarded<[String: Bucket]>([:])

    private enum Bucket {
        case tokens(Double, at: ContinuousClock.Instant)
        case log([ContinuousClock.Instant])
    }

    /// A limiter enforcing `limit` per key in this process.
    /// - Throws: ``CacheError/Code/invalidConfiguration`` for a limit that cannot work (a zero rate, burst or window).
    public init(_ limit: RateLimit) throws {
        try limit.validate()
        self.limit = limit
    }

    public func acquire(_ key: String) async throws -> RateLimitDecision {
        let now = ContinuousClock.now
        return state.withLock { state in
            switch limit {
            case .tokenBucket(let rate, let burst):
                var tokens = Double(burst)
                if case .tokens(let stored, let at)? = state[key] {
                    tokens = min(Double(burst), stored + (now - at).seconds * rate)
                }
                if tokens >= 1 {
                    state[key] = .tokens(tokens - 1, at: now)
                    return RateLimitDecision(allowed: true, retryAfter: .zero, remaining: Int(tokens - 1))
                }
                state[key] = .tokens(tokens, at: now)
                return RateLimitDecision(allowed: false, retryAfter: .seconds((1 - tokens) / rate), remaining: 0)
            case .slidingWindow(let limit, let window):
                var log: [ContinuousClock.Instant] = []
                if case .log(let stored)? = state[key] { log = stored.filter { now - $0 < window } }
                guard log.count < limit else {
                    state[key] = .log(log)
                    return RateLimitDecision(allowed: false, retryAfter: window - (now - log[0]), remaining: 0)
                }
                log.append(now)
                state[key] = .log(log)
                return RateLimitDecision(allowed: true, retryAfter: .zero, remaining: limit - log.count)
            }
        }
    }
}

// MARK: - Redis engine

/// A ``RateLimiter`` shared by every client of one Redis: each decision is one atomic Lua script
/// using the server's clock. When Redis cannot be reached, ``Fallback`` decides.
public struct RedisRateLimiter: RateLimiter {
    /// What a Redis-backed limiter decides while Redis cannot be reached.
    public enum Fallback: Sendable {
        /// Admit everything while Redis is unreachable.
        case failOpen
        /// Deny everything while Redis is unreachable.
        case failClosed
        /// Enforce the same limit per process while Redis is unreachable.
        case local
    }

    /// The Redis the counters live in.
    public let redis: any RedisCommandSender
    /// The limit enforced per key, across every process sharing the Redis.
    public let limit: RateLimit
    /// Prepended to every key.
    public let prefix: String
    /// What to do while Redis cannot be reached.
    public let fallback: Fallback
    private let local: LocalRateLimiter
    private let logger: Logger

    /// A limiter enforcing `limit` per key through `redis`, falling back to `fallback` while it is unreachable.
    /// - Throws: ``CacheError/Code/invalidConfiguration`` for a limit that cannot work.
    public init(
        redis: any RedisCommandSender, limit: RateLimit, prefix: String = "ratelimit:", fallback: Fallback = .local,
        logger: Logger = Logger(label: "troupe.cache", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        try limit.validate()
        self.redis = redis
        self.limit = limit
        self.prefix = prefix
        self.fallback = fallback
        self.local = try LocalRateLimiter(limit)
        self.logger = logger
    }

    // KEYS[1] bucket; ARGV rate/s, burst. Returns {allowed, retry_after_ms, remaining}.
    static let tokenBucket = RedisScript("""
        local rate = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
        local tokens = tonumber(state[1]) or burst
        local ts = tonumber(state[2]) or now
        tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
        local allowed = 0
        local retry = 0
        if tokens >= 1 then
          tokens = tokens - 1
          allowed = 1
        else
          retry = math.ceil((1 - tokens) * 1000 / rate)
        end
        redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
        redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
        return {allowed, retry, math.floor(tokens)}
        """)

    // KEYS[1] log (sorted set of request times); ARGV limit, window ms, unique member.
    static let slidingWindow = RedisScript("""
        local limit = tonumber(ARGV[1])
        local window = tonumber(ARGV[2])
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
        local count = redis.call('ZCARD', KEYS[1])
        if count < limit then
          redis.call('ZADD', KEYS[1], now, ARGV[3])
          redis.call('PEXPIRE', KEYS[1], window)
          return {1, 0, limit - count - 1}
        end
        local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
        return {0, math.max(1, tonumber(oldest[2]) + window - now), 0}
        """)

    public func acquire(_ key: String) async throws -> RateLimitDecision {
        let reply: RESPValue
        do {
            switch limit {
            case .tokenBucket(let rate, let burst):
                reply = try await redis.evaluate(Self.tokenBucket, keys: [prefix + key], arguments: [rate, burst])
            case .slidingWindow(let limit, let window):
                let millis = window.components.seconds * 1000 + window.components.attoseconds / 1_000_000_000_000_000
                reply = try await redis.evaluate(Self.slidingWindow, keys: [prefix + key], arguments: [limit, millis, UUID().uuidString])
            }
        } catch let error as RedisError where error.code != .server {
            logger.info("rate limiter falling back", metadata: ["ratelimit.key": "\(key)", "error": "\(String(reflecting: error))"])
            switch fallback {
            case .failOpen: return RateLimitDecision(allowed: true, retryAfter: .zero, remaining: 0)
            case .failClosed: return RateLimitDecision(allowed: false, retryAfter: .seconds(1), remaining: 0)
            case .local: return try await local.acquire(key)
            }
        }
        guard let parts = reply.array, parts.count == 3, let allowed = parts[0].int, let retry = parts[1].int, let remaining = parts[2].int else {
            throw RedisError(.unexpectedReply, "the rate limiter script returned an unexpected reply")
        }
        return RateLimitDecision(allowed: allowed == 1, retryAfter: .milliseconds(retry), remaining: Int(remaining))
    }
}

// MARK: - Adjustable

/// A ``RateLimiter`` whose limit an operator changes while it runs (live configuration): it delegates to the
/// limiter it holds, which ``replace(with:)`` swaps; holding none, it admits everything.
public final class AdjustableRateLimiter: RateLimiter {
    private let current: Locked<(any RateLimiter)?>

    /// A limiter delegating to `initial` (nil: no limit until one is set).
    public init(_ initial: (any RateLimiter)?) {
        current = Locked(initial)
    }

    /// The limiter in use (nil: no limit).
    public var limiter: (any RateLimiter)? { current.withLock { $0 } }

    /// Uses `limiter` from the next decision on (nil: no limit).
    public func replace(with limiter: (any RateLimiter)?) {
        current.withLock { $0 = limiter }
    }

    public func acquire(_ key: String) async throws -> RateLimitDecision {
        guard let limiter = current.withLock({ $0 }) else { return RateLimitDecision(allowed: true, retryAfter: .zero, remaining: .max) }
        return try await limiter.acquire(key)
    }
}
