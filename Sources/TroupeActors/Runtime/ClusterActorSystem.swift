public import Distributed
import Logging
import Metrics
import NIOCore
import Synchronization
public import TroupeCore

/// A node of a Troupe cluster: a `DistributedActorSystem` over authenticated, multiplexed TCP,
/// hosting virtual actors placed by rendezvous hashing over the live members.
///
/// Start one with ``start(_:membership:stateStore:)``, register the virtual actor types it hosts,
/// then drive it with ``run()`` (it is a swift-service-lifecycle `Service`):
///
/// ```swift
/// let system = try await ClusterActorSystem.start(configuration, membership: membership, stateStore: store)
/// system.register(Account.self)
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await system.run() }
///     let account = try await system.actor(Account.self, key: "alice")
///     _ = try await account.deposit(10)
///     system.shutdown()
/// }
/// ```
///
/// References from ``actor(_:key:)`` are location-transparent: on other nodes they are routed on
/// every call to the key's current owner. On the owning node the reference *is* the activation,
/// and calls run at native actor speed; hold such a reference for a unit of work, not forever —
/// an activation that is held is never passivated, and if its key moves away meanwhile, its next
/// write is fenced (``ActorSystemError/Code/fenced``).
public final class ClusterActorSystem: DistributedActorSystem, Sendable {
    public typealias ActorID = TroupeActors.ActorID
    public typealias InvocationEncoder = ClusterInvocationEncoder
    public typealias InvocationDecoder = ClusterInvocationDecoder
    public typealias ResultHandler = ClusterResultHandler
    public typealias SerializationRequirement = Codable

    /// This node's identity (with the bound port).
    public let node: NodeID
    /// What the system was started with.
    public let configuration: ClusterConfiguration
    /// Where the system learns the live members (etcd, a static list, memory).
    public let membership: any MembershipProvider
    /// Where persistent virtual actors keep their state.
    public let stateStore: any ActorStateStore
    /// Notified whenever the member list changes (calls waiting for a dead owner to be dropped).
    let membersChanged = ChangeSignal()
    /// Per-system state of the modules built on the runtime (saga definitions, outbox relays).
    public let extensions = ActorSystemExtensions()
    /// Background work of this system's actors (a saga's drive, an outbox's retries): stopped at the end of
    /// ``run()`` (cancelled, waited for a grace period) instead of outliving the system.
    public let background: BackgroundTasks
    /// The runtime's time (``ClusterConfiguration/clock``).
    public var clock: any RuntimeClock { configuration.clock }
    /// The tunables that change while the system runs (``tune(callTimeout:idleTimeout:)``), in nanoseconds.
    let liveCallTimeout: Atomic<Int64>
    let liveIdleTimeout: Atomic<Int64>

    /// The deadline of calls that do not set their own: ``ClusterConfiguration/defaultCallTimeout`` until tuned.
    public var callTimeout: Duration { .nanoseconds(liveCallTimeout.load(ordering: .relaxed)) }
    /// How long an activation may stay unused before it is passivated: ``ClusterConfiguration/idleTimeout`` until tuned.
    public var idleTimeout: Duration { .nanoseconds(liveIdleTimeout.load(ordering: .relaxed)) }

    /// Changes tunables while the system runs (live configuration): the next calls and the next sweep use them.
    /// - Throws: ``ActorSystemError/Code/invalidConfiguration`` for a value that is not positive (nothing changes then).
    public func tune(callTimeout: Duration? = nil, idleTimeout: Duration? = nil) throws {
        for (name, value) in [("callTimeout", callTimeout), ("idleTimeout", idleTimeout)] {
            if let value, value <= .zero { throw ActorSystemError(.invalidConfiguration, "\(name) must be positive (it is \(value))") }
        }
        if let callTimeout { liveCallTimeout.store(callTimeout.tunableNanoseconds, ordering: .relaxed) }
        if let idleTimeout { liveIdleTimeout.store(idleTimeout.tunableNanoseconds, ordering: .relaxed) }
    }
    /// The deadlines that guard this system's work (saga step timeouts), on its clock: a timer thread of their
    /// own on the system clock, ended by `run()`; driven by the sweep on any other clock (tests, simulation).
    public let deadlines: Deadlines
    /// The member record this node announces.
    public var member: ClusterMember {
        ClusterMember(node: node, actorTypes: state.withLock { $0.hostedTypes })
    }

