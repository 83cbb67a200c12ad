import NIOCore
import Synchronization
import TroupeCore
import TroupeRESP
public import TroupeRedis

/// The production engine on Redis Streams. One stream per topic queue (`bus:{topic:queue}`, the hash
/// tag keeping a queue's stream and its delay set in one slot on Redis Cluster); consumer groups with
/// XREADGROUP / XACK; XAUTOCLAIM for messages of dead or stuck members; delayed messages and retries in
/// a sorted set per queue moved atomically by Lua; half messages per producer group; leases with
/// `SET NX PX` and compare-and-expire.
public final class RedisBusEngine: BusEngine {
    public let engineName = "redis"
    let redis: any RedisCommandSender
    /// Dedicated connections for blocking reads (a blocked read must not stall a shared connection).
    private let blockingConfiguration: RedisConfiguration?
    private let blocking = Guarded<[String: RedisConnection]>([:])
    private let sweepState = Guarded(SweepState())

    private struct SweepState {
        var refreshedMS: Int64 = 0
        var queues: [String] = []
        var cursor = 0
    }
    /// How long messages are kept, consumed or not (RocketMQ's `fileReservedTime`, 72 h by default): each
    /// append trims its stream to the entries younger than this, and the id and key indexes expire after it.
    public let retention: Duration

    /// One of the client's event loops (single server), so that a consumer with `execution: .engine` reads and
    /// runs its listener without leaving the loop its connection reads on; nil for a cluster client.
    public var preferredExecutor: (any TaskExecutor)? { (redis as? RedisClient)?.nextExecutor() }

    /// An engine on `redis`, keeping messages for `retention` (72 h by default).
    /// - Parameters:
    ///   - redis: a `RedisClient` (single server) or `RedisClusterClient`.
    ///   - blockingReads: the server's configuration for dedicated blocking-read connections (single
    ///     server only); without it reads poll.
    ///   - retention: how long messages are kept, consumed or not.
    public init(redis: any RedisCommandSender, blockingReads: RedisConfiguration? = nil, retention: Duration = .seconds(72 * 3600)) {
        self.redis = redis
        self.retention = retention
        self.blockingConfiguration = blockingReads
    }

    static func stream(_ topic: String, _ queue: Int) -> String { "bus:{\(topic):\(queue)}" }
    static func delaySet(_ topic: String, _ queue: Int) -> String { "bus:{\(topic):\(queue)}:delay" }
    static let topicsKey = "bus:topics"

    private func send(_ arguments: [any RESPArgument]) async throws(BusError) -> RESPValue {
        do {
            return try await redis.send(arguments, timeout: nil)
        } catch {
            throw BusError(.engine, "Redis \((arguments.first as? String) ?? "command") failed", underlying: error)
        }
    }

    private static func encode(_ message: BusMessage) throws(BusError) -> [UInt8] {
        BusMessageCodec.encode(message)
    }

    private static func decode(_ buffer: ByteBuffer?) -> BusMessage? {
        guard let buffer else { return nil }
        return try? BusMessageCodec.decode(Array(buffer.readableBytesView))
    }

    // MARK: Topics

    public func createTopic(_ topic: String, queues: Int) async throws(BusError) {
        guard queues > 0 else { throw BusError(.invalidConfiguration, "a topic needs at least one queue") }
        _ = try await send(["HSETNX", Self.topicsKey, topic, queues])
    }

    public func queueCount(_ topic: String) async throws(BusError) -> Int? {
        let reply = try await send(["HGET", Self.topicsKey, topic])
        return reply.string.flatMap(Int.init)
    }

    public func topics() async throws(BusError) -> [String] {
        let reply = try await send(["HKEYS", Self.topicsKey])
        return (reply.array ?? []).compactMap(\.string).sorted()
    }

    // MARK: Append, schedule, promote

    /// XADD (trimming entries older than the retention: MINID) plus the id and key indexes, in one round
    /// trip; every key is in the queue's slot.
    static let appendScript = RedisScript("""
        local entry = redis.call('XADD', KEYS[1], 'MINID', ARGV[4], '*', 'm', ARGV[1])
        redis.call('SET', KEYS[1] .. ':id:' .. ARGV[2], entry, 'EX', ARGV[3])
        for i = 5, #ARGV do
          local key = KEYS[1] .. ':key:' .. ARGV[i]
          redis.call('RPUSH', key, ARGV[2])
          redis.call('EXPIRE', key, ARGV[3])
        end
        return entry
        """)

