import Foundation
import Metrics
import Synchronization
import TroupeCore

/// How a cache rebuilds a missing or expired entry under load ("breakdown" protection).
public enum BreakdownProtection: Sendable {
    /// Concurrent misses of one key in this process share one load.
    case singleFlight
    /// As ``singleFlight``, plus a store-wide mutex (`SET NX` in Redis) so that one process in the
    /// whole cluster rebuilds; the others wait up to `wait` for the entry to appear, then load themselves.
    case mutex(lockTTL: Duration, wait: Duration)
    /// Entries never expire physically; past their logical expiry they are served stale while one
    /// background refresh (run by a ``CacheRefresher``) rebuilds them.
    case logicalExpiry
}

/// Settings of a ``Cache``.
public struct CacheOptions: Sendable {
    /// Time to live of a cached value (before jitter).
    public var ttl: Duration
    /// Each TTL is stretched by a random 0…`ttlJitter` fraction so that keys cached together do
    /// not expire together ("avalanche" protection).
    public var ttlJitter: Double
    /// Time to live of the marker cached for a key the loader did not find ("penetration" protection).
    public var nullTTL: Duration
    /// How a missing or expired entry is rebuilt under concurrent reads.
    public var breakdown: BreakdownProtection
    /// Keys the Bloom filter never saw are answered `nil` without touching the store or the loader.
    public var bloomFilter: (any BloomFilter)?
    /// An in-process first level in front of the store: at most `l1Capacity` entries for `l1TTL`.
    public var l1Capacity: Int
    /// How long an entry stays in the in-process first level.
    public var l1TTL: Duration
    /// Prepended to every key in the store.
    public var keyPrefix: String

    /// Settings for a cache; see each property (defaults: 5 minutes' TTL, 10 % jitter, 30 s for null markers,
    /// single-flight, no Bloom filter, no L1, keys prefixed `cache:`).
    public init(
        ttl: Duration = .seconds(300), ttlJitter: Double = 0.1, nullTTL: Duration = .seconds(30),
        breakdown: BreakdownProtection = .singleFlight, bloomFilter: (any BloomFilter)? = nil,
        l1Capacity: Int = 0, l1TTL: Duration = .seconds(1), keyPrefix: String = "cache:"
    ) {
        self.ttl = ttl
        self.ttlJitter = ttlJitter
        self.nullTTL = nullTTL
        self.breakdown = breakdown
        self.bloomFilter = bloomFilter
        self.l1Capacity = l1Capacity
        self.l1TTL = l1TTL
        self.keyPrefix = keyPrefix
    }

    func validate() throws {
        guard ttl > .zero, nullTTL > .zero else { throw CacheError(.invalidConfiguration, "ttl and nullTTL must be positive") }
        guard (0...1).contains(ttlJitter) else { throw CacheError(.invalidConfiguration, "ttlJitter must be within 0…1") }
        guard l1Capacity >= 0 else { throw CacheError(.invalidConfiguration, "l1Capacity must not be negative") }
        if case .mutex(let lockTTL, let wait) = breakdown, lockTTL <= .zero || wait <= .zero {
            throw CacheError(.invalidConfiguration, "the mutex lockTTL and wait must be positive")
        }
    }
}

/// Counters of a ``Cache`` since it was created.
public struct CacheStatistics: Sendable, Hashable {
    /// Reads answered from the store.
    public var hits = 0
    /// Reads the store could not answer.
    public var misses = 0
    /// Loader runs.
    public var loads = 0
    /// Reads answered `nil` by a cached null marker.
    public var nullHits = 0
    /// Reads answered from a logically expired entry while it was refreshed.
    public var staleServed = 0
    /// Reads answered `nil` because the Bloom filter never saw the key.
    public var bloomRejections = 0
    /// Reads answered by the in-process first level.
    public var l1Hits = 0
    /// Reads answered by the source because the store could not be reached.
    public var storeUnavailable = 0

    /// Reads served from the cache (L1 or store) over all reads that looked a key up; 0 before any read.
    public var hitRate: Double {
        let reads = hits + l1Hits + misses
        return reads > 0 ? Double(hits + l1Hits) / Double(reads) : 0
    }
}

/// Cache-aside / read-through / write-through over a ``KeyValueStore``, with protection against
/// penetration (null markers, Bloom filter), breakdown (single-flight, mutex or logical expiry) and
/// avalanche (TTL jitter), and an optional in-process L1.
public final class Cache<Value: Codable & Sendable>: Sendable {
    /// The store entries live in.
    public let store: any KeyValueStore
    /// The settings it was made with.
    public let options: CacheOptions
    private let refresher: CacheRefresher?
    private let flights = SingleFlight<Value?>()
    private let counters = Guarded(CacheStatistics())
    private let reported: [Counted: Counter]
    private let l1 = Guarded(L1())