    let logger: Logger
    let serverChannel: any Channel
    let state: Guarded<SystemState>
    let nextCallID = Atomic<UInt64>(1)
    let nextConnectionID = Atomic<UInt64>(1)
    let runStarted = Atomic<Bool>(false)
    let inbound: AsyncStream<InboundBatch>
    let inboundContinuation: AsyncStream<InboundBatch>.Continuation
    let metrics: SystemMetrics
    let decodingLimits: BinaryDecodingLimits
    /// Distributed targets resolved from their mangled names, once each.
    let targets = TargetCache()
    /// The contexts of mutual TLS, when ``ClusterConfiguration/tls`` is set.
    let tls: ClusterTLS?

    /// Set while the system constructs an activation so that ``assignID(_:)`` gives it the virtual id.
    @TaskLocal static var activating: (id: ActorID, type: ObjectIdentifier)?

    /// Set while ``reference(_:key:)`` resolves, so that ``resolve(id:as:)`` makes a routed reference.
    @TaskLocal static var routedReference = false

    init(configuration: ClusterConfiguration, node: NodeID, serverChannel: any Channel,
         membership: any MembershipProvider, stateStore: any ActorStateStore, tls: ClusterTLS?) {
        self.tls = tls
        self.configuration = configuration
        self.liveCallTimeout = Atomic(configuration.defaultCallTimeout.tunableNanoseconds)
        self.liveIdleTimeout = Atomic(configuration.idleTimeout.tunableNanoseconds)
        self.node = node
        self.membership = membership
        self.stateStore = stateStore
        self.serverChannel = serverChannel
        var logger = configuration.logger
        logger[metadataKey: "actor.node"] = "\(node.name)"
        self.logger = logger
        self.state = Guarded(SystemState(members: membership.currentMembers()))
        (self.inbound, self.inboundContinuation) = AsyncStream.makeStream(of: InboundBatch.self)
        self.metrics = SystemMetrics(node: node.name)
        self.background = BackgroundTasks(clock: configuration.clock)
        self.deadlines = configuration.clock is SystemRuntimeClock
            ? Deadlines(name: "troupe-deadlines") : Deadlines(drivenBy: configuration.clock)
        self.decodingLimits = BinaryDecodingLimits(maxDepth: configuration.maxDecodingDepth, maxBytes: configuration.maxFrameSize)
    }

    // MARK: - Per-call settings

    @TaskLocal static var callTimeout: Duration?

    /// The inbound call a task serves: its caller's deadline, and the task that serves it (tasks started
    /// from inside the call inherit task-locals but not the deadline — a saga's drive outlives the call).
    final class ServedCall: Sendable {
        let deadline: ContinuousClock.Instant
        let task: Int
        /// Set when the serving task has finished serving: from then on its identity (an address) may belong
        /// to another task — one started later by a task that inherited this record (a saga's drive starts a
        /// task per step attempt) — which must not take the long-passed deadline for its own.
        let over = Atomic<Bool>(false)

        init(deadline: ContinuousClock.Instant, task: Int) {
            self.deadline = deadline
            self.task = task
        }
    }

    @TaskLocal static var servedCall: ServedCall?

    /// The identity of the running task, for comparison only. Invariant: the unsafe task handle never leaves
    /// the closure (only its hash does, and nothing is done to the task through it); a served call's record
    /// matches only while the serving task serves (``ServedCall/over``), so no other live task can share its
    /// identity then.
    static var currentTaskHash: Int? { withUnsafeCurrentTask { $0?.hashValue } }

    /// The deadline of the remote caller whose call this very task is serving, if any.
    static var servedCallDeadline: ContinuousClock.Instant? {
        guard let call = servedCall, !call.over.load(ordering: .acquiring), currentTaskHash == call.task else { return nil }
        return call.deadline
    }

