public import NIOCore
import NIOPosix
import TroupeCore

/// How a node listens for and dials its peers: TCP through NIO in production (``TCPClusterTransport``); a
/// simulated network in the deterministic simulation. Either way the system gets NIO channels and installs
/// its own handlers (TLS, frame decoder, handshake) through the initializers.
public protocol ClusterTransport: Sendable {
    /// Starts listening on `host:port` (0: any free port); every accepted connection's channel is passed to
    /// `initializer` on its event loop before it becomes active (a throw closes that connection). Returns the
    /// listening channel: closing it stops accepting, its `localAddress` carries the bound port.
    func listen(
        host: String, port: Int, initializer: @escaping @Sendable (any Channel) throws -> Void
    ) async throws -> any Channel

    /// Connects to `host:port` within `timeout`; `initializer` runs on the new channel's event loop before
    /// it becomes active.
    func connect(
        host: String, port: Int, timeout: Duration, initializer: @escaping @Sendable (any Channel) throws -> Void
    ) async throws -> any Channel
}

/// The production transport: TCP on an NIO event loop group, with Nagle off.
public struct TCPClusterTransport: ClusterTransport {
    /// The event loops the transport's channels run on.
    public let eventLoopGroup: any EventLoopGroup

    /// A transport on `eventLoopGroup`.
    public init(eventLoopGroup: any EventLoopGroup) {
        self.eventLoopGroup = eventLoopGroup
    }

    /// Binds the listener of the cluster transport.
    public func listen(
        host: String, port: Int, initializer: @escaping @Sendable (any Channel) throws -> Void
    ) async throws -> any Channel {
        try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try initializer(channel) } }
            .bind(host: host, port: port)
            .get()
    }

    /// Opens a connection to another member.
    public func connect(
        host: String, port: Int, timeout: Duration, initializer: @escaping @Sendable (any Channel) throws -> Void
    ) async throws -> any Channel {
        try await ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(.nanoseconds(timeout.nanoseconds))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try initializer(channel) } }
            .connect(host: host, port: port)
            .get()
    }
}
