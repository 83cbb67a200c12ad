public import NIOCore
public import TroupeRESP

/// One entry of a Redis stream.
public struct RedisStreamEntry: Sendable, Hashable {
    /// The entry id (`1700000000000-0`).
    public var id: String
    /// The entry's fields and values.
    public var fields: [String: ByteBuffer]

    init?(_ value: RESPValue) {
        guard let parts = value.array, parts.count == 2, let id = parts[0].string else { return nil }
        var fields: [String: ByteBuffer] = [:]
        if let items = parts[1].array {
            for index in stride(from: 0, to: items.count - 1, by: 2) {
                guard let name = items[index].string, let value = items[index + 1].buffer else { return nil }
                fields[name] = value
            }
        }
        self.id = id
        self.fields = fields
    }
}

/// A message pending in a consumer group (`XPENDING` extended form).
public struct RedisPendingEntry: Sendable, Hashable {
    /// The entry id.
    public var id: String
    /// The consumer it was delivered to.
    public var consumer: String
    /// How long since it was last delivered.
    public var idle: Duration
    /// How many times it was delivered.
    public var deliveries: Int
}

/// The two halves of `XREADGROUP`, for callers that pipeline it behind other commands.
public enum RedisStreamRead {
    /// `XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] STREAMS key… id…`
    public static func command(
        group: String, consumer: String, streams: [(key: String, id: String)], count: Int? = nil, block: Duration? = nil
    ) -> [any RESPArgument] {
        var arguments: [any RESPArgument] = ["XREADGROUP", "GROUP", group, consumer]
        if let count { arguments += ["COUNT", count] }
        if let block { arguments += ["BLOCK", max(1, block.milliseconds)] }
        arguments.append("STREAMS")
        arguments += streams.map(\.key) as [any RESPArgument]
        arguments += streams.map(\.id) as [any RESPArgument]
        return arguments
    }

    /// The entries per stream of an `XREADGROUP` reply (empty for a null reply after a block).
    public static func entries(_ reply: RESPValue) throws -> [String: [RedisStreamEntry]] {
        if reply.isError { throw RedisError.server(reply, command: "XREADGROUP") }
        if reply.isNull { return [:] }
        guard let pairs = reply.pairs ?? reply.array?.compactMap({ item -> RESPPair? in
            guard let parts = item.array, parts.count == 2 else { return nil }
            return RESPPair(key: parts[0], value: parts[1])
        }) else { throw unexpected("XREADGROUP", reply) }
        var result: [String: [RedisStreamEntry]] = [:]
        for pair in pairs {
            guard let key = pair.key.string else { throw unexpected("XREADGROUP", reply) }
            result[key] = (pair.value.array ?? []).compactMap(RedisStreamEntry.init)
        }
        return result
    }
}

extension RedisCommandSender {
    /// `XADD key [MAXLEN ~ n] id field value …` — the id of the new entry.
    @discardableResult
    public func streamAdd(_ key: String, id: String = "*", fields: [(String, any RESPArgument)], maxLength: Int? = nil) async throws -> String {
        var arguments: [any RESPArgument] = ["XADD", key]
        if let maxLength { arguments += ["MAXLEN", "~", maxLength] }
        arguments.append(id)
        arguments += fields.flatMap { [$0.0, $0.1] as [any RESPArgument] }
        let reply = try await send(arguments, timeout: nil)
        guard let id = reply.string else { throw unexpected("XADD", reply) }
        return id
    }

    /// `XGROUP CREATE key group id MKSTREAM` — `false` when the group already exists.
    @discardableResult
    public func streamCreateGroup(_ key: String, group: String, startingAt id: String = "$") async throws -> Bool {
        do {
            _ = try await send(["XGROUP", "CREATE", key, group, id, "MKSTREAM"], timeout: nil)
            return true
        } catch let error as RedisError where error.serverErrorPrefix == "BUSYGROUP" {
            return false
        }
    }

    /// `XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] STREAMS key… id…` — entries per stream.
    public func streamReadGroup(
        group: String, consumer: String, streams: [(key: String, id: String)], count: Int? = nil, block: Duration? = nil
    ) async throws -> [String: [RedisStreamEntry]] {
        // A blocking read must not trip the connection's deadline before the server answers.
        let timeout = block.map { $0 + .seconds(5) }
        let reply = try await send(RedisStreamRead.command(group: group, consumer: consumer, streams: streams, count: count, block: block), timeout: timeout)
        return try RedisStreamRead.entries(reply)
    }

    /// `XACK key group id…`
    @discardableResult
    public func streamAcknowledge(_ key: String, group: String, ids: [String]) async throws -> Int {
        Int(try await send(["XACK", key, group] + ids, timeout: nil).int ?? 0)
    }

    /// `XPENDING key group - + count` — the pending entries, oldest first.
    public func streamPending(_ key: String, group: String, count: Int = 100) async throws -> [RedisPendingEntry] {
        let reply = try await send(["XPENDING", key, group, "-", "+", count], timeout: nil)
        return (reply.array ?? []).compactMap { item in
            guard let parts = item.array, parts.count == 4, let id = parts[0].string, let consumer = parts[1].string,
                  let idle = parts[2].int, let deliveries = parts[3].int else { return nil }
            return RedisPendingEntry(id: id, consumer: consumer, idle: .milliseconds(idle), deliveries: Int(deliveries))
        }
    }

    /// `XAUTOCLAIM key group consumer min-idle start COUNT n` — the next cursor and the claimed entries.
    public func streamAutoClaim(
        _ key: String, group: String, consumer: String, minIdle: Duration, start: String = "0-0", count: Int = 100
    ) async throws -> (next: String, entries: [RedisStreamEntry]) {
        let reply = try await send(["XAUTOCLAIM", key, group, consumer, max(0, minIdle.milliseconds), start, "COUNT", count], timeout: nil)
        guard let parts = reply.array, parts.count >= 2, let next = parts[0].string else { throw unexpected("XAUTOCLAIM", reply) }
        return (next, (parts[1].array ?? []).compactMap(RedisStreamEntry.init))
    }

    /// `XLEN key`
    public func streamLength(_ key: String) async throws -> Int {
        Int(try await send(["XLEN", key], timeout: nil).int ?? 0)
    }

    /// `XTRIM key MAXLEN ~ n` — how many entries were removed.
    @discardableResult
    public func streamTrim(_ key: String, maxLength: Int, approximate: Bool = true) async throws -> Int {
        let arguments: [any RESPArgument] = approximate ? ["XTRIM", key, "MAXLEN", "~", maxLength] : ["XTRIM", key, "MAXLEN", maxLength]
        return Int(try await send(arguments, timeout: nil).int ?? 0)
    }

    /// `XINFO GROUPS key` — per group: name, consumers, pending, last delivered id and lag (Redis 7).
    public func streamGroups(_ key: String) async throws -> [[String: RESPValue]] {
        let reply = try await send(["XINFO", "GROUPS", key], timeout: nil)
        return (reply.array ?? []).compactMap { group in
            guard let pairs = group.pairs else { return nil }
            var info: [String: RESPValue] = [:]
            for pair in pairs { if let name = pair.key.string { info[name] = pair.value } }
            return info
        }
    }
}