    /// Runs `body` with `timeout` as the deadline of every remote call it makes.
    public static func withCallTimeout<T>(
        _ timeout: Duration,
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> T
    ) async rethrows -> T {
        try await $callTimeout.withValue(timeout, operation: body, isolation: isolation)
    }

    // MARK: - DistributedActorSystem

    /// Distributed actor runtime requirement: an id for a new local actor.
    public func assignID<Act>(_ actorType: Act.Type) -> ActorID where Act: DistributedActor, Act.ID == ActorID {
        if let activating = Self.activating, activating.type == ObjectIdentifier(actorType) {
            return activating.id
        }
        let random = configuration.random
        let key = String(random.next(), radix: 36) + String(random.next(), radix: 36)
        return ActorID(type: String(describing: actorType), key: key, node: node)
    }

    /// Distributed actor runtime requirement: a local actor is ready to receive calls.
    public func actorReady<Act>(_ actor: Act) where Act: DistributedActor, Act.ID == ActorID {
        guard actor.id.node != nil else { return }  // activations are registered by the activation path
        state.withLock { $0.instances[actor.id] = WeakActor(actor) }
    }

    /// Distributed actor runtime requirement: a local actor is gone.
    public func resignID(_ id: ActorID) {
        guard id.node != nil else { return }
        _ = state.withLock { $0.instances.removeValue(forKey: id) }
    }

    /// Distributed actor runtime requirement: the local actor of `id`, or nil for a remote reference.
    public func resolve<Act>(id: ActorID, as actorType: Act.Type) throws -> Act? where Act: DistributedActor, Act.ID == ActorID {
        if let target = id.node {
            guard target.name == node.name else { return nil }
            guard target.incarnation == node.incarnation else {
                throw ActorSystemError(.actorNotFound, "\(id) belongs to an earlier incarnation of this node")
            }
            guard let actor = state.withLock({ $0.instances[id]?.actor }) as? Act else {
                throw ActorSystemError(.actorNotFound, "no actor \(id) on this node")
            }
            return actor
        }
        // Virtual: the local activation when this node owns the key, else a routed reference.
        if Self.routedReference { return nil }
        return state.withLock { state -> Act? in
            guard let entry = state.activations[id],
                  state.owner(type: id.type, key: id.key)?.node.name == node.name
            else { return nil }
            return entry.actor as? Act
        }
    }

    /// Distributed actor runtime requirement: an encoder for a call's arguments.
    public func makeInvocationEncoder() -> ClusterInvocationEncoder { ClusterInvocationEncoder() }

    /// Distributed actor runtime requirement: sends a call to the actor's node and decodes its result.
    public func remoteCall<Act, Err, Res>(
        on actor: Act,
        target: RemoteCallTarget,
        invocation: inout InvocationEncoder,
        throwing: Err.Type,
        returning: Res.Type
    ) async throws -> Res where Act: DistributedActor, Act.ID == ActorID, Err: Error, Res: Codable {
        switch try await route(actor.id, target: target, invocation: invocation) {
        case .local(let value):
            guard let result = value as? Res else {
                throw ActorSystemError(.serialization, "local target returned \(type(of: value)), expected \(Res.self)")
            }
            return result
        case .encoded(let bytes):
            do {
                return try BinaryDecoder(limits: decodingLimits).decode(Res.self, from: bytes)
            } catch {
                throw ActorSystemError(.serialization, "cannot decode the reply as \(Res.self)", underlying: error)
            }
        case .void:
            throw ActorSystemError(.protocolViolation, "the target returned no value, expected \(Res.self)")
        }
    }

    /// Distributed actor runtime requirement: sends a call without a result.
    public func remoteCallVoid<Act, Err>(
        on actor: Act,
        target: RemoteCallTarget,
        invocation: inout InvocationEncoder,
        throwing: Err.Type
    ) async throws where Act: DistributedActor, Act.ID == ActorID, Err: Error {
        _ = try await route(actor.id, target: target, invocation: invocation)
    }
}

