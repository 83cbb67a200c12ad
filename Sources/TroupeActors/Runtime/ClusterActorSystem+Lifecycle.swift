import Logging
import NIOCore
public import ServiceLifecycle
public import TroupeCore
import Synchronization

extension ClusterActorSystem: Service {
    /// Joins the membership, serves inbound calls, enforces call deadlines, passivates idle and
    /// moved activations, and follows membership changes — until graceful shutdown, cancellation or
    /// ``shutdown()``. Then it fails calls in flight, closes connections, passivates every
    /// activation and leaves the membership. Call it once.
    public func run() async throws {
        let (_, alreadyRunning) = runStarted.compareExchange(expected: false, desired: true, ordering: .relaxed)
        precondition(!alreadyRunning, "ClusterActorSystem.run() called twice on \(node.name)")
        membership.whenLapsed { [weak self] in await self?.dropActivationsAfterLapse() }
        try await membership.join(member)
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withDiscardingTaskGroup { group in
                    group.addTask { await self.followMembership() }
                    group.addTask { await self.sweep() }
                    for await batch in inbound {
                        for call in batch.calls {
                            group.addTask(executorPreference: batch.connection.executor) { await self.serve(call, on: batch.connection) }
                        }
                    }
                    group.cancelAll()
                }
            } onGracefulShutdown: {
                self.shutdown()
            }
        } onCancel: {
            self.shutdown()
        }
        await background.stop()
        deadlines.stop()
        await passivateAll(storeDeferred: true)
        do {
            try await membership.leave(member)
        } catch {
            logger.info("leaving the membership failed", metadata: ["error": "\(String(reflecting: error))"])
        }
        logger.debug("node stopped")
    }

    /// Stops the node: new and in-flight calls fail with ``ActorSystemError/Code/systemShuttingDown``,
    /// peers are told and disconnected, the listener closes, and ``run()`` returns after passivating.
    /// Safe to call more than once and from any thread.
    public func shutdown() {
        let (connections, pending) = state.withLock { state -> ([PeerConnection], [PendingCall]) in
            guard !state.shuttingDown else { return ([], []) }
            state.shuttingDown = true
            let connections = Array(state.connections.values)
            let pending = Array(state.pending.values)
            state.pending.removeAll()
            state.peers.removeAll()
            return (connections, pending)
        }
        guard !connections.isEmpty || !pending.isEmpty || serverChannel.isActive else { return }
        logger.debug("node shutting down", metadata: ["actor.calls.in_flight": "\(pending.count)"])
        serverChannel.close(promise: nil)
        for call in pending {
            call.continuation.resume(throwing: ActorSystemError(.systemShuttingDown, "\(node.name) is shutting down"))
        }
        for connection in connections {
            connection.send(.goodbye)
            connection.channel.eventLoop.execute { connection.close() }
        }
        inboundContinuation.finish()
    }

    /// Whether ``shutdown()`` has begun.
    public var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    private func followMembership() async {
        for await members in membership.memberUpdates() {
            let (changed, departed) = state.withLock { state -> (Bool, [PeerConnection]) in
                guard state.members != members else { return (false, []) }
                let now = clock.now
                state.membersChangedAt = now
                var index = state.activations.startIndex
                while index != state.activations.endIndex {
                    state.activations.values[index].recheckAt = now + configuration.handoffRecheck
                    state.activations.values[index].rechecks = 0
                    index = state.activations.index(after: index)
                }
                if !state.activations.isEmpty { state.scheduleRecheck(at: now + configuration.handoffRecheck) }
                let remaining = Set(members.map(\.node))
                let departed = state.members.filter { !remaining.contains($0.node) }.compactMap { state.peers[$0.node.name] }
                state.members = members
                state.membersVersion &+= 1
                return (true, departed)
            }
            if changed {
                membersChanged.notify()
                logger.debug("membership changed", metadata: ["actor.members": "\(members.map(\.node.name))"])
            }
            // A member that left (or whose lease expired: dead, or partitioned away with its connection silent)
            // will not answer: its calls in flight fail now, as retryable, instead of waiting out their deadline,
            // and the next call goes to the key's new owner.
            for connection in departed {
                logger.debug("closing the connection to a departed member", metadata: ["actor.peer": "\(connection.peerDescription)"])
                connection.close()
            }
        }
    }

    /// This node's membership lapsed: the others may have activated its keys and written newer state, so
    /// every activation here may be stale. Stale writes are fenced anyway; dropping them before the node is
    /// seen again also keeps stale *reads* from being served. Runs before the node joins again.
    func dropActivationsAfterLapse() async {
        let count = state.withLock { $0.activations.count }
        logger.warning("membership lapsed: dropping every activation, their state may be stale", metadata: ["actor.activations": "\(count)"])
        await passivateAll(storeDeferred: false)
    }

    private func sweep() async {
        var lastIdleCheck = clock.now
        // Idleness is a matter of minutes: scanning every activation more often than this is wasted work.
        let shortestIdle = min(configuration.idleTimeout, configuration.emptyStateIdleTimeout)
        let idleCheckInterval = max(Duration.milliseconds(50), min(shortestIdle / 10, .seconds(1)))
        while !Task.isCancelled {
            do {
                try await clock.sleep(for: configuration.sweepInterval)
            } catch {
                return
            }
            let now = clock.now
            expireCalls(now: now)
            deadlines.fireDue()
            await recheckHandoffs(now: now)
            // Ownership is checked when the membership changed, idleness every `idleCheckInterval`.
            let checkIdle = now - lastIdleCheck >= idleCheckInterval
            if checkIdle { lastIdleCheck = now }
            await passivateIdleAndMoved(now: now, checkIdle: checkIdle)
        }
    }
}

extension ClusterActorSystem {
    /// The next delay of `backoff`, its jitter drawn from the system's randomness (``ClusterConfiguration/random``).
    public func nextDelay(_ backoff: inout Backoff) -> Duration {
        var generator = configuration.random.generator
        return backoff.next(using: &generator)
    }

    /// Sleeps for `duration` on the system's clock; returns early (without throwing) when the task is cancelled.
    public func pause(_ duration: Duration) async {
        try? await clock.sleep(for: duration)
    }

    /// Sleeps for the next delay of `backoff` on the system's clock (see ``nextDelay(_:)`` and ``pause(_:)``).
    public func pause(_ backoff: inout Backoff) async {
        await pause(nextDelay(&backoff))
    }
}
