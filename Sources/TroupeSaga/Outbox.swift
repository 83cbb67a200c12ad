public import TroupeActors
public import TroupeBus
import TroupeCore
import Distributed
import Metrics
import Tracing

/// An event waiting in an actor's outbox. Its `id` is fixed when it is emitted, so a republished event
/// (after a crash between publish and bookkeeping) carries the same id and consumers can deduplicate.
public struct OutboxEvent: Codable, Sendable, Hashable {
    /// Its place in the emitting actor's outbox (per-actor order, from 1).
    public var sequence: Int64
    /// The message id consumers deduplicate by, fixed when the event is emitted.
    public var id: String
    /// The bus topic it is published to.
    public var topic: String
    /// The message's tag (consumers filter on it), if any.
    public var tag: String?
    /// The message's keys (searchable, as RocketMQ's).
    public var keys: [String]
    /// User properties carried with the message (the trace context among them).
    public var properties: [String: String]
    /// The message body.
    public var body: [UInt8]
    /// Messages with the same sharding key are consumed in order (ordered topics).
    public var shardingKey: String?
    /// When a delayed event is to be delivered (milliseconds since 1970), fixed when it was emitted: relayed
    /// late, it is still delivered on time.
    public var deliverAt: Int64?
    /// When it was emitted (milliseconds since 1970, the system's wall clock; nil in outboxes stored before this
    /// field existed): `troupe_outbox_relay_lag_seconds` measures from here to its publication.
    public var emittedAt: Int64?
}

/// Events an actor emitted but has not yet seen published; stored inside the actor's own state, so the
/// state change and its events are one compare-and-set write.
public struct Outbox: Codable, Sendable, Hashable {
    /// Events emitted and not yet seen published, in order.
    public var pending: [OutboxEvent] = []
    /// The sequence the next emitted event gets.
    public var nextSequence: Int64 = 1

    /// An empty outbox.
    public init() {}
}

/// State that carries an outbox.
public protocol OutboxCarrying: Codable & Sendable {
    var outbox: Outbox { get set }
}

/// Where relayed events go.
public protocol OutboxPublisher: Sendable {
    /// Sends `event` (with its fixed id) to the bus; throws when it may not have arrived.
    func publish(_ event: OutboxEvent) async throws
    /// Whether `event` already went out: asked about the events an activation finds in its stored outbox, which
    /// an earlier activation may have relayed before it died (their removal waits for the actor's next write),
    /// and about those a failed relay left. The default, false, publishes them again; consumers deduplicate by id.
    func isPublished(_ event: OutboxEvent) async throws -> Bool
}

extension OutboxPublisher {
    public func isPublished(_ event: OutboxEvent) async throws -> Bool { false }
}

extension BusProducer: OutboxPublisher {
    public func publish(_ event: OutboxEvent) async throws {
        try await send(Self.message(event))
    }

    /// Looks for the event's id in the queue it went to: a consumer that deduplicates only recent messages
    /// (a bounded window) would count an event relayed again long after the first time.
    public func isPublished(_ event: OutboxEvent) async throws -> Bool {
        try await isStored(Self.message(event))
    }

    private static func message(_ event: OutboxEvent) -> OutgoingMessage {
        OutgoingMessage(topic: event.topic, tag: event.tag, keys: event.keys, properties: event.properties, body: event.body,
                        shardingKey: event.shardingKey, delay: event.deliverAt.map { .at($0) }, id: event.id)
    }
}

/// When `updateAndEmit` relays the events it recorded.
public enum OutboxRelayTiming: Sendable {
    /// Before it returns: the caller knows the events reached the bus unless the bus failed (then a
    /// background retry takes over, as with ``inBackground``).
    case beforeReturning
    /// After it returns, in the background: the caller waits for its write only, never for the bus — for
    /// events nobody waits on (a reminder due in minutes), so that an unreachable bus does not slow the call.
    case inBackground
}

/// Collects the events of one `updateAndEmit`.
public struct EventEmitter: Sendable {
    var messages: [OutgoingMessage] = []
    /// Records `message` to be sent once the state write that emits it succeeds.
    public mutating func emit(_ message: OutgoingMessage) { messages.append(message) }
}

/// Where one actor system's outboxes are relayed to, and which of its actors are relaying: set the
/// publisher once at start-up (`system.outboxRelay.setPublisher(…)`).
public final class OutboxRelay: Sendable {
    private let publisherSlot = Guarded<(any OutboxPublisher)?>(nil)
    /// Activations whose relay is running (one relay per activation at a time keeps its events in order).
    /// By instance, not by key: an instance dropped when its node's membership lapsed may still be relaying
    /// (or retrying) when a new activation of the same key starts on this node, and the new one must not wait
    /// for it — the old one's writes are fenced, so it gives up, and the new one's events (a new "completed",
    /// say) would otherwise wait for the key's next activation. Both publishing the same stored events is
    /// harmless: their ids are fixed, consumers deduplicate.
    private let relaying = Guarded<Set<ObjectIdentifier>>([])
    /// Activations with a retry loop running after a failed relay (one per activation).
    private let retrying = Guarded<Set<ObjectIdentifier>>([])

