public import Logging
public import NIOCore
public import NIOSSL

/// A client's TLS, loaded once: the settings and the context built from them, shared by every connection
/// a client opens (the Redis and MongoDB pools, reconnects).
public struct TLSClientConfiguration: Sendable {
    /// The settings it was loaded from.
    public let settings: TLSSettings
    /// The context every connection uses.
    public let context: NIOSSLContext

    /// - Throws: ``TLSError`` naming the file or setting to fix.
    public init(_ settings: TLSSettings, minimumVersion: TLSVersion = .tlsv12) throws {
        self.settings = settings
        self.context = try settings.makeClientContext(minimumVersion: minimumVersion)
    }

    /// Puts TLS first in `channel`'s pipeline for a connection to `host` (SNI and name check unless configured otherwise).
    public func addHandlers(to channel: any Channel, host: String, link: String, logger: Logger) throws {
        try channel.pipeline.syncOperations.addTLSClient(context: context, serverName: settings.sniName(for: host),
                                                        revoked: settings.revoked, link: link, logger: logger)
    }
}
