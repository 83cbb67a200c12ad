import Foundation
import Instrumentation
import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceContextModule
public import ServiceLifecycle
import Synchronization
import Tracing
import TroupeCore
import TroupeNIO

/// What a listener says about a message.
public enum ConsumeResult: Sendable {
    case success
    /// Deliver again later (concurrent: by the retry schedule; orderly: in place, holding the queue, after
    /// ``BusConfiguration/orderlyRetryDelay(after:)``).
    case retryLater
}

/// How a consumer group shares a topic.
public enum ConsumeMode: Sendable {
    /// Each message to one member of the group.
    case clustering
    /// Each message to every member.
    case broadcasting
}

/// The listener: concurrent (any order, many at once) or orderly (one queue at a time, in order).
public enum BusListener: Sendable {
    case concurrent(@Sendable (BusMessage) async throws -> ConsumeResult)
    case orderly(@Sendable (BusMessage) async throws -> ConsumeResult)
}

/// Where a consumer's read loop and its listeners run.
public enum ConsumerExecution: Sendable {
    /// On the cooperative pool (the default; RocketMQ's consume thread pool in spirit): listeners run
    /// beside the I/O threads, not on them. `troupe bench bus` measured the higher throughput this way.
    case globalPool
    /// On the executor the engine prefers (the Redis engine: one of its client's event loops; the embedded
    /// engine: the default pool). Reads, acknowledgements, listener calls and the pull batch wait then stay
    /// on one thread — no hop to a pool thread and back per read and per message: the lower latency
    /// (p99 ~1.4 ms against ~1.55 ms in `troupe bench bus`), but listeners share the loop with its
    /// connections' I/O, and one that blocks its thread stalls them.
    case engine
    /// On the given executor.
    case executor(any TaskExecutor)
}

/// A member of a consumer group. Add it to a `ServiceGroup` (or call `run()`); it consumes until shutdown.
/// Throwing from the listener counts as `retryLater`.
public final class BusConsumer: Service, Sendable {
    /// The bus it consumes from.
    public let bus: Bus
    /// The consumer group it is a member of.
    public let group: String
    /// The topic it consumes.
    public let topic: String
    /// Which tags it takes; other messages are acknowledged without calling the listener (counted as filtered).
    public let tags: TagExpression
    /// Clustering (each message to one member of the group) or broadcasting (to every member).
    public let mode: ConsumeMode
    /// What each message is given to.
    public let listener: BusListener
    /// This member's name (unique within the group).
    public let instanceName: String
    /// Messages handled at once by a concurrent consumer (an orderly one handles one per queue at a time).
    public let concurrency: Int
    /// Where reads, acknowledgements and listener calls run.
    public let execution: ConsumerExecution
    private let stats = Guarded(Statistics())
    private let consumedCounters = SeriesCache<Counter>()
    private let endToEndTimers = SeriesCache<Timer>()
    private let lagGauges = SeriesCache<Gauge>()
    /// Acknowledgements of the concurrent path, sent in batches by the read loop.
    private let pendingAcks = Locked<[AckTarget: [String]]>([:])
    /// Repeated ack failures (the engine down) are logged once per 30 s, with how many were held back.
    private let ackFailures = SharedLogThrottle()

    struct AckTarget: Hashable {
        var group: String
        var topic: String
        var queue: Int
    }

    /// What a consumer did so far: messages consumed, retried, dead-lettered and filtered, the queues it owns, the backlog.
    public struct Statistics: Sendable {
        /// Messages the listener accepted.
        public var consumed = 0
        /// Messages the listener asked to retry later (or threw on).
        public var retried = 0
        /// Messages moved to the dead-letter topic after their last retry.
        public var deadLettered = 0
        /// Messages acknowledged without calling the listener: their tag is not in ``tags``.
        public var filtered = 0
        /// The queues whose lease this member holds (orderly consumption; empty for a concurrent consumer).
        public var ownedQueues: Set<Int> = []
        /// The group's backlog per queue of the topic (delivered but unacknowledged included), as last
        /// measured for `troupe_bus_lag` (every `BusConfiguration.lagReportInterval`).
        public var lag: [Int: Int] = [:]
    }

    /// A snapshot of what the consumer did so far.
    public var statistics: Statistics { stats.withLock { $0 } }