    init() {}

    /// Relays this system's outboxes through `publisher` from now on.
    public func setPublisher(_ publisher: any OutboxPublisher) {
        publisherSlot.withLock { $0 = publisher }
    }

    /// Stops relaying: events stay in the outboxes until a publisher is set again.
    public func removePublisher() {
        publisherSlot.withLock { $0 = nil }
    }

    var publisher: (any OutboxPublisher)? { publisherSlot.withLock { $0 } }

    func enter(_ activation: ObjectIdentifier) -> Bool { relaying.withLock { $0.insert(activation).inserted } }
    func leave(_ activation: ObjectIdentifier) { _ = relaying.withLock { $0.remove(activation) } }

    func startRetrying(_ activation: ObjectIdentifier) -> Bool {
        let started = retrying.withLock { $0.insert(activation).inserted }
        if started { Self.metrics.retrying.increment() }
        return started
    }

    func stopRetrying(_ activation: ObjectIdentifier) {
        if retrying.withLock({ $0.remove(activation) }) != nil { Self.metrics.retrying.decrement() }
    }

    // MARK: Backlog

    private struct WeakActivation: Sendable {
        weak var object: (any AnyObject & Sendable)?
    }

    private struct Backlog {
        var entries: [ObjectIdentifier: (activation: WeakActivation, count: Int)] = [:]
        var total = 0
        var updates = 0
    }

    /// Events in the outboxes of this system's live activations, not yet on the bus (`troupe_outbox_backlog`).
    private let backlog = Guarded(Backlog())

    /// The events `activation` holds now. An activation that is gone (passivated, fenced) stops counting: its
    /// entry is dropped when its address is reused, or by the sweep of dead entries every 1,024 updates.
    func recordPending(_ activation: any AnyObject & Sendable, count: Int) {
        let total = backlog.withLock { backlog -> Int in
            let id = ObjectIdentifier(activation)
            let old = backlog.entries[id]?.count ?? 0
            backlog.entries[id] = count > 0 ? (WeakActivation(object: activation), count) : nil
            backlog.total += count - old
            backlog.updates &+= 1
            if backlog.updates % 1_024 == 0 {
                for (key, entry) in backlog.entries where entry.activation.object == nil {
                    backlog.total -= entry.count
                    backlog.entries[key] = nil
                }
            }
            return backlog.total
        }
        Self.metrics.backlog.record(total)
    }

    /// Events waiting in this system's live activations' outboxes (what `troupe_outbox_backlog` reports).
    public var pendingEvents: Int { backlog.withLock { $0.total } }

    /// `troupe_outbox_*`: events relayed (published, or found already on the bus), relays that failed, the
    /// activations whose relay is retrying in the background (events waiting for the bus), and the time from an
    /// event's emission to its publication.
    struct OutboxMetrics: Sendable {
        let published = Counter(label: MetricFamilies.outboxRelayed.name, dimensions: [("outcome", "published")])
        let alreadyOnBus = Counter(label: MetricFamilies.outboxRelayed.name, dimensions: [("outcome", "already_on_bus")])
        let failures = Counter(label: MetricFamilies.outboxRelayFailures.name)
        let retrying = Meter(label: MetricFamilies.outboxRetrying.name)
        let lag = Metrics.Timer(label: MetricFamilies.outboxRelayLag.name)
        let backlog = Gauge(label: MetricFamilies.outboxBacklog.name)
    }

    static let metrics = OutboxMetrics()
}

extension ClusterActorSystem {
    /// Where this system's outboxes are relayed to.
    public var outboxRelay: OutboxRelay { extensions.instance(OutboxRelay.self) { OutboxRelay() } }
}

extension PersistentVirtualActor where State: OutboxCarrying {
    /// Changes the state and records the events it emits in **one** compare-and-set write, then relays
    /// them to the bus in order. If the process dies in between, the events stay in the stored outbox and
    /// are relayed by the next activation (published at least once, never lost).
    @discardableResult
    public func updateAndEmit<Result>(relay timing: OutboxRelayTiming = .beforeReturning,
                                      _ body: (inout State, inout EventEmitter) throws -> Result) async throws -> Result {
        var emitted: Set<Int64> = []
        let result = try await update { state in
            emitted = []  // a retried update starts over
            var emitter = EventEmitter()
            let result = try body(&state, &emitter)
            for message in emitter.messages {
                let now = actorSystem.clock.wallClockMilliseconds
                let deliverAt = try message.delay.map { try $0.deliverAtMS(now: now) }
                let sequence = state.outbox.nextSequence
                state.outbox.nextSequence += 1
                emitted.insert(sequence)
                state.outbox.pending.append(OutboxEvent(
                    sequence: sequence, id: message.id ?? "\(id.description)#\(sequence)", topic: message.topic, tag: message.tag,
                    keys: message.keys, properties: message.properties, body: message.body,
                    // Per-actor order on the bus: the actor's id is the default sharding key.
                    shardingKey: message.shardingKey ?? id.description, deliverAt: deliverAt, emittedAt: now))
            }
            return result
        }
        guard !state.outbox.pending.isEmpty else { return result }
        actorSystem.outboxRelay.recordPending(self, count: state.outbox.pending.count)
        switch timing {
        case .beforeReturning:
            do {
                _ = try await relayOutbox(fresh: emitted)
            } catch {
                OutboxRelay.metrics.failures.increment()
                retryRelayInBackground()
            }
        case .inBackground:
            retryRelayInBackground(at: .zero)
        }
        return result
    }

