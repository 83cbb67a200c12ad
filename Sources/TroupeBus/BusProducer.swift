import Foundation
import Instrumentation
import Metrics
import ServiceContextModule
public import ServiceLifecycle
import Synchronization
import Tracing
import TroupeCore
import Logging

/// What the local transaction of a transactional send decided (or what the checker says later).
public enum LocalTransactionState: Sendable {
    case commit, rollback, unknown
}

/// The result of a send.
public struct SendResult: Sendable, Hashable {
    /// The id the message was given.
    public var messageID: String
    /// The queue it went to.
    public var queue: Int
    /// The engine's entry id (nil for delayed messages, which are stored later).
    public var entryID: String?
}

/// Sends messages for a producer group. Transactional sends need a checker registered for the group
/// (in every member) and the producer's `run()` in a ServiceGroup, which asks the checker about half
/// messages left undecided.
public final class BusProducer: Service, Sendable {
    /// The bus it sends through.
    public let bus: Bus
    /// The producer group (transactional sends are checked back through its checker).
    public let group: String
    private let checker = Guarded<(@Sendable (BusMessage) async throws -> LocalTransactionState)?>(nil)
    private let roundRobin = Atomic<Int>(0)

    init(bus: Bus, group: String) {
        self.bus = bus
        self.group = group
    }

    /// Builds the stored message: validates, assigns the stable id and the queue, carries the trace context.
    func prepare(_ outgoing: OutgoingMessage) async throws(BusError) -> BusMessage {
        guard outgoing.body.count <= bus.configuration.maxBodyBytes else {
            throw BusError(.invalidMessage, "body of \(outgoing.body.count) bytes exceeds the maximum of \(bus.configuration.maxBodyBytes) bytes")
        }
        if let tag = outgoing.tag, tag.contains("||") || tag.isEmpty { throw BusError(.invalidMessage, "tag \"\(tag)\" must be non-empty without ||") }
        let queues = try await bus.queues(of: outgoing.topic)  // validates the topic name on first use
        let queue: Int
        if let key = outgoing.shardingKey {
            queue = Self.queue(ofShardingKey: key, among: queues)
        } else {
            queue = Int(UInt(bitPattern: roundRobin.wrappingAdd(1, ordering: .relaxed).oldValue) % UInt(queues))
        }
        var properties = outgoing.properties
        if let context = ServiceContext.current {
            InstrumentationSystem.instrument.inject(context, into: &properties, using: DictionaryInjector())
        }
        return BusMessage(id: outgoing.id ?? bus.ids.next(), topic: outgoing.topic, tag: outgoing.tag, keys: outgoing.keys, properties: properties,
                          body: outgoing.body, shardingKey: outgoing.shardingKey, queue: queue, bornAtMS: bus.clock.wallClockMilliseconds,
                          producerGroup: group)
    }

    /// A new message id (see ``MessageIDs``), from a bus of default configuration's sequence (tests).
    static func newID() -> String { defaultIDs.next() }
    private static let defaultIDs = MessageIDs(seed: SystemRandomSource().next(), clock: SystemRuntimeClock())

