import Distributed
import NIOCore
import TroupeCore
import Logging
import Metrics

/// How the system creates activations of one registered virtual actor type.
struct RegisteredActorType: Sendable {
    let name: String
    /// Distributed targets of the type start with this (`$s` + the type's mangled name).
    let targetPrefix: String
    let make: @Sendable (ClusterActorSystem, ActorID) async throws -> any ActivationCell
}

/// One live activation, referenced only by the registry: when the cell's reference to the actor is
/// the only one, nobody outside the system holds the activation (no call is running on it either).
protocol ActivationCell: AnyObject, Sendable {
    var actor: any VirtualActor { get }
    func isHeldElsewhere() -> Bool
}

/// The cell keeps the concrete type so that the uniqueness check sees the stored reference itself
/// (opening an existential for `inout` would check a temporary copy).
final class TypedActivationCell<A: VirtualActor>: ActivationCell, @unchecked Sendable {
    // Invariant: `typed` is only accessed under the system's mutex (the registry owns the cell).
    private var typed: A
    init(_ actor: A) { self.typed = actor }

    var actor: any VirtualActor { typed }

    func isHeldElsewhere() -> Bool {
        !isKnownUniquelyReferenced(&typed)
    }
}

struct ActivationEntry {
    let cell: any ActivationCell
    var lastUsed: ContinuousClock.Instant
    /// The activation loaded no stored state and has written none since: it only answered reads of a key
    /// that does not exist, and is passivated after ``ClusterConfiguration/emptyStateIdleTimeout``.
    var stateless = false
    /// When to check that no other activation of the key wrote since this one loaded or last checked, and how
    /// many such checks were made (see ``ClusterConfiguration/handoffRecheck``); nil: none due.
    var recheckAt: ContinuousClock.Instant?
    var rechecks = 0
    /// The ``SystemState/membersVersion`` at which routing last found this node the key's owner: until the
    /// members change, calls to the key skip placement.
    var ownedAtVersion: UInt64?
    var actor: any VirtualActor { cell.actor }

    /// Marks the activation used at `now` and returns it (one dictionary access through optional chaining).
    mutating func use(at now: ContinuousClock.Instant) -> any VirtualActor {
        lastUsed = now
        return cell.actor
    }

    /// As ``use(at:)``, when routing found this node the owner at members version `version`; nil otherwise.
    mutating func use(at now: ContinuousClock.Instant, ifOwnedAt version: UInt64) -> (any VirtualActor)? {
        guard ownedAtVersion == version else { return nil }
        return use(at: now)
    }
}

extension ClusterActorSystem {
    // MARK: - Registration

    /// Hosts virtual actors of type `A` on this node. Call before the node joins the membership
    /// (that is, before ``run()``) so placement knows which members host the type.
    public func register<A: VirtualActor>(_ type: A.Type) {
        let name = A.virtualTypeName
        declarePlacement(A.self)
        let prefix = "$s" + (_mangledTypeName(A.self) ?? name)
        let registered = RegisteredActorType(name: name, targetPrefix: prefix) { system, id in
            let actor = ClusterActorSystem.$activating.withValue((id, ObjectIdentifier(A.self))) {
                A(actorSystem: system)
            }
            _ = try await actor.whenLocal { try await $0._activate() }
            return TypedActivationCell(actor)
        }
        state.withLock { state in
            state.registry[name] = registered
            state.hostedTypes.insert(name)
        }
    }

    /// Records the placement group of `A`, if it has one (done for every type registered or referenced; after
    /// the first time for a type it only reads).
    func declarePlacement<A: VirtualActor>(_ type: A.Type) {
        guard let group = A.placementGroup else { return }
        let name = A.virtualTypeName
        state.withLock { state in
            if state.placementGroups[name] == nil { state.placementGroups[name] = group }
        }
    }

    /// Allows `T` as a generic substitution in calls received from the network.
    public func registerGenericSubstitution<T>(_ type: T.Type) {
        guard let name = _mangledTypeName(type) else { return }
        state.withLock { $0.genericSubstitutions[name] = type }
    }

    /// Lets calls made from this node throw `type` as itself when a peer's actor throws it: the reply names the
    /// error's type, and only the types registered here are decoded (a reply naming another type arrives as a
    /// ``RemoteCallError`` with the error's code). Register on every node that catches the type — client-only
    /// nodes (gateways, tools) included. An actor's own node needs no registration for its local calls.
    public func registerRemoteError(_ type: any CodableRemoteError.Type) {
        guard let name = _mangledTypeName(type) else { return }
        state.withLock { $0.remoteErrorTypes[name] = type }
    }

    // MARK: - References