    /// - Throws: ``CacheError/Code/invalidConfiguration``; logical expiry needs a running `refresher`.
    public init(store: any KeyValueStore, options: CacheOptions = CacheOptions(), refresher: CacheRefresher? = nil) throws {
        try options.validate()
        if case .logicalExpiry = options.breakdown, refresher == nil {
            throw CacheError(.invalidConfiguration, "logical expiry needs a CacheRefresher to run the background refreshes")
        }
        self.store = store
        self.options = options
        self.refresher = refresher
        self.reported = Self.reportedCounters(prefix: options.keyPrefix)
    }

    /// A snapshot of the counters.
    public var statistics: CacheStatistics { counters.withLock { $0 } }

    // MARK: - Reading

    /// The value of `key`: from L1, then the store; on a miss `loader` runs (once per key across
    /// concurrent callers) and its result is cached — `nil` as a short-lived null marker.
    public func get(_ key: String, loader: @escaping @Sendable () async throws -> Value?) async throws -> Value? {
        if let cached = l1Lookup(key) {
            count(.l1Hits)
            return cached.value
        }
        let stored: CacheEntry<Value>?
        do {
            if let bloom = options.bloomFilter, try await !bloom.mightContain(key) {
                count(.bloomRejections)
                return nil
            }
            stored = try await read(key)
        } catch where isTransient(error) {
            // The store cannot be reached (Redis restarting): the source answers — one load per key at a time,
            // nothing cached — rather than the read failing. The Bloom filter lives in the same store, so unknown
            // keys reach the source too while it is down; single flight still bounds them to one load per key.
            count(.storeUnavailable)
            return try await flights.share(key) { try await loader() }
        }
        if let entry = stored {
            if let expiry = entry.logicalExpiry, expiry < Self.wallClockMillis() {
                count(.staleServed)
                scheduleRefresh(key, loader: loader)
            } else {
                count(entry.value == nil ? .nullHits : .hits)
            }
            l1Store(key, entry.value)
            return entry.value
        }
        count(.misses)
        return try await flights.share(key) { try await self.rebuild(key, loader: loader) }
    }

    // MARK: - Writing

    /// Writes `value` to the cache (after the caller wrote its source of truth).
    public func set(_ key: String, _ value: Value) async throws {
        try await write(key, value)
    }

    /// Write-through: runs `writer` (the source of truth) and then caches `value`.
    public func writeThrough(_ key: String, _ value: Value, writer: () async throws -> Void) async throws {
        try await writer()
        try await write(key, value)
    }

    /// Removes `key` from the cache (after its source changed).
    public func invalidate(_ key: String) async throws {
        l1.withLock { $0.remove(key) }
        try await store.delete(options.keyPrefix + key)
    }

    // MARK: - Internals