    /// How far from its id's time a message may be appended without an id index entry.
    static let unindexedAppendWindowMS: Int64 = 1000
    /// How far around an id's time `lookup(id:)` searches the streams (the window above plus clock skew
    /// between producers and the Redis server, up to 2 s).
    static let lookupWindowMS: Int64 = 3000

    /// Messages whose id carries the time they are appended at (within a second) and that have no keys go in
    /// with a plain XADD: `lookup(id:)` finds them by searching their stream around that time. The others —
    /// keys, ids from elsewhere, transactional commits and redeliveries long after the id was made — also get
    /// index entries, written by a script in the same round trip. (The index script cost Redis 2–3 times the
    /// XADD, and a key per message for the whole retention.)
    public func append(_ message: BusMessage) async throws(BusError) -> String {
        let payload = try Self.encode(message)
        let retentionMS = retention.milliseconds
        let now = nowMilliseconds()
        let minID = max(0, now - retentionMS)
        if message.keys.isEmpty, let idMS = BusProducer.idMilliseconds(message.id), abs(now - idMS) <= Self.unindexedAppendWindowMS {
            let reply = try await send(["XADD", Self.stream(message.topic, message.queue), "MINID", minID, "*", "m", payload])
            guard let id = reply.string else { throw BusError(.engine, "XADD returned no id") }
            return id
        }
        let arguments: [any RESPArgument] = [payload, message.id, max(1, retentionMS / 1000), minID] + message.keys
        do {
            let reply = try await redis.evaluate(Self.appendScript, keys: [Self.stream(message.topic, message.queue)], arguments: arguments)
            guard let id = reply.string else { throw BusError(.engine, "XADD returned no id") }
            return id
        } catch let error as BusError {
            throw error
        } catch {
            throw BusError(.engine, "appending to \(message.topic)/\(message.queue) failed", underlying: error)
        }
    }

    public func schedule(_ message: BusMessage, deliverAtMS: Int64) async throws(BusError) {
        if try await queueCount(message.topic) == nil { try await createTopic(message.topic, queues: max(1, message.queue + 1)) }
        // Member: the message id, a newline, the payload (so the promoter can index the id).
        let member = Array(message.id.utf8) + [0x0A] + (try Self.encode(message))
        _ = try await send(["ZADD", Self.delaySet(message.topic, message.queue), deliverAtMS, member])
        // The due index: per queue, the earliest delivery time (LT keeps the smaller score).
        _ = try await send(["ZADD", Self.dueKey, "LT", deliverAtMS, "\(message.topic)\u{1}\(message.queue)"])
        _ = try await send(["ZADD", Self.dueKey, "NX", deliverAtMS, "\(message.topic)\u{1}\(message.queue)"])
    }

    /// Queues with delayed messages, scored by their earliest delivery time.
    static let dueKey = "bus:due"

    static let promote = RedisScript("""
        local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
        for _, member in ipairs(due) do
          local sep = string.find(member, '\\n', 1, true)
          if sep then
            local id = string.sub(member, 1, sep - 1)
            local entry = redis.call('XADD', KEYS[2], '*', 'm', string.sub(member, sep + 1))
            redis.call('SET', KEYS[2] .. ':id:' .. id, entry, 'EX', ARGV[3])
          else
            redis.call('XADD', KEYS[2], '*', 'bad', member)
          end
          redis.call('ZREM', KEYS[1], member)
        end
        local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
        if next[2] then return {#due, next[2]} end
        return {#due, false}
        """)

