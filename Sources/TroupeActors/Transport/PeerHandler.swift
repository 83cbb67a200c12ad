import Logging
import NIOCore
import NIOSSL

/// What a connection reports to the actor system. Called on the connection's event loop.
protocol PeerConnectionDelegate: AnyObject, Sendable {
    func connectionEstablished(_ connection: PeerConnection, peer: NodeID)
    func callsReceived(_ calls: [CallEnvelope], on connection: PeerConnection)
    func replyReceived(_ reply: ReplyEnvelope, on connection: PeerConnection)
    func connectionClosed(_ connection: PeerConnection, reason: ActorSystemError)
}

/// The protocol handler of one node-to-node connection: handshake, then calls and replies.
///
/// Inbound calls read in one burst are handed to the system as one batch on `channelReadComplete`;
/// outbound frames written during one event-loop tick are flushed together (one syscall).
final class PeerHandler: ChannelDuplexHandler {
    typealias InboundIn = WireEnvelope
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var handshake: HandshakeMachine
    private let role: HandshakeMachine.Role
    private let connection: PeerConnection
    private weak var delegate: (any PeerConnectionDelegate)?
    private let logger: Logger
    private let handshakeTimeout: TimeAmount
    private var pendingCalls: [CallEnvelope] = []
    private var flushScheduled = false
    private var closeReason: ActorSystemError?
    private var handshakeTimer: Scheduled<Void>?

    init(
        role: HandshakeMachine.Role,
        local: NodeID,
        cluster: String,
        secret: [UInt8],
        connection: PeerConnection,
        delegate: any PeerConnectionDelegate,
        handshakeTimeout: TimeAmount,
        logger: Logger
    ) {
        self.role = role
        self.handshake = HandshakeMachine(role: role, local: local, cluster: cluster, secret: secret)
        self.connection = connection
        self.delegate = delegate
        self.handshakeTimeout = handshakeTimeout
        self.logger = logger
    }

    // MARK: - Lifecycle

    func channelActive(context: ChannelHandlerContext) {
        let loop = context.eventLoop.assumeIsolated()
        handshakeTimer = loop.scheduleTask(in: handshakeTimeout) { [self] in
            guard !self.handshake.isEstablished else { return }
            self.fail(context: context, ActorSystemError(.handshakeFailed, "handshake did not complete in time"), notify: false)
        }
        if role == .dialer {
            writeEnvelope(handshake.start(nonce: Self.nonce()), context: context)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        let reason = closeReason ?? ActorSystemError(.connectionClosed, "connection to \(connection.peerDescription) closed")
        connection.handshakeFailed(reason)
        delegate?.connectionClosed(connection, reason: reason)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason: ActorSystemError
        if let decoding = error as? WireDecodingError {
            reason = ActorSystemError(.protocolViolation, "peer sent an invalid frame: \(decoding.reason)", underlying: decoding)
        } else if error is ByteToMessageDecoderError {
            reason = ActorSystemError(.protocolViolation, "peer sent an invalid frame", underlying: error)
        } else if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            reason = ActorSystemError(.handshakeFailed, "TLS with \(connection.peerDescription) failed: \(error)", underlying: error)
        } else {
            reason = ActorSystemError(.connectionClosed, "connection to \(connection.peerDescription) failed", underlying: error)
        }
        logger.info("closing peer connection", metadata: [
            "actor.connection.id": "\(connection.id)", "actor.peer": "\(connection.peerDescription)",
            "error": "\(String(reflecting: error))",
        ])
        closeReason = closeReason ?? reason
        connection.handshakeFailed(reason)
        context.close(promise: nil)
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard handshake.isEstablished else {
            handleHandshake(envelope, context: context)
            return
        }
        switch envelope {
        case .call(let call):
            pendingCalls.append(call)
        case .reply(let reply):
            delegate?.replyReceived(reply, on: connection)
        case .goodbye:
            closeReason = ActorSystemError(.connectionClosed, "peer \(connection.peerDescription) is shutting down")
            context.close(promise: nil)
        case .hello, .challenge, .auth, .refused:
            fail(context: context, ActorSystemError(.protocolViolation, "handshake message after the handshake"), notify: false)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !pendingCalls.isEmpty {
            let calls = pendingCalls
            pendingCalls.removeAll(keepingCapacity: true)
            delegate?.callsReceived(calls, on: connection)
        }
        context.fireChannelReadComplete()
    }

    private func handleHandshake(_ envelope: WireEnvelope, context: ChannelHandlerContext) {
        switch handshake.received(envelope, listenerNonce: Self.nonce()) {
        case .send(let reply):
            writeEnvelope(reply, context: context)
        case .established(let peer, let reply):
            handshakeTimer?.cancel()
            if let reply { writeEnvelope(reply, context: context) }
            connection.markEstablished(peer: peer)
            logger.debug("peer connection established", metadata: [
                "actor.connection.id": "\(connection.id)", "actor.peer": "\(peer)",
            ])
            delegate?.connectionEstablished(connection, peer: peer)
        case .refuse(let reason, let notify):
            logger.warning("peer handshake refused", metadata: [
                "actor.connection.id": "\(connection.id)", "reason": "\(reason)",
                "actor.peer.address": "\(context.remoteAddress.map { "\($0)" } ?? "?")",
            ])
            fail(context: context, ActorSystemError(.handshakeFailed, reason), notify: notify)
        }
    }

    private func fail(context: ChannelHandlerContext, _ error: ActorSystemError, notify: Bool) {
        closeReason = closeReason ?? error
        connection.handshakeFailed(error)
        if notify {
            var buffer = context.channel.allocator.buffer(capacity: 64)
            WireEnvelope.refused(reason: error.message).encodeFrame(into: &buffer)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: - Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        scheduleFlush(context: context)
    }

    private func writeEnvelope(_ envelope: WireEnvelope, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 128)
        envelope.encodeFrame(into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: nil)
        scheduleFlush(context: context)
    }

    /// Coalesces flushes: everything written before the scheduled task runs goes out in one syscall.
    private func scheduleFlush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            self.flushScheduled = false
            context.flush()
        }
    }

    private static func nonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<WireEnvelope.nonceLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }
}

@available(*, unavailable)
extension PeerHandler: Sendable {}