    private func rebuild(_ key: String, loader: @Sendable () async throws -> Value?) async throws -> Value? {
        switch options.breakdown {
        case .singleFlight, .logicalExpiry:
            return try await load(key, loader: loader)
        case .mutex(let lockTTL, let wait):
            let lockKey = options.keyPrefix + "lock:" + key
            let token = Array(UUID().uuidString.utf8)
            if try await store.setIfAbsent(lockKey, token, ttl: lockTTL) {
                let result: Result<Value?, any Error>
                do {
                    result = .success(try await load(key, loader: loader))
                } catch {
                    result = .failure(error)
                }
                // Only our own lock: if the load outlived lockTTL, another process may hold it now.
                _ = try? await store.delete(lockKey, ifValueIs: token)
                return try result.get()
            }
            // Another process is rebuilding: wait for its result, then give up waiting and load.
            let deadline = ContinuousClock.now + wait
            while ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
                if let entry = try await read(key) { return entry.value }
            }
            return try await load(key, loader: loader)
        }
    }

    private func load(_ key: String, loader: @Sendable () async throws -> Value?) async throws -> Value? {
        // Another caller may have filled the entry while this one waited for the flight.
        if let entry = try await read(key), entry.logicalExpiry.map({ $0 >= Self.wallClockMillis() }) ?? true {
            return entry.value
        }
        count(.loads)
        let value = try await loader()
        try await write(key, value)
        return value
    }

    private func write(_ key: String, _ value: Value?) async throws {
        let ttl: Duration?
        var logicalExpiry: Int64?
        let jittered = jitter(options.ttl)
        switch (options.breakdown, value) {
        case (.logicalExpiry, .some):
            ttl = nil
            logicalExpiry = Self.wallClockMillis() + jittered.components.seconds * 1000 + jittered.components.attoseconds / 1_000_000_000_000_000
        case (_, .none):
            ttl = options.nullTTL
        case (_, .some):
            ttl = jittered
        }
        let entry = CacheEntry(value: value, logicalExpiry: logicalExpiry)
        try await store.set(options.keyPrefix + key, try entry.encoded(), ttl: ttl)
        l1Store(key, value)
    }

    private func read(_ key: String) async throws -> CacheEntry<Value>? {
        guard let bytes = try await store.get(options.keyPrefix + key) else { return nil }
        do {
            return try CacheEntry<Value>.decode(bytes)
        } catch {
            // A corrupt or foreign entry is a miss, not a failure of the read path.
            try? await store.delete(options.keyPrefix + key)
            return nil
        }
    }

    private func scheduleRefresh(_ key: String, loader: @escaping @Sendable () async throws -> Value?) {
        guard let refresher else { return }
        refresher.submit(key: options.keyPrefix + key) { [self] in
            let value = try await loader()
            count(.loads)
            try await write(key, value)
        }
    }

    func jitter(_ ttl: Duration) -> Duration {
        guard options.ttlJitter > 0 else { return ttl }
        return ttl * (1 + Double.random(in: 0...options.ttlJitter))
    }

    /// What a read or a load counts: a field of ``CacheStatistics`` and the series it is reported under.
    private enum Counted: CaseIterable {
        case hits, l1Hits, nullHits, misses, staleServed, bloomRejections, storeUnavailable, loads

        var field: WritableKeyPath<CacheStatistics, Int> {
            switch self {
            case .hits: \.hits
            case .l1Hits: \.l1Hits
            case .nullHits: \.nullHits
            case .misses: \.misses
            case .staleServed: \.staleServed
            case .bloomRejections: \.bloomRejections
            case .storeUnavailable: \.storeUnavailable
            case .loads: \.loads
            }
        }

        /// The `result` label of `troupe_cache_reads_total` (nil: a load, `troupe_cache_loads_total`).
        var result: String? {
            switch self {
            case .hits: "hit"
            case .l1Hits: "l1_hit"
            case .nullHits: "null_hit"
            case .misses: "miss"
            case .staleServed: "stale"
            case .bloomRejections: "bloom_rejected"
            case .storeUnavailable: "store_unavailable"
            case .loads: nil
            }
        }
    }

    private func count(_ counted: Counted) {
        counters.withLock { $0[keyPath: counted.field] += 1 }
        reported[counted]?.increment()
    }

    /// The series of every ``Counted``, labelled with the cache's key prefix.
    private static func reportedCounters(prefix: String) -> [Counted: Counter] {
        let cache = ("cache", prefix.hasSuffix(":") ? String(prefix.dropLast()) : prefix)
        return Dictionary(uniqueKeysWithValues: Counted.allCases.map { counted in
            guard let result = counted.result else { return (counted, Counter(label: MetricFamilies.cacheLoads.name, dimensions: [cache])) }
            return (counted, Counter(label: MetricFamilies.cacheReads.name, dimensions: [cache, ("result", result)]))
        })
    }

    // MARK: L1

    private struct L1 {
        var entries: [String: (value: Value?, expiresAt: ContinuousClock.Instant)] = [:]
        var order: [String] = []

        mutating func remove(_ key: String) {
            entries[key] = nil
        }
    }

    private func l1Lookup(_ key: String) -> (value: Value?, expiresAt: ContinuousClock.Instant)? {
        guard options.l1Capacity > 0 else { return nil }
        let now = ContinuousClock.now
        return l1.withLock { l1 in
            guard let entry = l1.entries[key], entry.expiresAt > now else { return nil }
            return entry
        }
    }

    private func l1Store(_ key: String, _ value: Value?) {
        guard options.l1Capacity > 0 else { return }
        let expiresAt = ContinuousClock.now + options.l1TTL
        l1.withLock { l1 in
            if l1.entries[key] == nil { l1.order.append(key) }
            l1.entries[key] = (value, expiresAt)
            while l1.entries.count > options.l1Capacity, !l1.order.isEmpty {
                l1.entries[l1.order.removeFirst()] = nil
            }
            if l1.order.count > 2 * options.l1Capacity { l1.order = l1.order.filter { l1.entries[$0] != nil } }
        }
    }

    static func wallClockMillis() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000)
    }
}

/// What the cache stores: the value (or the null marker) and, with logical expiry, its deadline.
struct CacheEntry<Value: Codable & Sendable>: Codable {
    var value: Value?
    var logicalExpiry: Int64?

    func encoded() throws -> [UInt8] {
        try BinaryEncoder().encode(self)
    }

    static func decode(_ bytes: [UInt8]) throws -> CacheEntry {
        try BinaryDecoder().decode(CacheEntry.self, from: bytes)
    }
}