/// Mutable state of a ``ClusterActorSystem``; always accessed under its mutex.
struct SystemState {
    var members: [ClusterMember]
    /// Bumped whenever ``members`` changes; activations' ownership is re-checked only then.
    var membersVersion: UInt64 = 0
    /// When this node last saw the member list change (activations made soon after are re-checked).
    var membersChangedAt: ContinuousClock.Instant?
    /// The earliest `recheckAt` of any activation (nil: none due), so that sweeps do not scan for them.
    var nextRecheckAt: ContinuousClock.Instant?

    mutating func scheduleRecheck(at instant: ContinuousClock.Instant) {
        nextRecheckAt = min(nextRecheckAt ?? instant, instant)
    }
    var ownershipCheckedVersion: UInt64 = 0
    var hostedTypes: Set<String> = []
    var registry: [String: RegisteredActorType] = [:]
    /// Placement groups by type name (``VirtualActor/placementGroup``), learnt when a type is registered or
    /// referenced: this system's own (a type's group is part of its code; nothing is shared between systems).
    var placementGroups: [String: String] = [:]
    var genericSubstitutions: [String: any Any.Type] = [:]
    /// The error types replies may name (``ClusterActorSystem/registerRemoteError(_:)``), by mangled name.
    var remoteErrorTypes: [String: any CodableRemoteError.Type] = [:]
    /// Names of unregistered error types peers sent, each logged once (at most 64 kept).
    var unregisteredErrorTypes: Set<String> = []
    var activations: [ActorID: ActivationEntry] = [:]
    /// Activations in progress whose load found no stored state.
    var loadedEmpty: Set<ActorID> = []
    var activating: [ActorID: EventLoopFuture<any VirtualActor>] = [:]
    /// Instances whose write was fenced while they were still being activated (a relay in `didActivate`):
    /// they are never registered.
    var fencedWhileActivating: [ActorID: Set<ObjectIdentifier>] = [:]
    var instances: [ActorID: WeakActor] = [:]
    var peers: [String: PeerConnection] = [:]
    var dialing: [String: EventLoopFuture<PeerConnection>] = [:]
    var connections: [UInt64: PeerConnection] = [:]
    var pending: [UInt64: PendingCall] = [:]
    /// Inbound connections not authenticated yet, by remote address, and in all.
    var unauthenticated: [String: Int] = [:]
    var unauthenticatedTotal = 0
    var shuttingDown = false
    var counters = Counters()

    struct Counters {
        var activated = 0
        var passivated = 0
        var fenced = 0
    }

    /// The owner of `type`/`key` among the members, by ``Placement`` with the type's placement group.
    func owner(type: String, key: String) -> ClusterMember? {
        Placement.owner(type: type, group: placementGroups[type], key: key, members: members)
    }

    init(members: [ClusterMember]) {
        self.members = members
    }
}

struct WeakActor {
    weak var actor: (any DistributedActor)?
    init(_ actor: any DistributedActor) { self.actor = actor }
}

/// A batch of calls read from one connection in one event-loop read burst.
struct InboundBatch: Sendable {
    var calls: [CallEnvelope]
    var connection: PeerConnection
}

/// A call waiting for its reply.
struct PendingCall {
    var continuation: CheckedContinuation<CallOutcomeWire, any Error>
    var connectionID: UInt64
    var deadline: ContinuousClock.Instant
    var peer: String
}

/// A reply as it arrives from the wire.
enum CallOutcomeWire: Sendable {
    case encoded([UInt8])
    case void
}

/// The outcome of a routed call.
enum CallOutcome {
    case local(any Codable)
    case encoded([UInt8])
    case void
}

/// What one node reports (`MetricFamilies`): calls, activations and passivations by actor type, fencing.
final class SystemMetrics: Sendable {
    /// The families of one actor type: calls served, activations.
    struct TypeMetrics: Sendable {
        let served: Counter
        /// Activations of this type alive on the node, and those ended.
        let activations: Meter
        let passivations: Counter
    }

