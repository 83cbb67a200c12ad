import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
import Synchronization
public import TroupeCore

/// Settings shared by producers and consumers of one bus.
public struct BusConfiguration: Sendable {
    /// Queues of a topic created on first use.
    public var defaultQueues = 4
    /// The largest body accepted at send.
    public var maxBodyBytes = 4 * 1024 * 1024
    /// Retries before a message goes to `%DLQ%{group}` (RocketMQ's default: 16).
    public var maxReconsumeTimes = 16
    /// Delay before retry n (1-based) of a concurrent consumer's message (through the retry topic, while the
    /// queue goes on). RocketMQ's: 10s 30s 1m 2m 3m … 2h (delay levels 3…18).
    public var retrySchedule: [Duration] = Array(BusDelay.levels.dropFirst(2))
    /// An orderly consumer retries in place — its queue waits — first after this long, doubling up to
    /// `orderlySuspendMaximum` (RocketMQ suspends an orderly queue 1 s per failure). The retry schedule's
    /// minutes would hold every later message of the queue that long after a brief outage.
    public var orderlySuspend: Duration = .seconds(1)
    /// The longest an orderly queue waits between retries in place of a failing message.
    public var orderlySuspendMaximum: Duration = .seconds(10)
    /// After a read that found messages but fewer than `pullBatchSize`, a concurrent consumer waits this long
    /// before its next read, so that read brings a batch: under load each member then makes a fraction of the
    /// round trips (and wakes the server and itself as rarely), at the price of at most this much added
    /// latency. A read that finds nothing long-polls as always, so an idle consumer still answers the first
    /// message at once. Zero reads again immediately (lowest latency, most round trips). In spirit RocketMQ's
    /// `pullInterval` and Kafka's `fetch.max.wait.ms`; `troupe bench bus` shows the trade.
    public var pullBatchWait: Duration = .milliseconds(1)
    /// Messages a concurrent consumer asks for per read at most (RocketMQ's default `pullBatchSize`: 32).
    public var pullBatchSize = 32
    /// An unacknowledged message is given to another member after this long.
    public var visibilityTimeout: Duration = .seconds(30)
    /// Transaction check-back: first after this age, then every `checkInterval`, at most `maxChecks` times.
    public var firstCheckAfter: Duration = .seconds(6)
    /// How often an undecided half message is checked back after the first check.
    public var checkInterval: Duration = .seconds(5)
    /// Check-backs of one half message before it is rolled back.
    public var maxChecks = 15
    /// How often delayed and retried messages that are due are moved into their queues.
    public var promoteInterval: Duration = .milliseconds(50)
    /// How often each consumer records its group's backlog per queue (`troupe_bus_lag`); zero turns it off.
    public var lagReportInterval: Duration = .seconds(10)
    /// Lease on a queue for orderly consumption, renewed every third of it.
    public var queueLease: Duration = .seconds(6)
    /// Where the bus, its producers and consumers log.
    public var logger = Logger(label: "troupe.bus")
    /// The bus's time: delays, retries, leases, waits and message times (the system clock; a simulated or
    /// manual clock in tests and the deterministic simulation).
    public var clock: any RuntimeClock = SystemRuntimeClock()
    /// Where message ids start their sequence and consumers' names their suffix (the system's generator; a
    /// seeded one in the simulation).
    public var random: any RandomSource = SystemRandomSource()
    /// How this process's consumers name themselves to their group, before a random suffix (nil: the process id).
    public var instanceName: String?

    /// RocketMQ's defaults where it has one (see each setting).
    public init() {}

    /// The delay before retry `attempt` (1-based) of a concurrent consumer's message: ``retrySchedule``'s entry,
    /// the last one for attempts past its end.
    public func retryDelay(after attempt: Int) -> Duration {
        guard !retrySchedule.isEmpty else { return .seconds(10) }
        return retrySchedule[min(max(attempt, 1), retrySchedule.count) - 1]
    }

