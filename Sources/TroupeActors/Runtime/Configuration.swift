public import Logging
public import NIOCore
public import NIOPosix
public import TroupeTLS
public import TroupeCore

/// Everything a ``ClusterActorSystem`` needs to start. Validated by ``validate()`` at start-up.
public struct ClusterConfiguration: Sendable {
    /// Peers must present the same cluster name.
    public var clusterName: String
    /// This node's name, unique in the cluster.
    public var nodeName: String
    /// Address to listen on and to advertise.
    public var host: String
    /// Port to listen on; 0 picks a free port (the bound port is advertised).
    public var port: Int
    /// Shared secret authenticating every connection (HMAC-SHA256); at least 16 bytes.
    public var secret: [UInt8]
    /// Largest frame accepted from a peer; a bigger one closes that connection.
    public var maxFrameSize: Int
    /// Deadline of a remote call unless the caller sets one with ``ClusterActorSystem/withCallTimeout(_:isolation:_:)``.
    public var defaultCallTimeout: Duration
    /// How long dialing a peer and completing the handshake may take.
    public var connectTimeout: Duration
    /// Virtual actors with no call for this long are passivated.
    public var idleTimeout: Duration
    /// How often idle activations, ownership changes and expired calls are checked.
    public var sweepInterval: Duration
    /// How many times a call is re-routed after `notOwner` / `fenced` before it fails (the call's deadline
    /// ends the re-routing first with the default: re-routes are at most 250 ms apart).
    public var maxRoutingAttempts: Int
    /// Limits applied when decoding arguments and replies from peers.
    public var maxDecodingDepth: Int
    /// Inbound connections that have not completed the handshake, at most, on this node and from one remote
    /// address; more are closed at once (they can only hold handshake-sized frames, for `connectTimeout`).
    /// Activations this node keeps at most; past it the least recently used are passivated (checked every
    /// sweep), so that requests for many distinct keys cannot grow the node's memory without bound.
    public var maxActivations = 100_000
    /// How long an activation that found no stored state, and wrote none, stays idle before it is passivated
    /// (reads of keys that do not exist must not pin memory for ``idleTimeout``).
    public var emptyStateIdleTimeout: Duration = .seconds(5)
    /// How long after a membership change an activation checks that no other node's activation of its key
    /// wrote meanwhile (then after 3× and 9× this); see ``ClusterActorSystem`` handoffs. Longer than the
    /// members need to agree plus a call's deadline.
    public var handoffRecheck: Duration = .seconds(10)
    /// Connections still in their handshake accepted at once, in all (past it, new ones are closed).
    public var maxUnauthenticatedConnections = 128
    /// Connections still in their handshake accepted at once from one address.
    public var maxUnauthenticatedPerAddress = 16
    /// Mutual TLS 1.3 on every connection of the cluster transport: `TLSSettings/certificate` and
    /// `TLSSettings/privateKey` are this node's identity, `TLSSettings/ca` the cluster CA that every peer's
    /// certificate must chain to; `TLSSettings/revokedSerials` are refused. The HMAC handshake still runs
    /// inside the tunnel (second factor; cluster name and incarnation). `nil`: plaintext.
    public var tls: TLSSettings?
    /// The runtime's logger.
    public var logger: Logger
    /// The event loops of the transport.
    public var eventLoopGroup: any EventLoopGroup
    /// The time of the runtime: call deadlines, idleness, the sweep (`SystemRuntimeClock`; a `ManualClock`
    /// moves them by hand in tests). The transport's own timers (connect, handshake) stay on the event loops.
    public var clock: any RuntimeClock = SystemRuntimeClock()
    /// How the node listens and dials: `nil` is TCP on ``eventLoopGroup`` (``TCPClusterTransport``); the
    /// deterministic simulation plugs in its simulated network here.
    public var transport: (any ClusterTransport)?
    /// The runtime's randomness (incarnations, instance actor ids): the system's generator; a seeded one in
    /// the simulation.
    public var random: any RandomSource = SystemRandomSource()

