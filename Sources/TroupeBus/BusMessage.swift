import Foundation
public import TroupeCore

/// A message as consumers see it. `id` is stable across retries and redeliveries: deduplicate on it.
public struct BusMessage: Sendable, Hashable, Codable {
    /// The message id (sortable, unique per bus): the same across retries and redeliveries.
    public var id: String
    /// The topic it was sent to (a retried message's retry topic; see ``originalTopic``).
    public var topic: String
    /// The tag consumers filter on (RocketMQ's single tag), if any.
    public var tag: String?
    /// Business keys to find it by (``Bus/messages(topic:key:)``), as RocketMQ's `KEYS`.
    public var keys: [String]
    /// Free-form properties set by the sender.
    public var properties: [String: String]
    /// The payload, as the sender encoded it.
    public var body: [UInt8]
    /// Messages with the same sharding key go to the same queue, in order.
    public var shardingKey: String?
    /// The queue of the topic it is in.
    public var queue: Int
    /// When it was sent, in milliseconds since 1970.
    public var bornAtMS: Int64
    /// How many times the message was retried after a failed consumption.
    public var reconsumeTimes: Int
    /// The producer group that sent it (transactional messages are checked back through it).
    public var producerGroup: String?
    /// For retried messages: the topic the message was first sent to.
    public var originalTopic: String?

    /// A message as an engine stores it (engines and tests; senders use ``OutgoingMessage``).
    public init(id: String, topic: String, tag: String? = nil, keys: [String] = [], properties: [String: String] = [:], body: [UInt8],
                shardingKey: String? = nil, queue: Int = 0, bornAtMS: Int64, reconsumeTimes: Int = 0, producerGroup: String? = nil,
                originalTopic: String? = nil) {
        self.id = id
        self.topic = topic
        self.tag = tag
        self.keys = keys
        self.properties = properties
        self.body = body
        self.shardingKey = shardingKey
        self.queue = queue
        self.bornAtMS = bornAtMS
        self.reconsumeTimes = reconsumeTimes
        self.producerGroup = producerGroup
        self.originalTopic = originalTopic
    }

    /// The body decoded as JSON.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(body))
        } catch {
            throw BusError(.invalidMessage, "message \(id) body is not a \(T.self): \(error)")
        }
    }

    /// The topic consumers subscribed to (the original one for retried messages).
    public var subscribedTopic: String { originalTopic ?? topic }
}

/// When a message should be delivered.
public enum BusDelay: Sendable, Hashable {
    /// RocketMQ's delay levels 1…18: `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h`.
    case level(Int)
    case after(Duration)
    /// Milliseconds since the epoch.
    case at(Int64)

    /// The durations of delay levels 1…18.
    public static let levels: [Duration] = [
        .seconds(1), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(180), .seconds(240),
        .seconds(300), .seconds(360), .seconds(420), .seconds(480), .seconds(540), .seconds(600), .seconds(1200), .seconds(1800),
        .seconds(3600), .seconds(7200),
    ]

    /// When a message sent at `now` (milliseconds since 1970) is due, in milliseconds since 1970.
    public func deliverAtMS(now: Int64) throws(BusError) -> Int64 {
        switch self {
        case .level(let level):
            guard BusDelay.levels.indices.contains(level - 1) else { throw BusError(.invalidMessage, "delay level \(level) is not in 1…18") }
            return now + BusDelay.levels[level - 1].milliseconds
        case .after(let duration):
            guard duration >= .zero else { throw BusError(.invalidMessage, "negative delay") }
            return now + duration.milliseconds
        case .at(let ms):
            return ms
        }
    }
}

/// A message to send.
public struct OutgoingMessage: Sendable {
    /// The topic to send to.
    public var topic: String
    /// The tag consumers filter on, if any.
    public var tag: String?
    /// Business keys to find the message by later.
    public var keys: [String]
    /// Free-form properties delivered with the message.
    public var properties: [String: String]
    /// The payload.
    public var body: [UInt8]
    /// Messages with the same sharding key go to the same queue, in the order sent (orderly consumption).
    public var shardingKey: String?
    /// When to deliver it (nil: at once).
    public var delay: BusDelay?
    /// A message id chosen by the sender (an outbox republishing an event keeps its id); nil: a new one.
    public var id: String?

    /// A message for `topic` with `body`; see each property for the rest.
    public init(topic: String, tag: String? = nil, keys: [String] = [], properties: [String: String] = [:], body: [UInt8],
                shardingKey: String? = nil, delay: BusDelay? = nil, id: String? = nil) {
        self.id = id
        self.topic = topic
        self.tag = tag
        self.keys = keys
        self.properties = properties
        self.body = body
        self.shardingKey = shardingKey
        self.delay = delay
    }

    /// A message whose body is `value` as JSON.
    public init<T: Encodable>(topic: String, tag: String? = nil, keys: [String] = [], json value: T, shardingKey: String? = nil,
                              delay: BusDelay? = nil) throws {
        let data: Data
        do {
            data = try JSONEncoder().encode(value)
        } catch {
            throw BusError(.invalidMessage, "cannot encode \(T.self): \(error)")
        }
        self.init(topic: topic, tag: tag, keys: keys, body: [UInt8](data), shardingKey: shardingKey, delay: delay)
    }
}

/// The one error type of TroupeBus.
public struct BusError: Error, Sendable, CustomStringConvertible {
    /// What kind of problem a ``BusError`` reports.
    public enum Kind: Sendable, Hashable {
        case invalidMessage, invalidConfiguration, engine, timeout, closed
    }

    /// What kind of problem this is.
    public var kind: Kind
    /// What happened, in one line.
    public var message: String
    /// The error underneath (the engine's), if any.
    public var underlying: (any Error)?

    /// An error of `kind` saying `message`, with its `underlying` cause.
    public init(_ kind: Kind, _ message: String, underlying: (any Error)? = nil) {
        self.kind = kind
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "BusError.\(kind): \(message)\(underlying.map { " — \($0)" } ?? "")" }
}

extension BusError: TransientError {
    /// A timeout can pass, and so can an engine failure whose cause can (Redis restarting, a connection
    /// reset): a request that failed on one is answered 503 with `Retry-After`, not 500.
    public var isTransient: Bool {
        switch kind {
        case .timeout: return true
        case .engine: return underlying.map(TroupeCore.isTransient) ?? false
        case .invalidMessage, .invalidConfiguration, .closed: return false
        }
    }
}

/// A tag expression: `*`, `A`, or `A || B || C`.
public struct TagExpression: Sendable, Hashable, CustomStringConvertible {
    /// The tags accepted; nil: every message, tagged or not.
    public let tags: Set<String>?

    /// Parses `*` (every message), `A` or `A
    /// 
    /// B
    /// 
    /// C` (messages with one of these tags).
    public init(_ text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty || trimmed == "*" {
            tags = nil
        } else {
            tags = Set(trimmed.components(separatedBy: "||").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        }
    }

    /// Every message (`*`).
    public static let all = TagExpression("*")

    /// Whether a message with `tag` passes the expression (an untagged one only passes `*`).
    public func matches(_ tag: String?) -> Bool {
        guard let tags else { return true }
        guard let tag else { return false }
        return tags.contains(tag)
    }

    public var description: String { tags.map { $0.sorted().joined(separator: " || ") } ?? "*" }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// The wall clock, in milliseconds since 1970: what due times on the bus are measured in.
public func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// Stable hash of a sharding key (FNV-1a, so every process maps a key to the same queue).
func shardHash(_ key: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in key.utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    return hash
}