    public func promoteDue(nowMS: Int64) async throws(BusError) -> Int {
        let indexed = (try await send(["ZRANGEBYSCORE", Self.dueKey, "-inf", nowMS, "LIMIT", 0, 1000]).array ?? []).compactMap(\.string)
        // A message scheduled while its queue was being dropped from the index would wait forever, so
        // every queue is also visited in turn: a few per call (a full pass would delay due messages).
        let refresh = sweepState.withLock { state -> Bool in
            guard nowMS - state.refreshedMS >= 2000 else { return false }
            state.refreshedMS = nowMS
            return true
        }
        if refresh {
            let reply = try await send(["HGETALL", Self.topicsKey])
            let items = reply.pairs.map { $0.map { ($0.key, $0.value) } }
                ?? stride(from: 0, to: (reply.array?.count ?? 0) - 1, by: 2).map { (reply.array![$0], reply.array![$0 + 1]) }
            var queues: [String] = []
            for (name, count) in items {
                guard let topic = name.string, let n = count.string.flatMap(Int.init) else { continue }
                for q in 0..<n { queues.append("\(topic)\u{1}\(q)") }
            }
            sweepState.withLock { $0.queues = queues }
        }
        let swept = sweepState.withLock { state -> [String] in
            guard !state.queues.isEmpty else { return [] }
            var batch: [String] = []
            for _ in 0..<min(1, state.queues.count) {
                state.cursor = state.cursor % state.queues.count
                batch.append(state.queues[state.cursor])
                state.cursor += 1
            }
            return batch
        }
        let due = indexed + swept.filter { !indexed.contains($0) }
        let sweepOnly = Set(swept).subtracting(indexed)
        var moved = 0
        for member in due {
            let parts = member.split(separator: "\u{1}", omittingEmptySubsequences: false)
            guard parts.count == 2, let queue = Int(parts[1]) else { continue }
            let topic = String(parts[0])
            let result: RESPValue
            do {
                result = try await redis.evaluate(Self.promote, keys: [Self.delaySet(topic, queue), Self.stream(topic, queue)],
                                                 arguments: [nowMS, 500, max(1, Int(retention.milliseconds / 1000))])
            } catch {
                throw BusError(.engine, "moving due messages of \(topic)/\(queue) failed", underlying: error)
            }
            let reply = result.array ?? []
            moved += Int(reply.first?.int ?? 0)
            // Re-index the queue at its next delivery time, or drop it when nothing is left.
            if reply.count > 1, let next = reply[1].string.flatMap(Double.init) ?? reply[1].double {
                _ = try await send(["ZADD", Self.dueKey, Int64(next), member])
            } else if Int(reply.first?.int ?? 0) > 0 || !sweepOnly.contains(member) {
                _ = try await send(["ZREM", Self.dueKey, member])
            }
        }
        return moved
    }

    // MARK: Transactions

    public func storeHalf(_ message: BusMessage) async throws(BusError) {
        let group = message.producerGroup ?? ""
        _ = try await send(["HSET", "bus:half:{\(group)}", message.id, try Self.encode(message)])
        _ = try await send(["ZADD", "bus:halfq:{\(group)}", nowMilliseconds(), message.id])
    }

    static let claimHalf = RedisScript("""
        local payload = redis.call('HGET', KEYS[1], ARGV[1])
        if not payload then return false end
        redis.call('HDEL', KEYS[1], ARGV[1])
        redis.call('ZREM', KEYS[2], ARGV[1])
        redis.call('HDEL', KEYS[3], ARGV[1])
        return payload
        """)

    public func resolveHalf(producerGroup: String, id: String, commit: Bool) async throws(BusError) -> Bool {
        let claimed: RESPValue
        do {
            claimed = try await redis.evaluate(Self.claimHalf, keys: ["bus:half:{\(producerGroup)}", "bus:halfq:{\(producerGroup)}", "bus:halfc:{\(producerGroup)}"],
                                               arguments: [id])
        } catch {
            throw BusError(.engine, "resolving half message \(id) failed", underlying: error)
        }
        guard let buffer = claimed.buffer, !claimed.isNull else { return false }
        if commit {
            guard let message = Self.decode(buffer) else { throw BusError(.engine, "half message \(id) is corrupt") }
            _ = try await append(message)
        }
        return true
    }

    public func halfsToCheck(producerGroup: String, olderThanMS: Int64, limit: Int) async throws(BusError) -> [(BusMessage, Int)] {
        let ids = (try await send(["ZRANGEBYSCORE", "bus:halfq:{\(producerGroup)}", "-inf", olderThanMS, "LIMIT", 0, limit]).array ?? []).compactMap(\.string)
        var out: [(BusMessage, Int)] = []
        for id in ids {
            guard let message = Self.decode(try await send(["HGET", "bus:half:{\(producerGroup)}", id]).buffer) else { continue }
            let checks = Int(try await send(["HINCRBY", "bus:halfc:{\(producerGroup)}", id, 1]).int ?? 1)
            out.append((message, checks))
        }
        return out
    }