    /// A node of `clusterName` named `nodeName`, listening on `host:port` (0: any free port), sharing `secret` with the other members.
    public init(
        clusterName: String = "troupe",
        nodeName: String,
        host: String = "127.0.0.1",
        port: Int = 0,
        secret: [UInt8],
        maxFrameSize: Int = 4 * 1024 * 1024,
        defaultCallTimeout: Duration = .seconds(5),
        connectTimeout: Duration = .seconds(2),
        idleTimeout: Duration = .seconds(300),
        sweepInterval: Duration = .milliseconds(10),
        maxRoutingAttempts: Int = 64,
        maxDecodingDepth: Int = 64,
        logger: Logger = Logger(label: "troupe.actors", factory: { _ in SwiftLogNoOpLogHandler() }),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.clusterName = clusterName
        self.nodeName = nodeName
        self.host = host
        self.port = port
        self.secret = secret
        self.maxFrameSize = maxFrameSize
        self.defaultCallTimeout = defaultCallTimeout
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.sweepInterval = sweepInterval
        self.maxRoutingAttempts = maxRoutingAttempts
        self.maxDecodingDepth = maxDecodingDepth
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
    }

    /// Throws ``ActorSystemError/Code/invalidConfiguration`` naming the first setting to fix.
    public func validate() throws {
        func invalid(_ message: String) -> ActorSystemError { ActorSystemError(.invalidConfiguration, message) }
        guard !clusterName.isEmpty, clusterName.utf8.count <= 255 else { throw invalid("clusterName must be 1…255 bytes") }
        guard !nodeName.isEmpty, nodeName.utf8.count <= 255 else { throw invalid("nodeName must be 1…255 bytes") }
        guard !host.isEmpty else { throw invalid("host must not be empty") }
        guard (0...65535).contains(port) else { throw invalid("port must be 0…65535, got \(port)") }
        guard secret.count >= 16 else { throw invalid("secret must be at least 16 bytes (got \(secret.count))") }
        guard maxFrameSize >= 1024 else { throw invalid("maxFrameSize must be at least 1024 bytes") }
        guard defaultCallTimeout > .zero else { throw invalid("defaultCallTimeout must be positive") }
        guard connectTimeout > .zero else { throw invalid("connectTimeout must be positive") }
        guard idleTimeout > .zero else { throw invalid("idleTimeout must be positive") }
        guard sweepInterval > .zero, sweepInterval <= .seconds(1) else { throw invalid("sweepInterval must be in (0, 1s]") }
        guard maxRoutingAttempts >= 1 else { throw invalid("maxRoutingAttempts must be at least 1") }
        guard (1...512).contains(maxDecodingDepth) else { throw invalid("maxDecodingDepth must be 1…512") }
        guard host.utf8.count <= 255 else { throw invalid("host must be at most 255 bytes") }
        guard maxActivations >= 1 else { throw invalid("maxActivations must be at least 1") }
        guard emptyStateIdleTimeout > .zero else { throw invalid("emptyStateIdleTimeout must be positive") }
        guard handoffRecheck > .zero else { throw invalid("handoffRecheck must be positive") }
        guard maxUnauthenticatedConnections >= 1, maxUnauthenticatedPerAddress >= 1 else {
            throw invalid("maxUnauthenticatedConnections and maxUnauthenticatedPerAddress must be at least 1")
        }
        if let tls {
            guard tls.certificate != nil, tls.privateKey != nil, tls.ca != nil else {
                throw invalid("tls needs certificate, privateKey and ca (the cluster CA); `troupe certs` makes them")
            }
            do { try tls.validate() } catch { throw ActorSystemError(.invalidConfiguration, "tls: \((error as? TLSError)?.message ?? "\(error)")", underlying: error) }
        }
    }
}

extension ClusterConfiguration {
    /// ``transport``, or TCP on ``eventLoopGroup``.
    var clusterTransport: any ClusterTransport { transport ?? TCPClusterTransport(eventLoopGroup: eventLoopGroup) }
}
