/// One delivery of a message to a consumer group member.
public struct BusDelivery: Sendable {
    /// The message delivered.
    public var message: BusMessage
    /// The engine's id of the entry in its queue (acknowledge with it).
    public var entryID: String
    /// The queue of the topic it was read from.
    public var queue: Int
    /// Set when the stored entry could not be decoded: it goes to the dead-letter queue with this reason.
    public var malformed: String?
}

/// Entries of one queue a consumer group has finished with.
public struct BusAck: Sendable, Hashable {
    /// The consumer group that acknowledges.
    public var group: String
    /// The topic of the entries.
    public var topic: String
    /// The queue of the topic.
    public var queue: Int
    /// The engine's ids of the entries (``BusDelivery/entryID``).
    public var entryIDs: [String]

    /// Entries `entryIDs` of `queue` of `topic`, finished by `group`.
    public init(group: String, topic: String, queue: Int, entryIDs: [String]) {
        self.group = group
        self.topic = topic
        self.queue = queue
        self.entryIDs = entryIDs
    }
}

/// The storage primitives a bus engine provides. The semantics (tags, retries, DLQ, transactions,
/// ordering, broadcasting) live above them, identical for every engine.
public protocol BusEngine: Sendable {
    /// A short name for logs and metrics (`memory`, `redis`).
    var engineName: String { get }
    /// Where work issuing engine commands back to back runs cheapest — a consumer's loop, a producer
    /// sending in a loop (for a network engine: an event loop of its connections, so a command, its reply
    /// and the code after it stay on one thread); nil for the default executor. Each call may return
    /// another of the engine's executors (round robin).
    var preferredExecutor: (any TaskExecutor)? { get }

    /// Creates `topic` with `queues` queues (idempotent; the first creation fixes the count).
    func createTopic(_ topic: String, queues: Int) async throws(BusError)
    /// The topic's queue count, or nil when it does not exist.
    func queueCount(_ topic: String) async throws(BusError) -> Int?
    /// Every topic, sorted.
    func topics() async throws(BusError) -> [String]

    /// Stores `message` in its queue for immediate delivery; returns the entry id.
    func append(_ message: BusMessage) async throws(BusError) -> String
    /// Stores `message` to be appended at `deliverAtMS`.
    func schedule(_ message: BusMessage, deliverAtMS: Int64) async throws(BusError)
    /// Appends every scheduled message that is due; returns how many.
    func promoteDue(nowMS: Int64) async throws(BusError) -> Int

    /// Transactional half messages, kept per producer group until resolved.
    func storeHalf(_ message: BusMessage) async throws(BusError)
    /// Commits (appends) or rolls back a half message; false when it was already resolved.
    func resolveHalf(producerGroup: String, id: String, commit: Bool) async throws(BusError) -> Bool
    /// Half messages older than `olderThanMS`, with how often each was checked; increments that count.
    func halfsToCheck(producerGroup: String, olderThanMS: Int64, limit: Int) async throws(BusError) -> [(BusMessage, Int)]

    /// Creates the consumer group on the topic's queues (at the start, or at the end for new messages only).
    func ensureGroup(topic: String, group: String, fromEnd: Bool) async throws(BusError)
    /// New entries of `queues` for `consumer` of `group`, waiting up to `block` when there are none.
    func read(group: String, consumer: String, topic: String, queues: [Int], count: Int, block: Duration) async throws(BusError) -> [BusDelivery]
    /// Marks entries of `queue` as handled by `group`: they are not delivered to it again.
    func ack(group: String, topic: String, queue: Int, entryIDs: [String]) async throws(BusError)
    /// Acknowledges `acks`, then reads like `read` — in one round trip where the engine can (a consumer's
    /// acknowledgements travel with its next read).
    func read(acknowledging acks: [BusAck], group: String, consumer: String, topic: String, queues: [Int], count: Int,
              block: Duration) async throws(BusError) -> [BusDelivery]
    /// Entries delivered to another member and unacknowledged for `minIdle`, now given to `consumer`.
    func reclaim(group: String, consumer: String, topic: String, queue: Int, minIdle: Duration, count: Int) async throws(BusError) -> [BusDelivery]

    /// The message with `id` while it is retained.
    func lookup(id: String) async throws(BusError) -> BusMessage?
    /// Whether a message with `id` is stored in one of `queues` of `topic` (appended within the retention,
    /// consumed or not) — one look per queue, for a sender about to send again what it may have sent before.
    func contains(id: String, topic: String, queues: [Int]) async throws(BusError) -> Bool
    /// The retained messages of `topic` carrying business key `key`, oldest first.
    func lookup(topic: String, key: String) async throws(BusError) -> [BusMessage]
    /// Entries not yet delivered plus delivered-but-unacknowledged, per queue.
    func lag(group: String, topic: String) async throws(BusError) -> [Int: Int]
    /// Every message in `topic`'s queues (dead-letter inspection), oldest first.
    func messages(topic: String, limit: Int) async throws(BusError) -> [BusDelivery]
    /// Removes one entry (a dead letter handled by an operator).
    func delete(topic: String, queue: Int, entryID: String) async throws(BusError)

    /// Acquires or renews a lease held by `owner`; false when someone else holds it.
    func lease(_ name: String, owner: String, ttl: Duration) async throws(BusError) -> Bool
    /// Releases the lease if `owner` holds it.
    func releaseLease(_ name: String, owner: String) async throws(BusError)
    /// Records `member` as alive in `group` and returns the live members (sorted).
    func heartbeat(group: String, member: String, ttl: Duration) async throws(BusError) -> [String]
    /// Removes `member` from `group` at once (a graceful stop), so the others take its queues without waiting.
    func leave(group: String, member: String) async throws(BusError)
}

extension BusEngine {
    public var preferredExecutor: (any TaskExecutor)? { nil }

    public func read(acknowledging acks: [BusAck], group: String, consumer: String, topic: String, queues: [Int], count: Int,
                     block: Duration) async throws(BusError) -> [BusDelivery] {
        try await acknowledgeThenRead(acks, group: group, consumer: consumer, topic: topic, queues: queues, count: count, block: block)
    }

    /// `read(acknowledging:…)` in two steps: the acknowledgements, then the read.
    func acknowledgeThenRead(_ acks: [BusAck], group: String, consumer: String, topic: String, queues: [Int], count: Int,
                             block: Duration) async throws(BusError) -> [BusDelivery] {
        for ack in acks { try await self.ack(group: ack.group, topic: ack.topic, queue: ack.queue, entryIDs: ack.entryIDs) }
        return try await read(group: group, consumer: consumer, topic: topic, queues: queues, count: count, block: block)
    }
}