    /// A reference to the virtual actor `A` with `key`, usable from any node.
    ///
    /// On the node that owns the key this activates the actor if needed and returns the activation;
    /// elsewhere it returns a reference whose calls are routed to the owner.
    public func actor<A: VirtualActor>(_ type: A.Type, key: String) async throws -> A {
        try ActorID.validate(key: key)
        let id = ActorID.virtual(type: A.virtualTypeName, key: key)
        declarePlacement(A.self)
        let local = state.withLock { state -> RegisteredActorType? in
            guard let registered = state.registry[id.type],
                  state.owner(type: id.type, key: key)?.node.name == node.name
            else { return nil }
            return registered
        }
        if let local {
            let activation = try await activation(of: id, registered: local)
            guard let typed = activation as? A else {
                throw ActorSystemError(.typeNotRegistered, "\(id.type) is registered with a different Swift type than \(A.self)")
            }
            return typed
        }
        return try A.resolve(id: id, using: self)
    }

    /// A reference to the virtual actor `A` with `key` whose every call is routed by the system, even
    /// when this node owns the key.
    ///
    /// Unlike ``actor(_:key:)`` it never pins a local activation: hold it as long as you like; calls
    /// follow the key through passivation, migration and fencing (retried on the current owner).
    /// Local calls through it cost more than direct ones (they go through the runtime's target lookup).
    public func reference<A: VirtualActor>(_ type: A.Type, key: String) throws -> A {
        try ActorID.validate(key: key)
        declarePlacement(A.self)
        return try Self.$routedReference.withValue(true) {
            try A.resolve(id: ActorID.virtual(type: A.virtualTypeName, key: key), using: self)
        }
    }

    /// Counters of this node since it started.
    public struct Statistics: Sendable, Hashable, Codable {
        /// Activations alive now.
        public var activations: Int
        /// Activations created since start.
        public var activated: Int
        /// Activations passivated (idle, moved or at shutdown).
        public var passivated: Int
        /// Activations deactivated because a write lost its compare-and-set.
        public var fenced: Int
        /// Remote calls waiting for a reply.
        public var callsInFlight: Int
        /// Open peer connections.
        public var connections: Int
    }

    /// Counters of this node: activations, passivations, calls served and routed, fenced writes.
    public var statistics: Statistics {
        state.withLock { state in
            Statistics(
                activations: state.activations.count, activated: state.counters.activated,
                passivated: state.counters.passivated, fenced: state.counters.fenced,
                callsInFlight: state.pending.count, connections: state.connections.count
            )
        }
    }

    /// The owner of a virtual actor under this node's current view of the membership.
    public func owner(of id: ActorID) -> ClusterMember? {
        state.withLock { $0.owner(type: id.type, key: id.key) }
    }

    /// Virtual actors active on this node.
    public var activeActorIDs: [ActorID] {
        state.withLock { Array($0.activations.keys) }
    }

    /// The current member list as this node sees it.
    public var members: [ClusterMember] { state.withLock { $0.members } }

    // MARK: - Activation

    /// The local activation of `id`, created (and its state loaded) on first use. Concurrent first
    /// calls share one activation.
    func activation(of id: ActorID, registered: RegisteredActorType) async throws -> any VirtualActor {
        enum Step {
            case ready(any VirtualActor)
            case wait(EventLoopFuture<any VirtualActor>)
            case create(EventLoopPromise<any VirtualActor>)
            case shuttingDown
        }
        let now = clock.now
        let step = state.withLock { state -> Step in
            if state.shuttingDown { return .shuttingDown }
            if let actor = state.activations[id]?.use(at: now) { return .ready(actor) }
            if let future = state.activating[id] { return .wait(future) }
            let promise = configuration.eventLoopGroup.any().makePromise(of: (any VirtualActor).self)
            state.activating[id] = promise.futureResult
            return .create(promise)
        }
        switch step {
        case .ready(let actor):
            return actor
        case .wait(let future):
            return try await future.get()
        case .shuttingDown:
            throw ActorSystemError(.systemShuttingDown, "\(node.name) is shutting down")
        case .create(let promise):
            do {
                let cell = try await registered.make(self, id)
                let actor = cell.actor
                let fenced = state.withLock { state -> Bool in
                    state.activating[id] = nil
                    let stateless = state.loadedEmpty.remove(id) != nil
                    // Fenced during its own activation (a write in `didActivate` lost to a newer activation
                    // elsewhere): registering it would answer every later call with "fenced" for as long as it
                    // lived. The caller re-routes, and the next activation loads the newer state.
                    if state.fencedWhileActivating.removeValue(forKey: id)?.contains(ObjectIdentifier(actor)) == true { return true }
                    var entry = ActivationEntry(cell: cell, lastUsed: clock.now, stateless: stateless)
                    // Made while the members' views may still differ: another node may believe it owns the key
                    // too, and write after this activation loaded. Checked later (see `recheckHandoffs`).
                    if let changed = state.membersChangedAt, clock.now - changed < configuration.handoffRecheck {
                        entry.recheckAt = clock.now + configuration.handoffRecheck
                        state.scheduleRecheck(at: clock.now + configuration.handoffRecheck)
                    }
                    state.activations[id] = entry
                    state.counters.activated += 1
                    return false
                }
                if fenced {
                    let error = ActorSystemError(.fenced, "\(id) lost a write to a newer activation while it was being activated")
                    promise.fail(error)
                    throw error
                }
                metrics.of(id.type).activations.increment()
                logger.debug("actor activated", metadata: ["actor.id": "\(id)"])
                promise.succeed(actor)
                return actor
            } catch {
                state.withLock { state in
                    state.activating[id] = nil
                    state.loadedEmpty.remove(id)
                    state.fencedWhileActivating[id] = nil
                }
                promise.fail(error)
                throw error
            }
        }
    }