    /// A member of `group` consuming `topic` (run it in a `ServiceGroup`).
    /// - Parameters:
    /// - tags: the tags to take (default: all).
    /// - mode: clustering (default) or broadcasting.
    /// - listener: called once per message, concurrently (up to `concurrency`) or orderly per queue.
    /// - instanceName: this member's name, unique in the group (default: the bus's instance name or the process id,
    /// with a random suffix).
    /// - concurrency: messages handled at once (default 16).
    /// - execution: where the consumer's work runs (default: the global pool).
    public init(bus: Bus, group: String, topic: String, tags: TagExpression = .all, mode: ConsumeMode = .clustering,
                listener: BusListener, instanceName: String? = nil,
                concurrency: Int = 16, execution: ConsumerExecution = .globalPool) {
        let prefix = bus.configuration.instanceName ?? String(ProcessInfo.processInfo.processIdentifier)
        let instanceName = instanceName ?? "\(prefix)-\(String(bus.configuration.random.next() & 0xFFFF_FFFF, radix: 16))"
        self.bus = bus
        self.group = group
        self.topic = topic
        self.tags = tags
        self.mode = mode
        self.listener = listener
        self.instanceName = instanceName
        self.concurrency = max(1, concurrency)
        self.execution = execution
    }

    var engine: any BusEngine { bus.engine }
    var configuration: BusConfiguration { bus.configuration }
    var logger: Logger { configuration.logger }

    /// The engine group name: per member when broadcasting.
    var engineGroup: String { mode == .broadcasting ? "\(group)%BC%\(instanceName)" : group }

    public func run() async throws {
        let executor: (any TaskExecutor)?
        switch execution {
        case .engine: executor = engine.preferredExecutor
        case .globalPool: executor = nil
        case .executor(let chosen): executor = chosen
        }
        // Child tasks (the listener calls) inherit the preference; orderly queue workers are given it.
        try await withTaskExecutorPreference(executor) { try await consume(executor: executor) }
    }

