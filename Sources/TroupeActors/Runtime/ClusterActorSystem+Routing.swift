import Distributed
import Instrumentation
import NIOCore
import ServiceContextModule
import Tracing
import TroupeCore
import Logging
import Metrics
import Synchronization

extension ClusterActorSystem {
    // MARK: - Outbound

    /// Routes one call: to a local activation or instance, or over the connection to the owner.
    /// Re-routes after `notOwner` / `fenced` (the owner changed or a stale activation lost a write: the call
    /// had no effect) until the deadline or ``ClusterConfiguration/maxRoutingAttempts``.
    func route(_ id: ActorID, target: RemoteCallTarget, invocation: ClusterInvocationEncoder) async throws -> CallOutcome {
        let start = clock.now
        metrics.inFlight.increment()
        defer { metrics.inFlight.decrement() }
        var local = false
        do {
            let outcome = try await route(id, target: target, invocation: invocation, start: start, local: &local)
            let series = metrics.call(type: id.type, target: target, local: local)
            series.duration.recordNanoseconds((clock.now - start).nanoseconds)
            series.succeeded.increment()
            return outcome
        } catch {
            let series = metrics.call(type: id.type, target: target, local: local)
            series.duration.recordNanoseconds((clock.now - start).nanoseconds)
            (error is ActorSystemError ? series.failed : series.threw).increment()
            throw error
        }
    }

    /// `local`: whether the last attempt ran on this node.
    private func route(_ id: ActorID, target: RemoteCallTarget, invocation: ClusterInvocationEncoder,
                       start: ContinuousClock.Instant, local: inout Bool) async throws -> CallOutcome {
        let deadline = start + (Self.callTimeout ?? callTimeout)
        var attempt = 0
        while true {
            attempt += 1
            let membership = membersChanged.version
            do {
                return try await routeOnce(id, target: target, invocation: invocation, deadline: deadline, local: &local)
            } catch let error as ActorSystemError where error.code == .notOwner || error.code == .fenced {
                let now = clock.now
                guard id.isVirtual, attempt < configuration.maxRoutingAttempts, now < deadline else {
                    throw error
                }
                logger.debug("re-routing call", metadata: ["actor.id": "\(id)", "reason": "\(error.code)", "attempt": "\(attempt)"])
                // Give the membership view a moment to converge — 2 ms, 8 ms, 18 ms… at most 250 ms apart, so that
                // re-routing lasts as long as the call's deadline allows (two members disagreeing about the owner
                // around a restart can take seconds to agree) — and go again at once when it changes; never wait
                // past the deadline.
                let pause = min(Duration.milliseconds(2 * attempt * attempt), .milliseconds(250), deadline - now)
                await membersChanged.wait(after: membership, timeout: pause, clock: clock)
                try Task.checkCancellation()
            } catch let error as ActorSystemError where error.code == .peerUnreachable && id.isVirtual {
                // The owner cannot be reached at all (the call was never sent, so trying again is safe): it is
                // probably dead, and the membership will drop it when its lease expires. Wait for the membership to
                // change, within the call's deadline, and route again — to the key's new owner.
                await membersChanged.wait(after: membership, timeout: max(deadline - clock.now, .zero), clock: clock)
                guard membersChanged.version != membership, clock.now < deadline else {
                    throw error
                }
                logger.debug("re-routing call after a membership change", metadata: ["actor.id": "\(id)", "attempt": "\(attempt)"])
            }
        }
    }