    /// Called by a persistent actor whose write lost the compare-and-set: removes that activation — only if it
    /// is still the one registered for `id`. An instance dropped earlier (the membership lapsed, it moved, it
    /// was passivated) may still finish work it had started (a saga's drive, an outbox relay) and lose a write
    /// then; it must not take down the activation that replaced it on this node, whose next write would in
    /// turn be refused after a reload elsewhere — a chain in which every new activation of a key was removed
    /// by the one before it, and calls to the key kept failing as fenced.
    func deactivateFenced(_ id: ActorID, instance: ObjectIdentifier) {
        let removed = state.withLock { state -> ActivationEntry? in
            guard let entry = state.activations[id], ObjectIdentifier(entry.actor) == instance else {
                if state.activating[id] != nil { state.fencedWhileActivating[id, default: []].insert(instance) }
                return nil
            }
            state.activations[id] = nil
            state.counters.fenced += 1
            return entry
        }
        if removed != nil {
            metrics.of(id.type).activations.decrement()
            metrics.fenced.increment()
            logger.info("stale activation fenced", metadata: ["actor.id": "\(id)"])
        }
    }

    func loadState(of id: ActorID) async throws -> VersionedState? {
        do {
            let stored = try await stateStore.load(type: id.type, key: id.key)
            if stored == nil {
                state.withLock { state in
                    if state.activating[id] != nil { state.loadedEmpty.insert(id) }  // an activation, not a fencing read
                }
            }
            return stored
        } catch {
            throw ActorSystemError(.stateStore, "loading the state of \(id) failed", underlying: error)
        }
    }

    func writeState(of id: ActorID, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
        let started = clock.now
        defer {
            // Writes to one key are serial (the activation waits for each): a slow store holds up every caller.
            let elapsed = clock.now - started
            if elapsed > .seconds(1) {
                logger.warning("slow state write", metadata: ["actor.id": "\(id)", "actor.state.write_ms": "\(Int(elapsed.seconds * 1000))"])
            }
        }
        do {
            let written = try await stateStore.compareAndSet(type: id.type, key: id.key, expectedVersion: expectedVersion, bytes: bytes)
            if written {
                state.withLock { state in
                    state.loadedEmpty.remove(id)
                    state.activations[id]?.stateless = false
                }
            }
            return written
        } catch {
            throw ActorSystemError(.stateStore, "writing the state of \(id) failed", underlying: error)
        }
    }

    // MARK: - Handoffs

    /// How many activations one sweep re-checks at most (see ``recheckHandoffs(now:)``).
    package static let rechecksPerSweep = 1_000
    /// How many of a sweep's re-check reads are in flight at once.
    package static let recheckReadsInFlight = 32