    private func consume(executor: (any TaskExecutor)?) async throws {
        try Bus.validateTopic(topic)
        let queues = try await bus.queues(of: topic)
        try await engine.ensureGroup(topic: topic, group: engineGroup, fromEnd: mode == .broadcasting)
        let retryTopic = Bus.retryTopic(group: group)
        if mode == .clustering {
            _ = try await bus.queues(of: retryTopic)
            try await engine.ensureGroup(topic: retryTopic, group: group, fromEnd: false)
        }
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                if configuration.lagReportInterval > .zero { tasks.addTask { await self.reportLag() } }
                switch listener {
                case .concurrent(let handler):
                    try await consumeConcurrently(queues: queues, handler: handler)
                case .orderly(let handler):
                    try await consumeOrderly(queues: queues, executor: executor, handler: handler)
                }
                tasks.cancelAll()
            }
        } onGracefulShutdown: {}
        if case .orderly = listener { try? await engine.leave(group: membershipGroup, member: instanceName) }
    }

    private var running: Bool { !Task.isCancelled && !Task.isShuttingDownGracefully }

    /// Records the group's backlog per queue as `troupe_bus_lag` (dimensions group, topic, queue) every
    /// `lagReportInterval` while the member runs. Every member of a group reports the same figures.
    private func reportLag() async {
        let group = self.group, topic = self.topic
        while running {
            do {
                let lag = try await engine.lag(group: engineGroup, topic: topic)
                stats.withLock { $0.lag = lag }
                for (queue, count) in lag {
                    lagGauges("\(queue)") { queue in Gauge(label: MetricFamilies.busLag.name, dimensions: [("group", group), ("topic", topic), ("queue", queue)]) }
                        .record(count)
                }
            } catch {
                logger.debug("measuring the backlog failed", metadata: ["bus.topic": "\(topic)", "bus.error": "\(error)"])
            }
            try? await bus.clock.sleep(for: configuration.lagReportInterval)
        }
    }

    // MARK: Concurrent

    private func consumeConcurrently(queues: Int, handler: @escaping @Sendable (BusMessage) async throws -> ConsumeResult) async throws {
        let retryTopic = Bus.retryTopic(group: group)
        let retryQueues = mode == .clustering ? try await bus.queues(of: retryTopic) : 0
        let clock = bus.clock
        var lastReclaim = clock.now
        var lastRetryRead = clock.now - .seconds(1)
        let slots = AsyncPermits(concurrency)
        var lastRead = 0
        var readFailures = LogThrottle()
        // The pull batch wait is timed by an event loop of the engine when it has one (the current one when
        // running on it): no wake-up of the global executor's timer thread per wait.
        let timerLoop = clock is SystemRuntimeClock
            ? MultiThreadedEventLoopGroup.currentEventLoop ?? (engine.preferredExecutor as? EventLoopTaskExecutor)?.eventLoop : nil
        try await withThrowingDiscardingTaskGroup { tasks in
            while running {
                // A short batch means messages trickle in: let a few more gather before asking again.
                if lastRead > 0, configuration.pullBatchSize > lastRead, configuration.pullBatchWait > .zero {
                    if let timerLoop {
                        try? await sleep(for: configuration.pullBatchWait, timerOn: timerLoop)
                    } else {
                        try? await clock.sleep(for: configuration.pullBatchWait)
                    }
                }
                var deliveries: [(String, BusDelivery)] = []
                do {
                    let room = max(1, min(configuration.pullBatchSize, slots.available))
                    // What was processed since the last read is acknowledged with this one (one round trip).
                    let acks = takeAcks()
                    for d in try await engine.read(acknowledging: acks, group: engineGroup, consumer: instanceName, topic: topic, queues: Array(0..<queues),
                                                   count: room, block: retryQueues > 0 ? .milliseconds(50) : .milliseconds(200)) {
                        deliveries.append((topic, d))
                    }
                    if retryQueues > 0, clock.now - lastRetryRead >= .milliseconds(50) {
                        // At most every 50 ms and never blocking: retries are due seconds apart, and reading them on
                        // every turn doubled the reads per message under load. A message on the main topic arriving
                        // meanwhile would otherwise wait out the block.
                        lastRetryRead = clock.now
                        for d in try await engine.read(group: group, consumer: instanceName, topic: retryTopic, queues: Array(0..<retryQueues),
                                                       count: room, block: .zero) {
                            deliveries.append((retryTopic, d))
                        }
                    }
                    if mode == .clustering, clock.now - lastReclaim > configuration.visibilityTimeout / 2 {
                        lastReclaim = clock.now
                        for (t, n) in [(topic, queues), (retryTopic, retryQueues)] {
                            for q in 0..<n {
                                for d in try await engine.reclaim(group: group, consumer: instanceName, topic: t, queue: q,
                                                                  minIdle: configuration.visibilityTimeout, count: 100) {
                                    deliveries.append((t, d))
                                }
                            }
                        }
                    }
                } catch {
                    if !running { break }
                    // Acknowledgements sent with a failed read may be lost: those messages are delivered again.
                    if let held = readFailures.admit(now: clock.now) {
                        logger.warning("bus read failed; retrying every 200 ms", metadata: [
                            "bus.topic": "\(topic)", "bus.error": "\(error)", "log.suppressed": "\(held)",
                        ])
                    }
                    try? await clock.sleep(for: .milliseconds(200))
                    continue
                }
                readFailures.reset()
                lastRead = deliveries.count
                for (sourceTopic, delivery) in deliveries {
                    // Bounded concurrency: wait (suspended) for a slot. Cancelled while waiting: the messages not
                    // started are not acknowledged, so they are delivered again.
                    guard await slots.acquire() else { break }
                    tasks.addTask {
                        defer { slots.release() }
                        await self.process(delivery, from: sourceTopic, handler: handler, batchAck: true)
                    }
                }
            }
        }
        await flushAcks()
    }

    /// The collected acknowledgements, one batch per queue; the collection is emptied.
    private func takeAcks() -> [BusAck] {
        pendingAcks.withLock { state -> [BusAck] in
            defer { state.removeAll(keepingCapacity: true) }
            return state.map { BusAck(group: $0.key.group, topic: $0.key.topic, queue: $0.key.queue, entryIDs: $0.value) }
        }
    }

    /// Sends the collected acknowledgements (at shutdown), one XACK per queue.
    private func flushAcks() async {
        for ack in takeAcks() {
            do {
                try await engine.ack(group: ack.group, topic: ack.topic, queue: ack.queue, entryIDs: ack.entryIDs)
            } catch {
                logger.warning("ack failed; the messages will be delivered again", metadata: ["bus.topic": "\(ack.topic)", "bus.error": "\(error)"])
            }
        }
    }

    /// Runs the listener on one delivery and settles it: ack, retry (via the retry topic) or dead-letter.
    func process(_ delivery: BusDelivery, from sourceTopic: String, handler: @Sendable (BusMessage) async throws -> ConsumeResult,
                 batchAck: Bool = false) async {
        let message = delivery.message
        let ackGroup = sourceTopic == topic ? engineGroup : group
        func ack() async {
            if batchAck {
                pendingAcks.withLock { $0[AckTarget(group: ackGroup, topic: sourceTopic, queue: delivery.queue), default: []].append(delivery.entryID) }
                return
            }
            do {
                try await engine.ack(group: ackGroup, topic: sourceTopic, queue: delivery.queue, entryIDs: [delivery.entryID])
            } catch {
                if let held = ackFailures.admit(now: bus.clock.now) {
                    logger.warning("ack failed; the message will be delivered again", metadata: [
                        "bus.message.id": "\(message.id)", "bus.error": "\(error)", "log.suppressed": "\(held)",
                    ])
                }
            }
        }
        if await settledWithoutListener(delivery) {
            await ack()
            return
        }
        let result = await invoke(handler, message)
        if result == .success {
            await ack()
            return
        }
        if mode == .broadcasting {
            // Broadcast consumption is not retried (as in RocketMQ): each member owns its copy.
            logger.warning("broadcast message failed and is dropped for this member", metadata: ["bus.message.id": "\(message.id)"])
            await ack()
            return
        }
        if message.reconsumeTimes >= configuration.maxReconsumeTimes {
            await deadLetter(message, reason: "failed \(message.reconsumeTimes + 1) times")
        } else {
            var retry = message
            retry.originalTopic = message.subscribedTopic
            retry.topic = Bus.retryTopic(group: group)
            retry.reconsumeTimes += 1
            retry.queue = 0
            do {
                try await engine.schedule(retry, deliverAtMS: bus.clock.wallClockMilliseconds + configuration.retryDelay(after: retry.reconsumeTimes).milliseconds)
                stats.withLock { $0.retried += 1 }
                Counter(label: MetricFamilies.busRetries.name, dimensions: [("group", group)]).increment()
            } catch {
                logger.warning("scheduling a retry failed; the message stays pending", metadata: ["bus.message.id": "\(message.id)", "bus.error": "\(error)"])
                return
            }
        }
        await ack()
    }

    /// Malformed entries go to the dead-letter queue and messages the tag expression excludes are
    /// skipped: both are then acknowledged without calling the listener. Returns whether that happened.
    private func settledWithoutListener(_ delivery: BusDelivery) async -> Bool {
        if let reason = delivery.malformed {
            await deadLetter(delivery.message, reason: reason)
            return true
        }
        guard tags.matches(delivery.message.tag) else {
            stats.withLock { $0.filtered += 1 }
            return true
        }
        return false
    }

    private func invoke(_ handler: @Sendable (BusMessage) async throws -> ConsumeResult, _ message: BusMessage) async -> ConsumeResult {
        var context = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(message.properties, into: &context, using: DictionaryExtractor())
        let span = InstrumentationSystem.tracer.startSpan("bus.consume \(message.subscribedTopic)", context: context, ofKind: .consumer)
        if span.isRecording {  // building attributes for a span nobody records cost a dictionary per message
            span.attributes["messaging.system"] = "troupe"
            span.attributes["messaging.destination.name"] = message.subscribedTopic
            span.attributes["messaging.message.id"] = message.id
            span.attributes["messaging.consumer.group.name"] = group
        }
        defer { span.end() }
        let result: ConsumeResult
        do {
            result = try await ServiceContext.withValue(span.context) { try await handler(message) }
        } catch {
            span.recordError(error)
            logger.debug("listener threw; retrying later", metadata: ["bus.message.id": "\(message.id)", "bus.error": "\(error)"])
            result = .retryLater
        }
        if result == .success {
            stats.withLock { $0.consumed += 1 }
            let topic = message.subscribedTopic, group = self.group
            consumedCounters(topic) { topic in Counter(label: MetricFamilies.busConsumed.name, dimensions: [("group", group), ("topic", topic)]) }.increment()
            endToEndTimers(topic) { topic in Timer(label: MetricFamilies.busEndToEnd.name, dimensions: [("topic", topic)]) }
                .recordMilliseconds(max(0, bus.clock.wallClockMilliseconds - message.bornAtMS))
        }
        return result
    }

    private func deadLetter(_ message: BusMessage, reason: String) async {
        var dead = message
        dead.originalTopic = message.subscribedTopic
        dead.topic = Bus.deadLetterTopic(group: group)
        dead.queue = 0
        dead.properties["DLQ_REASON"] = reason
        dead.properties["DLQ_ORIGIN_TOPIC"] = message.subscribedTopic
        do {
            _ = try await engine.append(dead)
            stats.withLock { $0.deadLettered += 1 }
            Counter(label: MetricFamilies.busDeadLettered.name, dimensions: [("group", group)]).increment()
            logger.warning("message moved to the dead-letter queue", metadata: ["bus.message.id": "\(message.id)", "bus.reason": "\(reason)"])
        } catch {
            logger.error("dead-lettering failed", metadata: ["bus.message.id": "\(message.id)", "bus.error": "\(error)"])
        }
    }

    // MARK: Orderly

    var membershipGroup: String { "\(group)@\(topic)" }

    func leaseName(_ queue: Int) -> String { "\(topic):\(group):\(queue)" }

    /// Queues this member should own: queues dealt round-robin over the sorted live members.
    static func allocate(queues: Int, members: [String], me: String) -> Set<Int> {
        guard let index = members.firstIndex(of: me), !members.isEmpty else { return [] }
        return Set((0..<queues).filter { $0 % members.count == index })
    }

    private func consumeOrderly(queues: Int, executor: (any TaskExecutor)?, handler: @escaping @Sendable (BusMessage) async throws -> ConsumeResult) async throws {
        let workers = Locked<[Int: Task<Void, Never>]>([:])
        let stopping = Locked<Set<Int>>([])
        // Until when each queue is provably this member's: the lease was granted no earlier than when it was
        // asked for, and lasts `queueLease` from there; a margin covers clock rates. Past it — renewals failing
        // (Redis unreachable, this node cut off) or this process frozen — another member may hold the queue, so
        // its worker must not deliver, nor retry, a message it still has in hand.
        let leases = Locked<[Int: ContinuousClock.Instant]>([:])
        let margin = min(configuration.queueLease / 6, .seconds(1))
        var rebalanceFailures = LogThrottle()
        defer {
            let all = workers.withLock { $0 }
            for (_, task) in all { task.cancel() }
        }
        while running {
            do {
                let members = try await engine.heartbeat(group: membershipGroup, member: instanceName, ttl: configuration.queueLease)
                let wanted = Self.allocate(queues: queues, members: members, me: instanceName)
                let current = Set(workers.withLock { $0.keys })
                // Give up queues no longer ours: let the worker finish its message, then release the lease.
                for q in current.subtracting(wanted) {
                    stopping.withLock { _ = $0.insert(q) }
                    let task = workers.withLock { $0.removeValue(forKey: q) }
                    await task?.value
                    stopping.withLock { _ = $0.remove(q) }
                    leases.withLock { $0[q] = nil }
                    try await engine.releaseLease(leaseName(q), owner: instanceName)
                    stats.withLock { _ = $0.ownedQueues.remove(q) }
                }
                for q in wanted {
                    let asked = bus.clock.now
                    let held = try await engine.lease(leaseName(q), owner: instanceName, ttl: configuration.queueLease)
                    leases.withLock { $0[q] = held ? asked + configuration.queueLease - margin : nil }
                    let running = workers.withLock { $0[q] != nil }
                    if held, !running {
                        stats.withLock { _ = $0.ownedQueues.insert(q) }
                        let owns: @Sendable () -> Bool = { [clock = bus.clock] in leases.withLock { $0[q] }.map { clock.now < $0 } ?? false }
                        let task = Task(executorPreference: executor) {
                            await self.orderlyWorker(queue: q, stopping: stopping, owns: owns, handler: handler)
                        }
                        workers.withLock { $0[q] = task }
                    } else if !held, running {
                        let task = workers.withLock { $0.removeValue(forKey: q) }
                        task?.cancel()
                        stats.withLock { _ = $0.ownedQueues.remove(q) }
                    }
                }
                rebalanceFailures.reset()
            } catch {
                if let held = rebalanceFailures.admit(now: bus.clock.now) {
                    logger.warning("orderly rebalance failed; retrying", metadata: ["bus.topic": "\(topic)", "bus.error": "\(error)", "log.suppressed": "\(held)"])
                }
            }
            // The pause between rebalances ends at a graceful shutdown (a stop must not wait out a third of the lease).
            try? await cancelWhenGracefulShutdown { [clock = bus.clock, pause = configuration.queueLease / 3] in try await clock.sleep(for: pause) }
        }
        // Shutdown: finish current messages, then hand the queues back.
        let all = workers.withLock { state -> [Int: Task<Void, Never>] in
            defer { state.removeAll() }
            return state
        }
        stopping.withLock { $0.formUnion(all.keys) }
        for (q, task) in all {
            await task.value
            try? await engine.releaseLease(leaseName(q), owner: instanceName)
        }
    }

    /// Consumes one queue in order: first what a previous owner left unacknowledged, then new entries. While
    /// the queue is not provably this member's (`owns`), it delivers nothing: what it has in hand is dropped
    /// (unacknowledged, it stays with the group) and, once the lease is renewed, it starts again from what the
    /// group holds — a message another member meanwhile consumed is never delivered again from here.
    private func orderlyWorker(queue: Int, stopping: Locked<Set<Int>>, owns: @escaping @Sendable () -> Bool,
                               handler: @escaping @Sendable (BusMessage) async throws -> ConsumeResult) async {
        func shouldStop() -> Bool { Task.isCancelled || stopping.withLock { $0.contains(queue) } }
        var inherited = true
        var readFailures = LogThrottle()
        while !shouldStop() {
            guard owns() else {
                inherited = true
                try? await bus.clock.sleep(for: .milliseconds(100))
                continue
            }
            let deliveries: [BusDelivery]
            do {
                if inherited {
                    deliveries = try await engine.reclaim(group: group, consumer: instanceName, topic: topic, queue: queue, minIdle: .zero, count: 100)
                    inherited = false
                } else {
                    deliveries = try await engine.read(group: group, consumer: instanceName, topic: topic, queues: [queue], count: 16, block: .milliseconds(100))
                }
            } catch {
                if shouldStop() { return }
                if let held = readFailures.admit(now: bus.clock.now) {
                    logger.warning("orderly read failed; retrying every 100 ms", metadata: [
                        "bus.topic": "\(topic)", "bus.queue": "\(queue)", "bus.error": "\(error)", "log.suppressed": "\(held)",
                    ])
                }
                try? await bus.clock.sleep(for: .milliseconds(100))
                continue
            }
            readFailures.reset()
            for delivery in deliveries.sorted(by: { Self.entryOrder($0.entryID, $1.entryID) }) {
                if Task.isCancelled { return }
                guard await processInOrder(delivery, owns: owns, handler: handler) else {
                    inherited = true  // the lease lapsed: drop the rest of the batch
                    break
                }
            }
        }
    }

    /// Orders entry ids: "ms-seq" (Redis) or plain numbers (memory).
    static func entryOrder(_ a: String, _ b: String) -> Bool {
        func parts(_ s: String) -> (Int64, Int64) {
            let p = s.split(separator: "-")
            return (Int64(p.first ?? "0") ?? 0, p.count > 1 ? Int64(p[1]) ?? 0 : 0)
        }
        return parts(a) < parts(b)
    }

    /// Delivers one message of an orderly queue, retrying in place; false when it stopped because the queue
    /// is no longer provably this member's (or the worker was cancelled): the message is left unacknowledged.
    private func processInOrder(_ delivery: BusDelivery, owns: () -> Bool,
                                handler: @Sendable (BusMessage) async throws -> ConsumeResult) async -> Bool {
        var message = delivery.message
        func ack() async {
            try? await engine.ack(group: group, topic: topic, queue: delivery.queue, entryIDs: [delivery.entryID])
        }
        if await settledWithoutListener(delivery) {
            await ack()
            return true
        }
        // Retry in place: the queue waits, so later messages never overtake this one.
        while true {
            guard owns() else { return false }
            if await invoke(handler, message) == .success { break }
            if message.reconsumeTimes >= configuration.maxReconsumeTimes {
                await deadLetter(message, reason: "failed \(message.reconsumeTimes + 1) times (orderly)")
                break
            }
            message.reconsumeTimes += 1
            stats.withLock { $0.retried += 1 }
            try? await bus.clock.sleep(for: configuration.orderlyRetryDelay(after: message.reconsumeTimes))
            if Task.isCancelled { return false }
        }
        await ack()
        return true
    }
}