    /// The milliseconds leading an id made by `newID()` (nil for ids made elsewhere).
    /// Read byte by byte (the Redis engine asks on every append; the generic radix parsing of two substrings
    /// showed in profiles of the sending thread). Hex digits only, either case.
    static func idMilliseconds(_ id: String) -> Int64? {
        var id = id
        id.makeContiguousUTF8()  // a no-op for native strings
        let parsed = id.utf8.withContiguousStorageIfAvailable { bytes -> Int64? in
            guard bytes.count == 24 else { return nil }
            var ms: Int64 = 0
            for (index, byte) in bytes.enumerated() {
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte &- UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte &- UInt8(ascii: "a") &+ 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte &- UInt8(ascii: "A") &+ 10
                default: return nil
                }
                if index < 12 { ms = ms << 4 | Int64(digit) }
            }
            return ms
        }
        return parsed ?? nil
    }

    /// Sends and waits until the message is stored; returns its id.
    @discardableResult
    public func send(_ outgoing: OutgoingMessage) async throws(BusError) -> SendResult {
        // Inside a trace, a producer span: the message carries its context, so the consumer's span is its child.
        guard let parent = ServiceContext.current else { return try await store(outgoing) }
        let span = InstrumentationSystem.tracer.startSpan("bus.publish \(outgoing.topic)", context: parent, ofKind: .producer)
        defer { span.end() }
        if span.isRecording {
            span.attributes["messaging.system"] = "troupe"
            span.attributes["messaging.destination.name"] = outgoing.topic
            if let id = outgoing.id { span.attributes["messaging.message.id"] = id }
        }
        do {
            return try await ServiceContext.withValue(span.context) { try await store(outgoing) }
        } catch let error as BusError {
            span.recordError(error)
            throw error
        } catch {
            span.recordError(error)
            throw BusError(.engine, "\(error)")
        }
    }

    private func store(_ outgoing: OutgoingMessage) async throws(BusError) -> SendResult {
        let message = try await prepare(outgoing)
        if let delay = outgoing.delay {
            try await bus.engine.schedule(message, deliverAtMS: try delay.deliverAtMS(now: message.bornAtMS))
            bus.producedCounters(message.topic).delayed.increment()
            return SendResult(messageID: message.id, queue: message.queue, entryID: nil)
        }
        let entry = try await bus.engine.append(message)
        bus.producedCounters(message.topic).normal.increment()
        return SendResult(messageID: message.id, queue: message.queue, entryID: entry)
    }

    /// Whether a message with `outgoing`'s id is already stored in the queue its sharding key picks (in any
    /// queue of its topic without one), within the retention — for a sender that may be sending it again (an
    /// outbox relaying events that an earlier activation may have relayed before it died). False for a message
    /// without an id; a delayed message is not looked for (its consumers deduplicate by id).
    public func isStored(_ outgoing: OutgoingMessage) async throws(BusError) -> Bool {
        guard let id = outgoing.id, outgoing.delay == nil else { return false }
        let count = try await bus.queues(of: outgoing.topic)
        let queues = outgoing.shardingKey.map { [Self.queue(ofShardingKey: $0, among: count)] } ?? Array(0..<count)
        return try await bus.engine.contains(id: id, topic: outgoing.topic, queues: queues)
    }

    /// The queue a sharding key sends to (one place: sending and `isStored` must agree).
    static func queue(ofShardingKey key: String, among queues: Int) -> Int { Int(shardHash(key) % UInt64(queues)) }

    /// Sends without waiting for the store (errors are logged, not returned). Returns the message id.
    @discardableResult
    public func sendOneWay(_ outgoing: OutgoingMessage) async throws(BusError) -> String {
        let message = try await prepare(outgoing)
        let engine = bus.engine
        let logger = bus.configuration.logger
        let started = bus.background.spawn {
            do {
                if let delay = outgoing.delay {
                    try await engine.schedule(message, deliverAtMS: try delay.deliverAtMS(now: message.bornAtMS))
                } else {
                    _ = try await engine.append(message)
                }
            } catch {
                logger.warning("one-way send failed", metadata: ["bus.topic": "\(message.topic)", "bus.error": "\(error)"])
            }
        }
        guard started else { throw BusError(.closed, "the bus has stopped; nothing is sent") }
        return message.id
    }

    /// Registers the checker asked about half messages of this group that were left undecided.
    public func setTransactionChecker(_ check: @escaping @Sendable (BusMessage) async throws -> LocalTransactionState) {
        checker.withLock { $0 = check }
    }

    /// Stores a half message, runs `local`, then commits or rolls back. `unknown` (or a throw) leaves the
    /// decision to the checker. Returns the message id and the local decision.
    public func sendTransactional(
        _ outgoing: OutgoingMessage, local: @Sendable (BusMessage) async throws -> LocalTransactionState
    ) async throws -> (messageID: String, state: LocalTransactionState) {
        guard outgoing.delay == nil else { throw BusError(.invalidMessage, "transactional messages cannot be delayed") }
        let message = try await prepare(outgoing)
        try await bus.engine.storeHalf(message)
        let decision: LocalTransactionState
        do {
            decision = try await local(message)
        } catch {
            bus.configuration.logger.warning("local transaction threw; the checker will decide", metadata: ["bus.message.id": "\(message.id)", "bus.error": "\(error)"])
            return (message.id, .unknown)
        }
        switch decision {
        case .commit: _ = try await bus.engine.resolveHalf(producerGroup: group, id: message.id, commit: true)
        case .rollback: _ = try await bus.engine.resolveHalf(producerGroup: group, id: message.id, commit: false)
        case .unknown: break
        }
        return (message.id, decision)
    }

    /// Asks the checker about half messages older than `firstCheckAfter`; rolls back after `maxChecks`.
    public func checkHalfMessages() async throws(BusError) -> Int {
        guard let check = checker.withLock({ $0 }) else { return 0 }
        let configuration = bus.configuration
        let halfs = try await bus.engine.halfsToCheck(producerGroup: group, olderThanMS: bus.clock.wallClockMilliseconds - configuration.firstCheckAfter.milliseconds, limit: 100)
        var resolved = 0
        for (message, checks) in halfs {
            var decision: LocalTransactionState
            do {
                decision = try await check(message)
            } catch {
                decision = .unknown
            }
            if decision == .unknown, checks >= configuration.maxChecks { decision = .rollback }
            switch decision {
            case .commit, .rollback:
                if try await bus.engine.resolveHalf(producerGroup: group, id: message.id, commit: decision == .commit) { resolved += 1 }
            case .unknown:
                break
            }
        }
        return resolved
    }

    /// Runs the transaction check-back until shutdown.
    public func run() async throws {
        await withGracefulShutdownHandler {
            while !Task.isCancelled, !Task.isShuttingDownGracefully {
                do {
                    _ = try await checkHalfMessages()
                } catch {
                    bus.configuration.logger.warning("transaction check failed", metadata: ["bus.error": "\(error)"])
                }
                try? await bus.clock.sleep(for: bus.configuration.checkInterval)
            }
        } onGracefulShutdown: {}
    }
}

struct DictionaryInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

struct DictionaryExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

