import Logging
import NIOCore
import NIOSSL
import Synchronization
import TroupeTLS
import TroupeCore
import Metrics

/// The server and client contexts of the cluster's mutual TLS, built once at start.
struct ClusterTLS: Sendable {
    let server: NIOSSLContext
    let client: NIOSSLContext
    let revoked: Set<String>

    init(_ settings: TLSSettings) throws {
        do {
            server = try settings.makeServerContext(requireClientCertificate: true, minimumVersion: .tlsv13)
            // Peers are dialed by address; membership in the cluster CA is the identity, not a host name.
            client = try settings.makeClientContext(minimumVersion: .tlsv13, verifyHostname: false)
        } catch {
            throw ActorSystemError(.invalidConfiguration, "tls: \((error as? TLSError)?.message ?? "\(error)")", underlying: error)
        }
        revoked = settings.revoked
    }
}

/// Lets child channels of the listener reach the system, which exists only after the bind.
final class SystemReference: Sendable {
    private let system = Guarded<ClusterActorSystem?>(nil)
    var value: ClusterActorSystem? { system.withLock { $0 } }
    func set(_ value: ClusterActorSystem?) { system.withLock { $0 = value } }
}

extension ClusterActorSystem {
    // MARK: - Start

    /// Validates `configuration`, binds the listener and returns the node, ready for ``run()``.
    /// - Throws: ``ActorSystemError/Code/invalidConfiguration`` naming the setting to fix, or the bind error.
    public static func start(
        _ configuration: ClusterConfiguration,
        membership: any MembershipProvider,
        stateStore: any ActorStateStore = InMemoryActorStateStore()
    ) async throws -> ClusterActorSystem {
        try configuration.validate()
        let tls = try configuration.tls.map(ClusterTLS.init)
        let logger = configuration.logger
        let reference = SystemReference()
        let serverChannel: any Channel
        do {
            serverChannel = try await configuration.clusterTransport.listen(host: configuration.host, port: configuration.port) { channel in
                guard let system = reference.value else {
                    throw ActorSystemError(.systemShuttingDown, "node not ready")
                }
                // Unauthenticated connections are bounded per node and per remote address.
                let address = channel.remoteAddress?.ipAddress ?? "?"
                guard system.admitUnauthenticated(from: address) else {
                    throw ActorSystemError(.protocolViolation, "too many unauthenticated connections")
                }
                let connection = system.makeConnection(channel: channel, direction: .inbound, expectedPeer: nil, admission: address)
                if let tls {
                    try channel.pipeline.syncOperations.addTLSServer(context: tls.server, revoked: tls.revoked, link: "cluster", logger: logger)
                }
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limit: connection.frameLimit)))
                try channel.pipeline.syncOperations.addHandler(system.makeHandler(role: .listener, connection: connection))
            }
        } catch {
            // The system's reason, as an operator reads it: "bind(…): Address already in use (errno: 98)".
            throw ActorSystemError(
                .invalidConfiguration, "cannot listen on \(configuration.host):\(configuration.port): \(error)", underlying: error
            )
        }
        guard let port = serverChannel.localAddress?.port else {
            try? await serverChannel.close()
            throw ActorSystemError(.invalidConfiguration, "the listener has no local port")
        }
        let node = NodeID(
            name: configuration.nodeName, host: configuration.host, port: port,
            incarnation: configuration.random.next() | 1  // never 0: 0 means "any incarnation" in static member lists
        )
        let system = ClusterActorSystem(
            configuration: configuration, node: node, serverChannel: serverChannel,
            membership: membership, stateStore: stateStore, tls: tls
        )
        reference.set(system)
        system.logger.debug("node listening", metadata: ["actor.node.address": "\(configuration.host):\(port)"])
        return system
    }

    // MARK: - Connections

    func makeConnection(channel: any Channel, direction: PeerConnection.Direction, expectedPeer: NodeID?, admission: String? = nil) -> PeerConnection {
        let connection = PeerConnection(
            id: nextConnectionID.wrappingAdd(1, ordering: .relaxed).oldValue,
            channel: channel, direction: direction, expectedPeer: expectedPeer, admission: admission, maxFrameSize: configuration.maxFrameSize
        )
        let accepted = state.withLock { state -> Bool in
            guard !state.shuttingDown else { return false }
            state.connections[connection.id] = connection
            return true
        }
        if !accepted {
            releaseAdmission(of: connection)
            channel.close(promise: nil)
        }
        return connection
    }

    /// Counts an inbound connection as unauthenticated, unless the node or `address` has too many already.
    func admitUnauthenticated(from address: String) -> Bool {
        let admitted = state.withLock { state -> Bool in
            guard state.unauthenticatedTotal < configuration.maxUnauthenticatedConnections,
                  state.unauthenticated[address, default: 0] < configuration.maxUnauthenticatedPerAddress else { return false }
            state.unauthenticatedTotal += 1
            state.unauthenticated[address, default: 0] += 1
            return true
        }
        if !admitted {
            metrics.refusedConnections.increment()
            logger.info("refused an inbound connection: too many unauthenticated ones", metadata: ["actor.peer.address": "\(address)"])
        }
        return admitted
    }

    /// The connection authenticated or closed: it no longer counts as unauthenticated (once).
    func releaseAdmission(of connection: PeerConnection) {
        guard let address = connection.admission, !connection.admissionReleased.exchange(true, ordering: .relaxed) else { return }
        state.withLock { state in
            state.unauthenticatedTotal -= 1
            let left = state.unauthenticated[address, default: 1] - 1
            state.unauthenticated[address] = left > 0 ? left : nil
        }
    }

    /// Inbound connections not yet authenticated (tests, metrics).
    public var unauthenticatedConnections: Int { state.withLock { $0.unauthenticatedTotal } }

    func makeHandler(role: HandshakeMachine.Role, connection: PeerConnection) -> PeerHandler {
        PeerHandler(
            role: role, local: node, cluster: configuration.clusterName, secret: configuration.secret,
            connection: connection, delegate: self,
            handshakeTimeout: .nanoseconds(configuration.connectTimeout.nanoseconds), logger: logger
        )
    }

    /// An authenticated connection to `peer`, dialed if there is none.
    func connection(to peer: NodeID, deadline: ContinuousClock.Instant) async throws -> PeerConnection {
        enum Step { case ready(PeerConnection), wait(EventLoopFuture<PeerConnection>), dial(EventLoopPromise<PeerConnection>), shuttingDown }
        let step = state.withLock { state -> Step in
            if state.shuttingDown { return .shuttingDown }
            if let connection = state.peers[peer.name] { return .ready(connection) }
            if let future = state.dialing[peer.name] { return .wait(future) }
            let promise = configuration.eventLoopGroup.any().makePromise(of: PeerConnection.self)
            state.dialing[peer.name] = promise.futureResult
            return .dial(promise)
        }
        switch step {
        case .ready(let connection):
            return connection
        case .shuttingDown:
            throw ActorSystemError(.systemShuttingDown, "\(node.name) is shutting down")
        case .wait(let future):
            return try await future.get()
        case .dial(let promise):
            do {
                let connection = try await dial(peer, deadline: deadline)
                state.withLock { state in
                    state.dialing[peer.name] = nil
                    if state.peers[peer.name] == nil { state.peers[peer.name] = connection }
                }
                promise.succeed(connection)
                return connection
            } catch {
                state.withLock { _ = $0.dialing.removeValue(forKey: peer.name) }
                promise.fail(error)
                throw error
            }
        }
    }

    private func dial(_ peer: NodeID, deadline: ContinuousClock.Instant) async throws -> PeerConnection {
        let created = Guarded<PeerConnection?>(nil)
        let timeout = min(configuration.connectTimeout, max(deadline - clock.now, .milliseconds(1)))
        let channel: any Channel
        do {
            channel = try await configuration.clusterTransport.connect(host: peer.host, port: peer.port, timeout: timeout) { [self] channel in
                let connection = makeConnection(channel: channel, direction: .outbound, expectedPeer: peer)
                created.withLock { $0 = connection }
                if let tls {
                    try channel.pipeline.syncOperations.addTLSClient(context: tls.client, serverName: nil, revoked: tls.revoked,
                                                                     link: "cluster", logger: logger)
                }
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limit: connection.frameLimit)))
                try channel.pipeline.syncOperations.addHandler(makeHandler(role: .dialer, connection: connection))
            }
        } catch {
            throw ActorSystemError(.peerUnreachable, "cannot connect to \(peer.name) at \(peer.host):\(peer.port)", underlying: error)
        }
        guard let connection = created.withLock({ $0 }) else {
            channel.close(promise: nil)
            throw ActorSystemError(.peerUnreachable, "connection to \(peer.name) was not initialised")
        }
        let established: NodeID
        do {
            established = try await connection.established.get()
        } catch let error as ActorSystemError {
            throw error
        } catch {
            throw ActorSystemError(.handshakeFailed, "handshake with \(peer.name) failed", underlying: error)
        }
        guard established.name == peer.name, peer.incarnation == 0 || established.incarnation == peer.incarnation else {
            connection.close()
            throw ActorSystemError(.peerUnreachable, "\(peer.host):\(peer.port) is \(established), expected \(peer)")
        }
        return connection
    }
}

