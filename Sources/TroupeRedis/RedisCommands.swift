public import NIOCore
public import TroupeRESP

/// Anything that can send a command: a ``RedisClient`` or one ``RedisConnection``.
public protocol RedisCommandSender: Sendable {
    func send(_ arguments: [any RESPArgument], timeout: Duration?) async throws -> RESPValue
}

extension RedisClient: RedisCommandSender {}
extension RedisConnection: RedisCommandSender {}

/// Options of `SET`.
public struct RedisSetOptions: Sendable {
    /// When a SET writes: always, only if the key is absent (NX), or only if it exists (XX).
    public enum Condition: Sendable { case always, ifNotExists, ifExists }
    /// Expire the key after this long (`PX`); nil: no expiry.
    public var expiry: Duration?
    /// When the SET writes.
    public var condition: Condition
    /// Keep the key's current time to live (`KEEPTTL`).
    public var keepTTL: Bool

    /// Options of one SET; see each property.
    public init(expiry: Duration? = nil, condition: Condition = .always, keepTTL: Bool = false) {
        self.expiry = expiry
        self.condition = condition
        self.keepTTL = keepTTL
    }
}

extension Duration {
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

func unexpected(_ command: String, _ reply: RESPValue) -> RedisError {
    RedisError(.unexpectedReply, "\(command) returned an unexpected reply", serverMessage: reply.string)
}

// MARK: - Strings and keys

extension RedisCommandSender {
    private func run(_ arguments: [any RESPArgument]) async throws -> RESPValue {
        try await send(arguments, timeout: nil)
    }

    /// `GET key` — `nil` when the key does not exist.
    public func get(_ key: String) async throws -> ByteBuffer? {
        try await run(["GET", key]).buffer
    }

    /// `GET key` as UTF-8 text.
    public func getString(_ key: String) async throws -> String? {
        try await get(key).map { String(buffer: $0) }
    }

    /// `SET key value [PX ms] [NX|XX] [KEEPTTL]` — `false` when NX/XX prevented the write.
    @discardableResult
    public func set(_ key: String, to value: some RESPArgument, options: RedisSetOptions = RedisSetOptions()) async throws -> Bool {
        var arguments: [any RESPArgument] = ["SET", key, value]
        if let expiry = options.expiry { arguments += ["PX", max(1, expiry.milliseconds)] }
        switch options.condition {
        case .always: break
        case .ifNotExists: arguments.append("NX")
        case .ifExists: arguments.append("XX")
        }
        if options.keepTTL { arguments.append("KEEPTTL") }
        return try await !run(arguments).isNull
    }

    /// `DEL key…` — the number of keys removed.
    @discardableResult
    public func delete(_ keys: [String]) async throws -> Int {
        guard !keys.isEmpty else { return 0 }
        return Int(try await run(["DEL"] + keys).int ?? 0)
    }

    /// `EXISTS key…` — how many of the keys exist.
    public func exists(_ keys: [String]) async throws -> Int {
        Int(try await run(["EXISTS"] + keys).int ?? 0)
    }

    /// `INCRBY key amount` — the new value.
    @discardableResult
    public func increment(_ key: String, by amount: Int64 = 1) async throws -> Int64 {
        let reply = try await run(["INCRBY", key, amount])
        guard let value = reply.int else { throw unexpected("INCRBY", reply) }
        return value
    }

    /// `MGET key…` — one optional value per key.
    public func multiGet(_ keys: [String]) async throws -> [ByteBuffer?] {
        let reply = try await run(["MGET"] + keys)
        guard let items = reply.array else { throw unexpected("MGET", reply) }
        return items.map(\.buffer)
    }

    /// `MSET key value …`
    public func multiSet(_ pairs: [(String, any RESPArgument)]) async throws {
        _ = try await run(["MSET"] + pairs.flatMap { [$0.0, $0.1] as [any RESPArgument] })
    }

    /// `PEXPIRE key ms` — `false` when the key does not exist.
    @discardableResult
    public func expire(_ key: String, after duration: Duration) async throws -> Bool {
        try await run(["PEXPIRE", key, max(1, duration.milliseconds)]).int == 1
    }

    /// `PTTL key` — `nil` when the key does not exist, `.zero`-less `nil`-expiry as `-1` → `nil` TTL.
    public func timeToLive(_ key: String) async throws -> RedisTTL {
        let value = try await run(["PTTL", key]).int ?? -2
        switch value {
        case -2: return .missing
        case -1: return .persistent
        default: return .expires(in: .milliseconds(value))
        }
    }

    /// `PUBLISH channel message` — how many subscribers received it.
    @discardableResult
    public func publish(_ message: some RESPArgument, to channel: String) async throws -> Int {
        Int(try await run(["PUBLISH", channel, message]).int ?? 0)
    }
}

/// The time to live of a key.
public enum RedisTTL: Sendable, Hashable {
    case missing
    case persistent
    case expires(in: Duration)
}

// MARK: - Hashes

extension RedisCommandSender {
    /// `HSET key field value …` — the number of fields added.
    @discardableResult
    public func hashSet(_ key: String, _ fields: [(String, any RESPArgument)]) async throws -> Int {
        Int(try await send(["HSET", key] + fields.flatMap { [$0.0, $0.1] as [any RESPArgument] }, timeout: nil).int ?? 0)
    }