    /// While the members' views differ after a change, two nodes may each take themselves for a key's owner.
    /// A write by either fences the other at its next write, but an activation that only answers reads would
    /// serve the state it loaded for as long as it lived — found by the deterministic simulation: an order
    /// cancelled by its saga on the old owner kept reading "created" on the new one, which had activated it
    /// milliseconds earlier and never wrote. So an activation made (or still alive) around a membership change
    /// compares its version with the stored one after ``ClusterConfiguration/handoffRecheck``, again after
    /// three times that and nine times that (a slow or partitioned old owner may write late); a stale one is
    /// dropped, and the next call loads the newer state. One read per check; none while the members are stable.
    ///
    /// A membership change makes every activation of the node due: the checks are spread over sweeps, at most
    /// ``rechecksPerSweep`` a sweep with ``recheckReadsInFlight`` reads at once (100k activations: 100 sweeps).
    func recheckHandoffs(now: ContinuousClock.Instant) async {
        let due = state.withLock { state -> [(ActorID, any VirtualActor, ObjectIdentifier)] in
            guard let next = state.nextRecheckAt, next <= now else { return [] }
            state.nextRecheckAt = nil
            var due: [(ActorID, any VirtualActor, ObjectIdentifier)] = []
            var index = state.activations.startIndex
            while index != state.activations.endIndex {
                defer { index = state.activations.index(after: index) }
                guard let at = state.activations.values[index].recheckAt else { continue }
                guard at <= now, due.count < Self.rechecksPerSweep else {
                    // Not due yet, or due beyond this sweep's share: left for a later sweep.
                    state.scheduleRecheck(at: at)
                    continue
                }
                let rechecks = state.activations.values[index].rechecks + 1
                let again = rechecks < 3 ? now + configuration.handoffRecheck * (rechecks == 1 ? 2 : 6) : nil
                state.activations.values[index].rechecks = rechecks
                state.activations.values[index].recheckAt = again
                if let again { state.scheduleRecheck(at: again) }
                let actor = state.activations.values[index].actor
                due.append((state.activations.keys[index], actor, ObjectIdentifier(actor)))
            }
            return due
        }
        guard !due.isEmpty else { return }
        // At most `recheckReadsInFlight` reads at once, so that a node with many activations does not send the
        // store a burst of them at a membership change.
        await withTaskGroup(of: Void.self) { group in
            for (position, (id, actor, instance)) in due.enumerated() {
                if position >= Self.recheckReadsInFlight { await group.next() }
                group.addTask {
                    let current = try? await actor.whenLocal { try await $0._isCurrent() }
                    guard current == false else { return }
                    self.logger.info("activation dropped: another activation wrote after it loaded (membership handoff)",
                                     metadata: ["actor.id": "\(id)"])
                    self.deactivateFenced(id, instance: instance)
                }
            }
        }
    }

    // MARK: - Passivation

    /// Passivates activations that are idle or whose key this node no longer owns, unless someone
    /// outside the system holds them.
    func passivateIdleAndMoved(now: ContinuousClock.Instant, checkIdle: Bool = true) async {
        let limit = configuration.maxActivations
        let liveIdle = idleTimeout
        let victims = state.withLock { state -> [(ActorID, any VirtualActor, moved: Bool)] in
            let checkOwnership = state.membersVersion != state.ownershipCheckedVersion
            let overLimit = state.activations.count > limit
            guard checkOwnership || checkIdle || overLimit else { return [] }
            var victims: [(ActorID, any VirtualActor, moved: Bool)] = []
            var movedButBusy = false
            for (id, entry) in state.activations {
                let moved = checkOwnership && state.owner(type: id.type, key: id.key)?.node.name != node.name
                let idleTimeout = entry.stateless ? min(configuration.emptyStateIdleTimeout, liveIdle) : liveIdle
                let idle = checkIdle && now - entry.lastUsed >= idleTimeout
                guard moved || idle else { continue }
                guard !entry.cell.isHeldElsewhere() else {
                    movedButBusy = movedButBusy || moved
                    continue
                }
                victims.append((id, entry.actor, moved))
            }
            // Past the activation limit, the least recently used go first (idle ones are already among the victims).
            let excess = state.activations.count - victims.count - limit
            if excess > 0 {
                let chosen = Set(victims.map(\.0))
                let oldest = state.activations.filter { !chosen.contains($0.key) && !$0.value.cell.isHeldElsewhere() }
                    .sorted { $0.value.lastUsed < $1.value.lastUsed }.prefix(excess)
                victims += oldest.map { ($0.key, $0.value.actor, false) }
            }
            // A moved activation that was busy is looked at again on the next sweep.
            if checkOwnership, !movedButBusy { state.ownershipCheckedVersion = state.membersVersion }
            for (id, _, _) in victims { state.activations[id] = nil }
            state.counters.passivated += victims.count
            return victims
        }
        for (id, actor, moved) in victims {
            // A moved activation stores nothing more: its new owner may already have loaded the state.
            await passivate(id, actor, storeDeferred: !moved)
        }
    }

    /// Passivates every activation: at shutdown (storing what they deferred), or after this node's membership
    /// lapsed (storing nothing more: others may own their keys now).
    func passivateAll(storeDeferred: Bool) async {
        let all = state.withLock { state -> [(ActorID, any VirtualActor)] in
            let all = state.activations.map { ($0.key, $0.value.actor) }
            state.activations.removeAll()
            state.counters.passivated += all.count
            return all
        }
        for (id, actor) in all { await passivate(id, actor, storeDeferred: storeDeferred) }
    }

    private func passivate(_ id: ActorID, _ actor: any VirtualActor, storeDeferred: Bool) async {
        do {
            _ = try await actor.whenLocal { try await $0._passivate(storeDeferred: storeDeferred) }
        } catch {
            logger.info("passivation hook failed", metadata: ["actor.id": "\(id)", "error": "\(String(reflecting: error))"])
        }
        metrics.of(id.type).activations.decrement()
        metrics.of(id.type).passivations.increment()
        logger.debug("actor passivated", metadata: ["actor.id": "\(id)"])
    }
}