    private func routeOnce(
        _ id: ActorID, target: RemoteCallTarget, invocation: ClusterInvocationEncoder, deadline: ContinuousClock.Instant,
        local: inout Bool
    ) async throws -> CallOutcome {
        if let targetNode = id.node {
            local = targetNode.name == node.name
            if targetNode.name == node.name {
                guard targetNode == node, let instance = state.withLock({ $0.instances[id]?.actor }) else {
                    throw ActorSystemError(.actorNotFound, "no actor \(id) on \(node.name)")
                }
                var decoder = ClusterInvocationDecoder(
                    arguments: .values(invocation.arguments), substitutions: try localSubstitutions(invocation), limits: decodingLimits
                )
                return try await invokeLocally(instance, id: id, target: target, decoder: &decoder)
            }
            return try await send(
                to: targetNode.name, expected: targetNode, id: id, method: target, invocation: invocation, deadline: deadline
            )
        }
        enum Route { case ready(any VirtualActor), local(RegisteredActorType), remote(NodeID), unregistered, nobody }
        let now = clock.now
        let route = state.withLock { state -> Route in
            // An activation this node was the owner of at the current members: no placement to compute.
            if !state.shuttingDown, let actor = state.activations[id]?.use(at: now, ifOwnedAt: state.membersVersion) {
                return .ready(actor)
            }
            guard let owner = state.owner(type: id.type, key: id.key) else { return .nobody }
            guard owner.node.name == node.name else { return .remote(owner.node) }
            guard let registered = state.registry[id.type] else { return .unregistered }
            state.activations[id]?.ownedAtVersion = state.membersVersion
            return .local(registered)
        }
        switch route {
        case .ready, .local: local = true
        default: local = false
        }
        switch route {
        case .ready(let actor):
            var decoder = ClusterInvocationDecoder(
                arguments: .values(invocation.arguments), substitutions: try localSubstitutions(invocation), limits: decodingLimits
            )
            return try await invokeLocally(actor, id: id, target: target, decoder: &decoder)
        case .nobody:
            throw ActorSystemError(.noMemberHostsType, "no live member hosts \(id.type)")
        case .unregistered:
            throw ActorSystemError(.typeNotRegistered, "\(id.type) is placed on this node but not registered here")
        case .local(let registered):
            let actor = try await activation(of: id, registered: registered)
            var decoder = ClusterInvocationDecoder(
                arguments: .values(invocation.arguments), substitutions: try localSubstitutions(invocation), limits: decodingLimits
            )
            return try await invokeLocally(actor, id: id, target: target, decoder: &decoder)
        case .remote(let owner):
            return try await send(to: owner.name, expected: owner, id: id, method: target, invocation: invocation, deadline: deadline)
        }
    }

    private func localSubstitutions(_ invocation: ClusterInvocationEncoder) throws -> [any Any.Type] {
        try invocation.genericSubstitutions.map { name in
            guard let type = _typeByName(name) else {
                throw ActorSystemError(.serialization, "unknown generic substitution \(name)")
            }
            return type
        }
    }

    /// Runs a target on a local actor through the runtime; user errors come back as ``RemoteCallError``
    /// exactly as they would from another node.
    private func invokeLocally(
        _ actor: any DistributedActor, id: ActorID, target: RemoteCallTarget, decoder: inout ClusterInvocationDecoder
    ) async throws -> CallOutcome {
        switch try await execute(actor, target: target, decoder: &decoder) {
        case .value(let value): return .local(value)
        case .void: return .void
        case .error(let error as ActorSystemError): throw error
        case .error(let error as any CodableRemoteError): throw error
        case .error(let error): throw Self.remoteCallError(error)
        case nil: throw ActorSystemError(.protocolViolation, "the target of \(id) completed without a result")
        }
    }

    /// Runs `target` on `actor`: non-generic targets through the system's resolved targets (their mangled name
    /// demangled once, not on every call), generic ones through the Distributed module's own path.
    private func execute(
        _ actor: any DistributedActor, target: RemoteCallTarget, decoder: inout ClusterInvocationDecoder
    ) async throws -> ResultSink.Outcome? {
        if let resolved = targets.resolved(target.identifier) {
            return await resolved.execute(on: actor, decoder: &decoder)
        }
        let sink = ResultSink()
        try await executeGeneric(actor, target: target, decoder: &decoder, handler: ClusterResultHandler(sink: sink))
        return sink.outcome
    }