    /// The series of calls made from this node to one method of one actor type, run here or on another node.
    struct CallMetrics: Sendable {
        let succeeded: Counter
        /// The actor threw an error of its own.
        let threw: Counter
        /// The runtime failed the call (`ActorSystemError`: no reply in time, unreachable, refused…).
        let failed: Counter
        let duration: Metrics.Timer
    }

    private struct CallKey: Hashable {
        var type: String
        var target: String
        var local: Bool
    }

    let node: String
    let inFlight: Meter
    let fenced: Counter
    let refusedConnections: Counter
    private let types = Guarded<[String: TypeMetrics]>([:])
    private let calls = Guarded<[CallKey: CallMetrics]>([:])
    /// Actor types named in labels at most; further ones (a peer may name any) are reported as "other".
    static let maxTypes = 256
    /// Call series (type × method × locality) at most; further ones are reported with method "other".
    static let maxCallSeries = 2_048

    init(node: String) {
        self.node = node
        let dimensions = [("node", node)]
        inFlight = Meter(label: MetricFamilies.actorCallsInFlight.name, dimensions: dimensions)
        fenced = Counter(label: MetricFamilies.actorFencedWrites.name, dimensions: dimensions)
        refusedConnections = Counter(label: MetricFamilies.actorConnectionsRefused.name, dimensions: dimensions)
    }

    /// The families of actors of `type`: calls, activations (made once per type, then looked up).
    func of(_ type: String) -> TypeMetrics {
        types.withLock { types in
            if let known = types[type] { return known }
            let label = types.count < Self.maxTypes ? type : "other"
            if let known = types[label] { return known }
            let dimensions = [("node", node), ("type", label)]
            let made = TypeMetrics(
                served: Counter(label: MetricFamilies.actorCallsServed.name, dimensions: dimensions),
                activations: Meter(label: MetricFamilies.actorActivations.name, dimensions: dimensions),
                passivations: Counter(label: MetricFamilies.actorPassivations.name, dimensions: dimensions))
            types[label] = made
            return made
        }
    }

    /// The series of calls to `target` of actors of `type`, run on this node (`local`) or another (made once per
    /// type, method and locality, then looked up). Types and methods come from this process's own code.
    func call(type: String, target: RemoteCallTarget, local: Bool) -> CallMetrics {
        let key = CallKey(type: type, target: target.identifier, local: local)
        return calls.withLock { calls in
            if let known = calls[key] { return known }
            let overflow = calls.count >= Self.maxCallSeries
            let method = overflow ? "other" : Self.methodName(target)
            let dimensions = [("node", node), ("type", overflow ? "other" : type), ("method", method), ("locality", local ? "local" : "remote")]
            let made = CallMetrics(
                succeeded: Counter(label: MetricFamilies.actorCalls.name, dimensions: dimensions + [("outcome", "ok")]),
                threw: Counter(label: MetricFamilies.actorCalls.name, dimensions: dimensions + [("outcome", "error")]),
                failed: Counter(label: MetricFamilies.actorCalls.name, dimensions: dimensions + [("outcome", "failed")]),
                duration: Metrics.Timer(label: MetricFamilies.actorCallDuration.name, dimensions: dimensions))
            calls[key] = made
            return made
        }
    }

    /// A distributed method's base name from its target ("OrderActor.place(_:intent:)" → "place"), "unknown" when the
    /// runtime cannot name it.
    static func methodName(_ target: RemoteCallTarget) -> String {
        let full = target.description
        guard !full.hasPrefix("<") else { return "unknown" }
        let head = full.split(separator: "(", maxSplits: 1).first ?? ""
        let name = head.split(separator: ".").last.map(String.init) ?? ""
        return name.isEmpty ? "unknown" : name
    }
}

extension Duration {
    /// Whole nanoseconds, clamped to Int64 (a tunable of centuries is as good as infinite).
    fileprivate var tunableNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflowed) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflowed ? (seconds < 0 ? .min : .max) : sum
    }
}
