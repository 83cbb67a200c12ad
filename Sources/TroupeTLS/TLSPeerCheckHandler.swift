public import Logging
import Metrics
public import NIOCore
public import NIOSSL
import NIOTLS
import TroupeCore

/// Placed right after the TLS handler: once the handshake completes, refuses a peer whose certificate serial
/// is revoked, and logs failed handshakes (wrong CA, expired certificate, plaintext client) with the peer's
/// address. Reads that arrive after a refusal are dropped, so nothing from a refused peer reaches the protocol.
public final class TLSPeerCheckHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let revoked: Set<String>
    private let link: String
    private let logger: Logger
    private var refused = false

    /// - Parameters:
    ///   - revoked: serials in ``TLSSettings/revoked`` form.
    ///   - link: what the connection is, for logs and the metric label (`cluster`, `gateway`, …).
    ///   - logger: where refusals are logged.
    public init(revoked: Set<String>, link: String, logger: Logger) {
        self.revoked = revoked
        self.link = link
        self.logger = logger
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted? = event as? TLSUserEvent, !revoked.isEmpty,
           let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self),
           let certificate = tls.peerCertificate {
            let serial = TLSSettings.serial(of: certificate)
            if revoked.contains(serial) {
                refused = true
                Counter(label: MetricFamilies.tlsPeersRefused.name, dimensions: [("link", link), ("reason", "revoked")]).increment()
                logger.warning("refused a TLS peer: its certificate is revoked", metadata: [
                    "tls.link": "\(link)", "tls.peer.serial": "\(serial)", "tls.peer.address": "\(context.remoteAddress?.description ?? "?")",
                ])
                context.close(promise: nil)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        context.fireChannelRead(data)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            Counter(label: MetricFamilies.tlsPeersRefused.name, dimensions: [("link", link), ("reason", "handshake")]).increment()
            logger.info("TLS handshake failed", metadata: [
                "tls.link": "\(link)", "tls.peer.address": "\(context.remoteAddress?.description ?? "?")", "error": "\(error)",
            ])
        }
        context.fireErrorCaught(error)
    }
}

@available(*, unavailable)
extension TLSPeerCheckHandler: Sendable {}

extension ChannelPipeline.SynchronousOperations {
    /// Adds a TLS server handler with `context` and a ``TLSPeerCheckHandler`` first in the pipeline.
    public func addTLSServer(context: NIOSSLContext, revoked: Set<String>, link: String, logger: Logger) throws {
        try addHandlers([NIOSSLServerHandler(context: context), TLSPeerCheckHandler(revoked: revoked, link: link, logger: logger)],
                        position: .first)
    }

    /// Adds a TLS client handler for `host` (SNI unless it is an IP address) and a ``TLSPeerCheckHandler``
    /// first in the pipeline.
    public func addTLSClient(context: NIOSSLContext, serverName: String?, revoked: Set<String>, link: String, logger: Logger) throws {
        try addHandlers([try NIOSSLClientHandler(context: context, serverHostname: serverName),
                         TLSPeerCheckHandler(revoked: revoked, link: link, logger: logger)],
                        position: .first)
    }
}