    /// `HGET key field`
    public func hashGet(_ key: String, field: String) async throws -> ByteBuffer? {
        try await send(["HGET", key, field], timeout: nil).buffer
    }

    /// `HGETALL key` as a dictionary of UTF-8 fields.
    public func hashGetAll(_ key: String) async throws -> [String: ByteBuffer] {
        let reply = try await send(["HGETALL", key], timeout: nil)
        guard let pairs = reply.pairs else { throw unexpected("HGETALL", reply) }
        var result: [String: ByteBuffer] = [:]
        for pair in pairs {
            guard let field = pair.key.string, let value = pair.value.buffer else { throw unexpected("HGETALL", reply) }
            result[field] = value
        }
        return result
    }

    /// `HDEL key field…`
    @discardableResult
    public func hashDelete(_ key: String, fields: [String]) async throws -> Int {
        Int(try await send(["HDEL", key] + fields, timeout: nil).int ?? 0)
    }

    /// `HINCRBY key field amount`
    @discardableResult
    public func hashIncrement(_ key: String, field: String, by amount: Int64) async throws -> Int64 {
        let reply = try await send(["HINCRBY", key, field, amount], timeout: nil)
        guard let value = reply.int else { throw unexpected("HINCRBY", reply) }
        return value
    }
}

// MARK: - Lists, sets, sorted sets

extension RedisCommandSender {
    /// `LPUSH` / `RPUSH` — the new length.
    @discardableResult
    public func push(_ values: [any RESPArgument], to key: String, atFront: Bool = false) async throws -> Int {
        Int(try await send([atFront ? "LPUSH" : "RPUSH", key] + values, timeout: nil).int ?? 0)
    }

    /// `LPOP` / `RPOP`
    public func pop(_ key: String, fromFront: Bool = true) async throws -> ByteBuffer? {
        try await send([fromFront ? "LPOP" : "RPOP", key], timeout: nil).buffer
    }

    /// `LRANGE key start stop`
    public func listRange(_ key: String, from start: Int, to stop: Int) async throws -> [ByteBuffer] {
        let reply = try await send(["LRANGE", key, start, stop], timeout: nil)
        return try (reply.array ?? []).map { item in
            guard let buffer = item.buffer else { throw unexpected("LRANGE", reply) }
            return buffer
        }
    }

    /// `LLEN key`
    public func listLength(_ key: String) async throws -> Int {
        Int(try await send(["LLEN", key], timeout: nil).int ?? 0)
    }

    /// `SADD key member…` — how many were added.
    @discardableResult
    public func setAdd(_ key: String, _ members: [any RESPArgument]) async throws -> Int {
        Int(try await send(["SADD", key] + members, timeout: nil).int ?? 0)
    }

    /// `SREM key member…`
    @discardableResult
    public func setRemove(_ key: String, _ members: [any RESPArgument]) async throws -> Int {
        Int(try await send(["SREM", key] + members, timeout: nil).int ?? 0)
    }

    /// `SMEMBERS key` as UTF-8 strings.
    public func setMembers(_ key: String) async throws -> Set<String> {
        Set(try await send(["SMEMBERS", key], timeout: nil).array?.compactMap(\.string) ?? [])
    }

    /// `SISMEMBER key member`
    public func setContains(_ key: String, _ member: some RESPArgument) async throws -> Bool {
        try await send(["SISMEMBER", key, member], timeout: nil).int == 1
    }

    /// `ZADD key score member …` — how many were added.
    @discardableResult
    public func sortedSetAdd(_ key: String, _ members: [(score: Double, member: any RESPArgument)]) async throws -> Int {
        Int(try await send(["ZADD", key] + members.flatMap { [$0.score, $0.member] as [any RESPArgument] }, timeout: nil).int ?? 0)
    }

    /// `ZSCORE key member`
    public func sortedSetScore(_ key: String, _ member: some RESPArgument) async throws -> Double? {
        try await send(["ZSCORE", key, member], timeout: nil).double
    }

    /// `ZRANGE key min max BYSCORE [LIMIT offset count] WITHSCORES` as (member, score) pairs.
    public func sortedSetRangeByScore(_ key: String, min: Double, max: Double, limit: Int? = nil) async throws -> [(String, Double)] {
        var arguments: [any RESPArgument] = ["ZRANGE", key, min, max, "BYSCORE"]
        if let limit { arguments += ["LIMIT", 0, limit] }
        arguments.append("WITHSCORES")
        let reply = try await send(arguments, timeout: nil)
        guard let items = reply.array else { throw unexpected("ZRANGE", reply) }
        // RESP3 returns [member, score] pairs; RESP2 a flat list.
        if items.allSatisfy({ $0.array?.count == 2 }) {
            return items.compactMap { pair in
                guard let parts = pair.array, let member = parts[0].string, let score = parts[1].double else { return nil }
                return (member, score)
            }
        }
        return stride(from: 0, to: items.count - 1, by: 2).compactMap { index in
            guard let member = items[index].string, let score = items[index + 1].double else { return nil }
            return (member, score)
        }
    }

    /// `ZREM key member…`
    @discardableResult
    public func sortedSetRemove(_ key: String, _ members: [any RESPArgument]) async throws -> Int {
        Int(try await send(["ZREM", key] + members, timeout: nil).int ?? 0)
    }

    /// `ZCARD key`
    public func sortedSetCount(_ key: String) async throws -> Int {
        Int(try await send(["ZCARD", key], timeout: nil).int ?? 0)
    }
}