    private func executeGeneric<A: DistributedActor>(
        _ actor: A, target: RemoteCallTarget, decoder: inout ClusterInvocationDecoder, handler: ClusterResultHandler
    ) async throws {
        try await executeDistributedTarget(on: actor, target: target, invocationDecoder: &decoder, handler: handler)
    }

    private func send(
        to peerName: String, expected: NodeID, id: ActorID, method target: RemoteCallTarget,
        invocation: ClusterInvocationEncoder, deadline: ContinuousClock.Instant
    ) async throws -> CallOutcome {
        let connection = try await connection(to: expected, deadline: deadline)
        let arguments = try invocation.encodedArguments()
        let remaining = deadline - clock.now
        guard remaining > .zero else { throw ActorSystemError(.timeout, "call to \(id) timed out before it was sent") }
        var trace: [String: String] = [:]
        if let context = ServiceContext.current {
            InstrumentationSystem.instrument.inject(context, into: &trace, using: DictionaryInjector())
        }
        let callID = nextCallID.wrappingAdd(1, ordering: .relaxed).oldValue
        let envelope = CallEnvelope(
            callID: callID,
            timeoutMillis: UInt32(clamping: remaining.nanoseconds / 1_000_000 + 1),
            target: id,
            method: target.identifier,
            genericSubstitutions: invocation.genericSubstitutions,
            arguments: arguments,
            trace: trace
        )
        let reply = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<CallOutcomeWire, any Error>) in
                let accepted = state.withLock { state -> Bool in
                    guard !state.shuttingDown else { return false }
                    state.pending[callID] = PendingCall(
                        continuation: continuation, connectionID: connection.id, deadline: deadline, peer: peerName
                    )
                    return true
                }
                guard accepted else {
                    continuation.resume(throwing: ActorSystemError(.systemShuttingDown, "\(node.name) is shutting down"))
                    return
                }
                connection.send(.call(envelope))
            }
        } onCancel: {
            let pending = state.withLock { $0.pending.removeValue(forKey: callID) }
            pending?.continuation.resume(throwing: CancellationError())
        }
        switch reply {
        case .encoded(let bytes): return .encoded(bytes)
        case .void: return .void
        }
    }

    // MARK: - Replies

    func complete(_ reply: ReplyEnvelope, from connection: PeerConnection) {
        let pending = state.withLock { state -> PendingCall? in
            guard let pending = state.pending[reply.callID], pending.connectionID == connection.id else { return nil }
            state.pending[reply.callID] = nil
            return pending
        }
        guard let pending else { return }  // timed out or cancelled already
        switch reply.result {
        case .value(let bytes):
            pending.continuation.resume(returning: .encoded(bytes))
        case .void:
            pending.continuation.resume(returning: .void)
        case .error(let code, let type, let message):
            pending.continuation.resume(throwing: Self.error(fromWire: code, type: type, message: message, peer: pending.peer))
        case .typedError(let code, let type, let message, let mangledName, let payload):
            let typed = codableRemoteError(mangledName: mangledName, payload: payload)
            pending.continuation.resume(throwing: typed ?? Self.error(fromWire: code, type: type, message: message, peer: pending.peer))
        }
    }

    /// Fails calls whose deadline passed.
    func expireCalls(now: ContinuousClock.Instant) {
        let expired = state.withLock { state -> [(UInt64, PendingCall)] in
            let expired = state.pending.filter { $0.value.deadline <= now }
            for (id, _) in expired { state.pending[id] = nil }
            return Array(expired)
        }
        for (_, call) in expired {
            call.continuation.resume(throwing: ActorSystemError(.timeout, "no reply from \(call.peer) before the deadline"))
        }
    }

    /// Fails every call in flight on `connectionID`.
    func failCalls(onConnection connectionID: UInt64, with error: ActorSystemError) {
        let failed = state.withLock { state -> [PendingCall] in
            let failed = state.pending.filter { $0.value.connectionID == connectionID }
            for (id, _) in failed { state.pending[id] = nil }
            return Array(failed.values)
        }
        for call in failed { call.continuation.resume(throwing: error) }
    }

    // MARK: - Inbound

    /// Runs one call received from a peer and sends its reply.
    func serve(_ call: CallEnvelope, on connection: PeerConnection) async {
        metrics.of(call.target.type).served.increment()
        var context = ServiceContext.topLevel
        if !call.trace.isEmpty {
            InstrumentationSystem.instrument.extract(call.trace, into: &context, using: DictionaryExtractor())
        }
        let result: ReplyEnvelope.Result
        let started = clock.now
        defer {
            // The caller gave up on this call (its deadline passed): say what held it, so that a stall can be found.
            let elapsed = clock.now - started
            if call.timeoutMillis > 0, elapsed > .milliseconds(Int64(call.timeoutMillis)) {
                logger.warning("served a call after its caller's deadline", metadata: [
                    "actor.id": "\(call.target)", "actor.method": "\(call.method.prefix(120))",
                    "actor.call.duration_ms": "\(Int(elapsed.seconds * 1000))", "actor.call.timeout_ms": "\(call.timeoutMillis)",
                ])
            }
        }
        do {
            result = try await withSpan("actor.call", context: context, ofKind: .server) { span in
                if span.isRecording { span.attributes["actor.type"] = call.target.type }
                guard call.timeoutMillis > 0, let task = Self.currentTaskHash else { return try await serveUnchecked(call) }
                let served = ServedCall(deadline: started + .milliseconds(Int64(call.timeoutMillis)), task: task)
                defer { served.over.store(true, ordering: .releasing) }
                return try await Self.$servedCall.withValue(served) { try await serveUnchecked(call) }
            }
        } catch let error as ActorSystemError {
            result = .error(code: error.code.wireValue, type: "ActorSystemError", message: error.message)
        } catch {
            let remote = Self.remoteCallError(error)
            if let typed = error as? any CodableRemoteError, let payload = try? BinaryEncoder().encode(typed) {
                result = .typedError(
                    code: "user:" + remote.code, type: remote.type, message: remote.message,
                    mangledName: _mangledTypeName(Swift.type(of: typed)) ?? "", payload: payload
                )
            } else {
                result = .error(code: "user:" + remote.code, type: remote.type, message: remote.message)
            }
        }
        connection.send(.reply(ReplyEnvelope(callID: call.callID, result: result)))
    }

    private func serveUnchecked(_ call: CallEnvelope) async throws -> ReplyEnvelope.Result {
        let actor: any DistributedActor
        let targetPrefix: String
        if let target = call.target.node {
            guard target == node else {
                throw ActorSystemError(.actorNotFound, "\(call.target) does not live on \(node)")
            }
            guard let instance = state.withLock({ $0.instances[call.target]?.actor }) else {
                throw ActorSystemError(.actorNotFound, "no actor \(call.target) on \(node.name)")
            }
            actor = instance
            targetPrefix = "$s" + (_mangledTypeName(type(of: instance)) ?? "?")
        } else {
            enum Route { case ready(any VirtualActor, RegisteredActorType), serve(RegisteredActorType), unregistered, notOwner(String), shuttingDown }
            let now = clock.now
            let route = state.withLock { state -> Route in
                if state.shuttingDown { return .shuttingDown }
                guard let registered = state.registry[call.target.type] else { return .unregistered }
                // An activation this node was the owner of at the current members: no placement to compute.
                if let actor = state.activations[call.target]?.use(at: now, ifOwnedAt: state.membersVersion) {
                    return .ready(actor, registered)
                }
                let owner = state.owner(type: call.target.type, key: call.target.key)
                guard let owner, owner.node.name == node.name else { return .notOwner(owner?.node.name ?? "nobody") }
                state.activations[call.target]?.ownedAtVersion = state.membersVersion
                return .serve(registered)
            }
            switch route {
            case .ready(let ready, let registered):
                actor = ready
                targetPrefix = registered.targetPrefix
            case .shuttingDown:
                throw ActorSystemError(.systemShuttingDown, "\(node.name) is shutting down")
            case .unregistered:
                throw ActorSystemError(.typeNotRegistered, "\(call.target.type) is not registered on \(node.name)")
            case .notOwner(let owner):
                throw ActorSystemError(.notOwner, "\(node.name) does not own \(call.target); owner is \(owner)")
            case .serve(let registered):
                actor = try await activation(of: call.target, registered: registered)
                targetPrefix = registered.targetPrefix
            }
        }
        guard call.method.hasPrefix(targetPrefix) else {
            throw ActorSystemError(.targetNotAllowed, "\(call.method) is not a distributed target of \(call.target.type)")
        }
        let substitutions = try state.withLock { state in
            try call.genericSubstitutions.map { name throws(ActorSystemError) -> any Any.Type in
                guard let type = state.genericSubstitutions[name] else {
                    throw ActorSystemError(.targetNotAllowed, "generic substitution \(name) is not registered")
                }
                return type
            }
        }
        var decoder = ClusterInvocationDecoder(arguments: .encoded(call.arguments), substitutions: substitutions, limits: decodingLimits)
        switch try await execute(actor, target: RemoteCallTarget(call.method), decoder: &decoder) {
        case .value(let value):
            do {
                return .value(try encodeOpened(value))
            } catch {
                throw ActorSystemError(.serialization, "cannot encode the result \(type(of: value))", underlying: error)
            }
        case .void: return .void
        case .error(let error): throw error
        case nil: throw ActorSystemError(.protocolViolation, "the target completed without a result")
        }
    }

    // MARK: - Errors

    static func remoteCallError(_ error: any Error) -> RemoteCallError {
        // An error without a code of its own that says a retry can pass travels as "transient".
        let code = (error as? any RemoteErrorCode)?.remoteErrorCode ?? (isTransient(error) ? RemoteCallError.transientCode : "error")
        return RemoteCallError(code: code, type: String(reflecting: Swift.type(of: error)), message: String(describing: error))
    }

    /// The error a peer encoded (``CodableRemoteError``) as its own type, when the type is registered here
    /// (``registerRemoteError(_:)``) and the bytes decode; nil otherwise (the caller gets a ``RemoteCallError``).
    /// The peer's name is looked up, never handed to the runtime's demangler.
    func codableRemoteError(mangledName: String, payload: [UInt8]) -> (any Error)? {
        enum Lookup { case found(any CodableRemoteError.Type), firstMiss, miss }
        let lookup = state.withLock { state -> Lookup in
            if let type = state.remoteErrorTypes[mangledName] { return .found(type) }
            guard state.unregisteredErrorTypes.count < 64, state.unregisteredErrorTypes.insert(mangledName).inserted else { return .miss }
            return .firstMiss
        }
        switch lookup {
        case .found(let type):
            return try? BinaryDecoder(limits: decodingLimits).decode(type, from: payload)
        case .firstMiss:
            logger.notice("a reply carried a typed error of a type not registered on this node: it arrives as a RemoteCallError (register it with registerRemoteError to catch it by type)",
                          metadata: ["error.type": "\(mangledName.prefix(200))"])
            return nil
        case .miss:
            return nil
        }
    }

    static func error(fromWire code: String, type: String, message: String, peer: String) -> any Error {
        if code.hasPrefix("user:") {
            return RemoteCallError(code: String(code.dropFirst(5)), type: type, message: message)
        }
        let systemCode = ActorSystemError.Code(wireValue: code) ?? .remoteError
        return ActorSystemError(systemCode, "\(peer): \(message)")
    }
}

private func encodeOpened<T: Encodable>(_ value: T) throws -> [UInt8] {
    try BinaryEncoder().encode(value)
}

struct DictionaryInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }
}

struct DictionaryExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? {
        carrier[key]
    }
}