    // MARK: Consumer groups

    public func ensureGroup(topic: String, group: String, fromEnd: Bool) async throws(BusError) {
        let queues = try await queueCount(topic) ?? 1
        for q in 0..<queues {
            do {
                _ = try await redis.streamCreateGroup(Self.stream(topic, q), group: group, startingAt: fromEnd ? "$" : "0")
            } catch {
                throw BusError(.engine, "creating group \(group) on \(topic)/\(q) failed", underlying: error)
            }
        }
    }

    private func deliveries(_ entries: [RedisStreamEntry], topic: String, queue: Int) -> [BusDelivery] {
        entries.map { entry in
            if let message = Self.decode(entry.fields["m"]) {
                return BusDelivery(message: message, entryID: entry.id, queue: queue)
            }
            let placeholder = BusMessage(id: "malformed-\(topic)-\(queue)-\(entry.id)", topic: topic, body: Array(entry.fields["m"]?.readableBytesView ?? ByteBuffer().readableBytesView),
                                         queue: queue, bornAtMS: nowMilliseconds())
            return BusDelivery(message: placeholder, entryID: entry.id, queue: queue,
                               malformed: "entry \(entry.id) of \(topic)/\(queue) has no decodable message (fields: \(entry.fields.keys.sorted()))")
        }
    }

    private func blockingConnection(_ consumer: String) async throws -> RedisConnection? {
        guard let configuration = blockingConfiguration else { return nil }
        if let existing = blocking.withLock({ $0[consumer] }), existing.isActive { return existing }
        // On the caller's event loop when it runs on one of the group's (`any()` prefers it).
        let connection = try await RedisConnection.connect(configuration, on: configuration.eventLoopGroup.any())
        blocking.withLock { $0[consumer] = connection }
        return connection
    }

    public func read(group: String, consumer: String, topic: String, queues: [Int], count: Int, block: Duration) async throws(BusError) -> [BusDelivery] {
        guard !queues.isEmpty else { return [] }
        do {
            if block > .zero, let connection = try await blockingConnection("\(consumer)") {
                let result = try await connection.streamReadGroup(group: group, consumer: consumer,
                                                                  streams: queues.map { (Self.stream(topic, $0), ">") }, count: count, block: block)
                var out: [BusDelivery] = []
                for q in queues { out += deliveries(result[Self.stream(topic, q)] ?? [], topic: topic, queue: q) }
                return out
            }
            // Without a dedicated connection (Redis Cluster): one queue per command, then a short pause.
            var out: [BusDelivery] = []
            for q in queues where out.count < count {
                let result = try await redis.streamReadGroup(group: group, consumer: consumer, streams: [(Self.stream(topic, q), ">")], count: count - out.count)
                out += deliveries(result[Self.stream(topic, q)] ?? [], topic: topic, queue: q)
            }
            if out.isEmpty, block > .zero { try await Task.sleep(for: min(block, .milliseconds(20))) }
            return out
        } catch let error as BusError {
            throw error
        } catch {
            throw BusError(.engine, "XREADGROUP on \(topic) failed", underlying: error)
        }
    }

    /// On the consumer's blocking connection the XACKs and the XREADGROUP go out in one write.
    public func read(acknowledging acks: [BusAck], group: String, consumer: String, topic: String, queues: [Int], count: Int,
                     block: Duration) async throws(BusError) -> [BusDelivery] {
        guard !acks.isEmpty, !queues.isEmpty, block > .zero else {
            return try await acknowledgeThenRead(acks, group: group, consumer: consumer, topic: topic, queues: queues, count: count, block: block)
        }
        do {
            guard let connection = try await blockingConnection(consumer) else {
                return try await acknowledgeThenRead(acks, group: group, consumer: consumer, topic: topic, queues: queues, count: count, block: block)
            }
            let commands: [[any RESPArgument]] = acks.map { ["XACK", Self.stream($0.topic, $0.queue), $0.group] + $0.entryIDs }
                + [RedisStreamRead.command(group: group, consumer: consumer, streams: queues.map { (Self.stream(topic, $0), ">") }, count: count, block: block)]
            let replies = try await connection.pipeline(commands, timeout: block + .seconds(5))
            if let failed = replies.dropLast().first(where: \.isError) {
                throw BusError(.engine, "XACK failed: \(failed.string ?? "error reply"); those messages will be delivered again")
            }
            let result = try RedisStreamRead.entries(replies[replies.count - 1])
            var out: [BusDelivery] = []
            for q in queues { out += deliveries(result[Self.stream(topic, q)] ?? [], topic: topic, queue: q) }
            return out
        } catch let error as BusError {
            throw error
        } catch {
            throw BusError(.engine, "XACK + XREADGROUP on \(topic) failed", underlying: error)
        }
    }