// MARK: - PeerConnectionDelegate

extension ClusterActorSystem: PeerConnectionDelegate {
    func connectionEstablished(_ connection: PeerConnection, peer: NodeID) {
        connection.frameLimit.raise()
        releaseAdmission(of: connection)
        guard connection.direction == .inbound else { return }  // outbound ones are registered by the dialer
        state.withLock { state in
            if state.peers[peer.name] == nil { state.peers[peer.name] = connection }
        }
    }

    func callsReceived(_ calls: [CallEnvelope], on connection: PeerConnection) {
        inboundContinuation.yield(InboundBatch(calls: calls, connection: connection))
    }

    func replyReceived(_ reply: ReplyEnvelope, on connection: PeerConnection) {
        complete(reply, from: connection)
    }

    func connectionClosed(_ connection: PeerConnection, reason: ActorSystemError) {
        releaseAdmission(of: connection)
        state.withLock { state in
            state.connections[connection.id] = nil
            if let peer = connection.peer ?? connection.expectedPeer, state.peers[peer.name] === connection {
                state.peers[peer.name] = nil
            }
        }
        logger.debug("peer connection closed", metadata: [
            "actor.connection.id": "\(connection.id)", "actor.peer": "\(connection.peerDescription)", "reason": "\(reason)",
        ])
        failCalls(onConnection: connection.id, with: reason)
    }
}