    /// How long an orderly queue waits before retry n (1-based) of its message in place.
    public func orderlyRetryDelay(after attempt: Int) -> Duration {
        var delay = orderlySuspend
        for _ in 1..<max(attempt, 1) where delay < orderlySuspendMaximum { delay = delay * 2 }
        return min(delay, orderlySuspendMaximum)
    }

    func validate() throws(BusError) {
        guard defaultQueues > 0 else { throw BusError(.invalidConfiguration, "defaultQueues must be at least 1") }
        guard maxBodyBytes > 0 else { throw BusError(.invalidConfiguration, "maxBodyBytes must be positive") }
        guard maxReconsumeTimes >= 0 else { throw BusError(.invalidConfiguration, "maxReconsumeTimes must not be negative") }
        guard pullBatchWait >= .zero, pullBatchWait <= .seconds(1) else { throw BusError(.invalidConfiguration, "pullBatchWait must be between 0 and 1 s") }
        guard pullBatchSize > 0 else { throw BusError(.invalidConfiguration, "pullBatchSize must be at least 1") }
        guard lagReportInterval >= .zero else { throw BusError(.invalidConfiguration, "lagReportInterval must not be negative") }
        guard visibilityTimeout > .zero, queueLease > .zero else { throw BusError(.invalidConfiguration, "timeouts must be positive") }
        guard orderlySuspend > .zero, orderlySuspendMaximum >= orderlySuspend else {
            throw BusError(.invalidConfiguration, "orderlySuspend must be positive and at most orderlySuspendMaximum")
        }
    }
}

/// A bus on an engine: the entry point for producers, consumers and admin. A `Service`: `run()` moves
/// due delayed messages and retries into their queues (any number of processes may do so at once).
public final class Bus: Service, Sendable {
    /// `troupe_bus_produced_total` per topic (normal and delayed), shared by every producer of this bus.
    private let produced = SeriesCache<ProducedCounters>()

    struct ProducedCounters: Sendable {
        let normal: Counter
        let delayed: Counter
    }

    func producedCounters(_ topic: String) -> ProducedCounters {
        produced(topic) { topic in
            ProducedCounters(normal: Counter(label: MetricFamilies.busProduced.name, dimensions: [("topic", topic), ("kind", "normal")]),
                             delayed: Counter(label: MetricFamilies.busProduced.name, dimensions: [("topic", topic), ("kind", "delayed")]))
        }
    }
    /// The engine that stores topics, queues, groups and leases.
    public let engine: any BusEngine
    /// One-way sends in flight: they belong to the bus and end with its ``run()``.
    let background: BackgroundTasks
    /// The settings the bus was made with (validated).
    public let configuration: BusConfiguration
    private let known = Guarded<[String: Int]>([:])
    /// The ids of the messages this bus's producers make (see ``MessageIDs``).
    let ids: MessageIDs

    /// A bus on `engine`.
    /// - Throws: ``BusError`` with kind `invalidConfiguration` when a setting cannot work (named in the message).
    public init(engine: any BusEngine, configuration: BusConfiguration = BusConfiguration()) throws(BusError) {
        try configuration.validate()
        self.engine = engine
        self.configuration = configuration
        self.ids = MessageIDs(seed: configuration.random.next(), clock: configuration.clock)
        self.background = BackgroundTasks(clock: configuration.clock)
    }

    /// The bus's clock (``BusConfiguration/clock``).
    var clock: any RuntimeClock { configuration.clock }

    /// The topic a group's messages go to after their last retry (`%DLQ%<group>`, as RocketMQ names it).
    public static func deadLetterTopic(group: String) -> String { "%DLQ%\(group)" }
    /// The topic a group's failed messages wait in for their retry (`%RETRY%<group>`).
    public static func retryTopic(group: String) -> String { "%RETRY%\(group)" }

    /// A producer for `group` (a transactional producer's group is the one its checker is registered for).
    public func producer(group: String) -> BusProducer { BusProducer(bus: self, group: group) }

    /// Creates a topic with `queues` queues (idempotent).
    public func createTopic(_ topic: String, queues: Int) async throws(BusError) {
        try Self.validateTopic(topic)
        try await engine.createTopic(topic, queues: queues)
        known.withLock { $0[topic] = nil }
    }