    public func ack(group: String, topic: String, queue: Int, entryIDs: [String]) async throws(BusError) {
        _ = try await send(["XACK", Self.stream(topic, queue), group] + entryIDs)
    }

    public func reclaim(group: String, consumer: String, topic: String, queue: Int, minIdle: Duration, count: Int) async throws(BusError) -> [BusDelivery] {
        do {
            let (_, entries) = try await redis.streamAutoClaim(Self.stream(topic, queue), group: group, consumer: consumer, minIdle: minIdle, count: count)
            return deliveries(entries, topic: topic, queue: queue)
        } catch {
            throw BusError(.engine, "XAUTOCLAIM on \(topic)/\(queue) failed", underlying: error)
        }
    }

    // MARK: Lookup and admin

    /// Looks the id up in every queue's index, then — for an id carrying its time — in every stream around
    /// that time (an admin operation: one GET per queue, then a range read per queue).
    public func lookup(id: String) async throws(BusError) -> BusMessage? {
        var queues: [(String, Int)] = []
        for topic in try await topics() {
            for q in 0..<(try await queueCount(topic) ?? 0) { queues.append((topic, q)) }
        }
        for (topic, q) in queues {
            if let entry = try await send(["GET", "\(Self.stream(topic, q)):id:\(id)"]).string,
                let message = try await entryMessage(topic: topic, queue: q, entryID: entry) {
                return message
            }
        }
        guard let ms = BusProducer.idMilliseconds(id) else { return nil }
        for (topic, q) in queues {
            if let message = try await search(id: id, aroundMS: ms, topic: topic, queue: q) { return message }
        }
        return nil
    }

    /// One GET per queue for an indexed message; a range read around its time for an unindexed one.
    public func contains(id: String, topic: String, queues: [Int]) async throws(BusError) -> Bool {
        for q in queues where try await send(["GET", "\(Self.stream(topic, q)):id:\(id)"]).string != nil { return true }
        guard let ms = BusProducer.idMilliseconds(id) else { return false }
        for q in queues where try await search(id: id, aroundMS: ms, topic: topic, queue: q) != nil { return true }
        return false
    }

    /// The entry of `queue` with message `id`, searched among the entries appended around `ms`.
    private func search(id: String, aroundMS ms: Int64, topic: String, queue q: Int) async throws(BusError) -> BusMessage? {
        let wanted = Array(id.utf8)
        var start = "\(max(0, ms - Self.lookupWindowMS))"
        let end = "\(ms + Self.lookupWindowMS)"
        while true {
            let reply = try await send(["XRANGE", Self.stream(topic, q), start, end, "COUNT", 500])
            let items = reply.array ?? []
            for item in items {
                guard let parts = item.array, parts.count == 2, let fields = parts[1].array else { continue }
                for index in stride(from: 0, to: fields.count - 1, by: 2) where fields[index].string == "m" {
                    guard let buffer = fields[index + 1].buffer, BusMessageCodec.hasID(wanted, buffer.readableBytesView) else { continue }
                    return Self.decode(buffer)
                }
            }
            // The next page starts after the last entry of this one.
            guard items.count == 500, let last = items.last?.array?.first?.string else { return nil }
            start = "(" + last
        }
    }

    private func entryMessage(topic: String, queue: Int, entryID: String) async throws(BusError) -> BusMessage? {
        let reply = try await send(["XRANGE", Self.stream(topic, queue), entryID, entryID])
        guard let first = reply.array?.first, let parts = first.array, parts.count == 2, let fields = parts[1].array else { return nil }
        for index in stride(from: 0, to: fields.count - 1, by: 2) where fields[index].string == "m" {
            return Self.decode(fields[index + 1].buffer)
        }
        return nil
    }