    /// After a failed relay (the bus is unreachable, say), keeps trying with backoff while this activation
    /// lives — an actor whose last change emitted events may never be called again — for up to about
    /// ten minutes; after that, or if this activation is gone, the next activation relays.
    func retryRelayInBackground(at first: Duration = .milliseconds(200)) {
        let key = ObjectIdentifier(self)
        let relay = actorSystem.outboxRelay
        guard relay.startRetrying(key) else { return }
        let spawned = actorSystem.background.spawn {
            defer { relay.stopRetrying(key) }
            await self.retryRelay(first: first)
        }
        // A stopped system relays nothing more: the next activation relays what the stored outbox holds.
        if !spawned { relay.stopRetrying(key) }
    }

    private func retryRelay(first: Duration) async {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(10))
        for attempt in 0..<60 {
            await actorSystem.pause(attempt == 0 ? first : actorSystem.nextDelay(&backoff))
            guard !actorSystem.isShuttingDown, actorSystem.outboxRelay.publisher != nil, !state.outbox.pending.isEmpty else { return }
            do {
                _ = try await relayOutbox()
                if state.outbox.pending.isEmpty { return }
            } catch let error as ActorSystemError where error.code == .fenced {
                return  // a newer activation holds the outbox now, and relays it
            } catch {
                continue
            }
        }
    }

    /// Publishes the pending events in order, then forgets them (stored with the next write). An event that
    /// may have gone out before — found in the stored outbox (an earlier activation relayed it and died before
    /// its removal was stored), or left by a relay that failed half-way — is looked for on the bus first
    /// (``OutboxPublisher/isPublished(_:)``) and not published twice. Call it from `didActivate()` so that
    /// events left by an activation that died go out. Returns how many were published.
    @discardableResult
    public func relayOutbox() async throws -> Int {
        try await relayOutbox(fresh: [])
    }

    /// `fresh`: the sequences of events the caller has just written, which nobody can have published yet
    /// (not looked for: the common relay, right after the write, costs no lookup).
    func relayOutbox(fresh: Set<Int64>) async throws -> Int {
        let relay = actorSystem.outboxRelay
        guard let publisher = relay.publisher else { return 0 }
        let key = ObjectIdentifier(self)
        guard relay.enter(key) else { return 0 }  // the running relay picks up what is new
        defer { relay.leave(key) }
        // One span for the relay, under the call whose write produced the events; the publishes are its children.
        let span = InstrumentationSystem.tracer.startSpan("outbox.relay", context: ServiceContext.current ?? .topLevel)
        defer { span.end() }
        do {
            let published = try await ServiceContext.withValue(span.context) { try await relayPending(fresh: fresh, to: publisher) }
            if span.isRecording { span.attributes["outbox.published"] = published }
            return published
        } catch {
            span.recordError(error)
            throw error
        }
    }

    private func relayPending(fresh: Set<Int64>, to publisher: any OutboxPublisher) async throws -> Int {
        var published = 0
        while !state.outbox.pending.isEmpty {
            let batch = state.outbox.pending
            for event in batch {
                if !fresh.contains(event.sequence), try await publisher.isPublished(event) {
                    OutboxRelay.metrics.alreadyOnBus.increment()
                    continue
                }
                try await publisher.publish(event)
                OutboxRelay.metrics.published.increment()
                if let emitted = event.emittedAt {
                    OutboxRelay.metrics.lag.recordNanoseconds(max(0, actorSystem.clock.wallClockMilliseconds - emitted) * 1_000_000)
                }
                published += 1
            }
            let last = batch.last!.sequence
            // Forgotten with the actor's next write (or its passivation), not with a write of its own: an event
            // relayed again after a crash is found on the bus (above), or carries the same id for consumers.
            await updateDeferred { state in state.outbox.pending.removeAll { $0.sequence <= last } }
            actorSystem.outboxRelay.recordPending(self, count: state.outbox.pending.count)
        }
        return published
    }
}