    static func validateTopic(_ topic: String) throws(BusError) {
        let ascii = topic.utf8.allSatisfy { $0 < 0x80 }
        let valid = ascii
            ? (1...200).contains(topic.utf8.count) && !topic.utf8.contains { $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: "}") || $0 == 0x20 || (0x09...0x0D).contains($0) }
            : !topic.isEmpty && topic.count <= 200 && !topic.contains { $0 == "{" || $0 == "}" || $0.isWhitespace }
        guard valid else {
            throw BusError(.invalidConfiguration, "topic \"\(topic)\" must be 1–200 characters without braces or spaces")
        }
    }

    /// The topic's queue count, creating it with the default when missing; the name is validated on first use.
    func queues(of topic: String) async throws(BusError) -> Int {
        if let count = known.withLock({ $0[topic] }) { return count }
        try Self.validateTopic(topic)
        var count = try await engine.queueCount(topic)
        if count == nil {
            try await engine.createTopic(topic, queues: configuration.defaultQueues)
            count = try await engine.queueCount(topic)
        }
        let resolved = count ?? configuration.defaultQueues
        known.withLock { $0[topic] = resolved }
        return resolved
    }

    // MARK: Admin

    /// The message with id `id` while it is retained, wherever it is.
    public func message(id: String) async throws(BusError) -> BusMessage? { try await engine.lookup(id: id) }
    /// The retained messages of `topic` carrying business key `key`, oldest first (RocketMQ's query by key).
    public func messages(topic: String, key: String) async throws(BusError) -> [BusMessage] { try await engine.lookup(topic: topic, key: key) }
    /// Backlog per queue of `group` on `topic`.
    public func lag(group: String, topic: String) async throws(BusError) -> [Int: Int] { try await engine.lag(group: group, topic: topic) }

    /// The dead letters of a consumer group.
    public func deadLetters(group: String, limit: Int = 100) async throws(BusError) -> [BusMessage] {
        try await engine.messages(topic: Self.deadLetterTopic(group: group), limit: limit).map(\.message)
    }

    /// Sends a dead letter back to its original topic (retry count reset) and removes it from the DLQ.
    public func resendDeadLetter(group: String, id: String) async throws(BusError) -> Bool {
        let dlq = Self.deadLetterTopic(group: group)
        guard let entry = try await engine.messages(topic: dlq, limit: .max).first(where: { $0.message.id == id }) else { return false }
        var message = entry.message
        message.topic = message.originalTopic ?? message.properties["DLQ_ORIGIN_TOPIC"] ?? message.topic
        message.originalTopic = nil
        message.reconsumeTimes = 0
        message.queue = message.queue % (try await queues(of: message.topic))
        _ = try await engine.append(message)
        try await engine.delete(topic: dlq, queue: entry.queue, entryID: entry.entryID)
        return true
    }

    // MARK: Service

    public func run() async throws {
        await promoteDueMessages()
        await background.stop()
    }

    /// Moves due delayed messages into their topics until graceful shutdown or cancellation.
    private func promoteDueMessages() async {
        await withGracefulShutdownHandler {
            var failures = LogThrottle()
            while !Task.isCancelled, !Task.isShuttingDownGracefully {
                do {
                    let started = clock.now
                    _ = try await engine.promoteDue(nowMS: clock.wallClockMilliseconds)
                    let took = clock.now - started
                    if took > .milliseconds(50) {
                        configuration.logger.debug("moving due messages took \(took)", metadata: ["bus.engine": "\(engine.engineName)"])
                    }
                    failures.reset()
                } catch {
                    if let held = failures.admit(now: clock.now) {
                        configuration.logger.warning("moving due messages failed; retrying", metadata: ["bus.error": "\(error)", "log.suppressed": "\(held)"])
                    }
                }
                try? await clock.sleep(for: configuration.promoteInterval)
            }
        } onGracefulShutdown: {}
    }
}