    public func lookup(topic: String, key: String) async throws(BusError) -> [BusMessage] {
        var out: [BusMessage] = []
        for q in 0..<(try await queueCount(topic) ?? 0) {
            let ids = (try await send(["LRANGE", "\(Self.stream(topic, q)):key:\(key)", 0, -1]).array ?? []).compactMap(\.string)
            for id in ids {
                if let entry = try await send(["GET", "\(Self.stream(topic, q)):id:\(id)"]).string,
                    let message = try await entryMessage(topic: topic, queue: q, entryID: entry) {
                    out.append(message)
                }
            }
        }
        return out.sorted { $0.bornAtMS < $1.bornAtMS }
    }

    public func lag(group: String, topic: String) async throws(BusError) -> [Int: Int] {
        var out: [Int: Int] = [:]
        for q in 0..<(try await queueCount(topic) ?? 0) {
            do {
                let groups = try await redis.streamGroups(Self.stream(topic, q))
                guard let info = groups.first(where: { $0["name"]?.string == group }) else { out[q] = try await redis.streamLength(Self.stream(topic, q)); continue }
                out[q] = Int((info["lag"]?.int ?? 0) + (info["pending"]?.int ?? 0))
            } catch {
                throw BusError(.engine, "XINFO GROUPS on \(topic)/\(q) failed", underlying: error)
            }
        }
        return out
    }

    public func messages(topic: String, limit: Int) async throws(BusError) -> [BusDelivery] {
        var out: [BusDelivery] = []
        for q in 0..<(try await queueCount(topic) ?? 1) {
            let reply = try await send(["XRANGE", Self.stream(topic, q), "-", "+", "COUNT", min(limit, 10_000)])
            for item in reply.array ?? [] {
                guard let parts = item.array, parts.count == 2, let id = parts[0].string else { continue }
                var fields: [String: ByteBuffer] = [:]
                let values = parts[1].array ?? []
                for i in stride(from: 0, to: values.count - 1, by: 2) { if let k = values[i].string, let v = values[i + 1].buffer { fields[k] = v } }
                if let message = Self.decode(fields["m"]) { out.append(BusDelivery(message: message, entryID: id, queue: q)) }
            }
        }
        return Array(out.sorted { $0.message.bornAtMS < $1.message.bornAtMS }.prefix(limit))
    }

    public func delete(topic: String, queue: Int, entryID: String) async throws(BusError) {
        _ = try await send(["XDEL", Self.stream(topic, queue), entryID])
    }

    // MARK: Leases and members

    static let renew = RedisScript("""
        local current = redis.call('GET', KEYS[1])
        if current == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
        if not current then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
        return 0
        """)
    static let release = RedisScript("""
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """)

    public func lease(_ name: String, owner: String, ttl: Duration) async throws(BusError) -> Bool {
        do {
            return try await redis.evaluate(Self.renew, keys: ["bus:lease:\(name)"], arguments: [owner, max(1, ttl.milliseconds)]).int == 1
        } catch {
            throw BusError(.engine, "lease \(name) failed", underlying: error)
        }
    }

    public func releaseLease(_ name: String, owner: String) async throws(BusError) {
        do {
            _ = try await redis.evaluate(Self.release, keys: ["bus:lease:\(name)"], arguments: [owner])
        } catch {
            throw BusError(.engine, "releasing lease \(name) failed", underlying: error)
        }
    }

    public func heartbeat(group: String, member: String, ttl: Duration) async throws(BusError) -> [String] {
        let now = nowMilliseconds()
        let key = "bus:members:{\(group)}"
        _ = try await send(["ZADD", key, now + ttl.milliseconds, member])
        _ = try await send(["ZREMRANGEBYSCORE", key, "-inf", now])
        return (try await send(["ZRANGE", key, 0, -1]).array ?? []).compactMap(\.string).sorted()
    }

    public func leave(group: String, member: String) async throws(BusError) {
        _ = try await send(["ZREM", "bus:members:{\(group)}", member])
    }

    /// Closes the dedicated blocking-read connections.
    public func close() async {
        let connections = blocking.withLock { state -> [RedisConnection] in
            defer { state.removeAll() }
            return Array(state.values)
        }
        for connection in connections { await connection.close() }
    }
}
