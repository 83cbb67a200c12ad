import NIOCore
import NIOEmbedded
public import TroupeActors
import TroupeCore

/// The network between simulated nodes: every connection is a pair of NIO `EmbeddedChannel`s on the
/// simulation's one event loop, carrying the real frames of the real handlers (handshake, frame decoder, peer
/// handler). Bytes take a sampled latency, in order on one connection and in any order across connections;
/// a partition breaks the connections across it (the bytes in flight are lost, as a connection drop loses
/// them) and makes new ones time out; a crashed node's connections are reset and its listener is gone.
///
/// Invariant (why `@unchecked Sendable`): used only from the simulation thread — every job of a simulated
/// process runs there, and the event loop's checks enforce it for the channels.
public final class SimulatedNetwork: @unchecked Sendable {
    let world: SimulationWorld
    let loop: EmbeddedEventLoop
    private var listeners: [String: Listener] = [:]
    private var blocked: Set<Route> = []
    private var links: [UInt64: Link] = [:]
    private var nextLink: UInt64 = 0
    /// Every channel made during the seed, kept until the process ends: NIO's debug builds trap when an
    /// `EmbeddedChannel` is released still open, and a channel's last reference can go with a handler's timer
    /// while a simulated peer has not closed it yet. (A seed's channels number in the thousands at most.)
    private var made: [EmbeddedChannel] = []

    struct Route: Hashable { var from: String; var to: String }

    private struct Listener {
        let initializer: @Sendable (any Channel) throws -> Void
        let channel: EmbeddedChannel
    }

    /// One connection: side 0 dialed, side 1 accepted (touched only from the simulation thread, as the network).
    final class Link: @unchecked Sendable {
        let id: UInt64
        let hosts: [String]
        var channels: [EmbeddedChannel] = []
        var pending: [[ByteBuffer]] = [[], []]
        var lastDelivery: [Int64] = [0, 0]
        var closed = false

        init(id: UInt64, hosts: [String]) {
            self.id = id
            self.hosts = hosts
        }
    }

    init(world: SimulationWorld, loop: EmbeddedEventLoop) {
        self.world = world
        self.loop = loop
    }

    /// The transport a node at `host` uses.
    public func transport(host: String) -> any ClusterTransport { Transport(network: self, host: host) }

    // MARK: - Faults

    /// Blocks traffic from `a` to `b` (and back unless `oneWay`): their connections break after a detection
    /// delay, new ones time out.
    func partition(_ a: String, _ b: String, oneWay: Bool = false) {
        blocked.insert(Route(from: a, to: b))
        if !oneWay { blocked.insert(Route(from: b, to: a)) }
        for link in links.values where Set(link.hosts) == Set([a, b]) {
            let delay = world.nanoseconds(between: .milliseconds(200), and: .seconds(3))
            world.scheduler.schedule(atNanoseconds: world.scheduler.now + delay) { [self] in breakLink(link) }
        }
    }

    func heal(_ a: String, _ b: String) {
        blocked.remove(Route(from: a, to: b))
        blocked.remove(Route(from: b, to: a))
    }

    func healAll() { blocked.removeAll() }

    /// The node at `host` died: its listener is gone, its peers see their connections reset.
    func crash(host: String) {
        listeners[host] = nil
        for link in links.values where link.hosts.contains(host) { breakLink(link) }
    }

    private func isBlocked(_ from: String, _ to: String) -> Bool { blocked.contains(Route(from: from, to: to)) }

    // MARK: - Connections

    fileprivate func listen(host: String, port: Int, initializer: @escaping @Sendable (any Channel) throws -> Void) throws -> any Channel {
        let channel = EmbeddedChannel(loop: loop)
        made.append(channel)
        channel.localAddress = try SocketAddress(ipAddress: host, port: port)
        channel.connect(to: try SocketAddress(ipAddress: host, port: port), promise: nil)
        listeners[host] = Listener(initializer: initializer, channel: channel)
        world.trace("listen \(host)")
        return channel
    }

    fileprivate func connect(
        from: String, host: String, port: Int, timeout: Duration, initializer: @escaping @Sendable (any Channel) throws -> Void
    ) async throws -> any Channel {
        if isBlocked(from, host) || isBlocked(host, from) {
            try await world.clock.sleep(for: timeout)
            throw SimulationError("connect \(from) → \(host): timed out")
        }
        try await world.clock.sleep(for: .nanoseconds(2 * world.latency()))
        guard let listener = listeners[host], listener.channel.isActive, !isBlocked(from, host) else {
            throw SimulationError("connect \(from) → \(host): connection refused")
        }
        nextLink += 1
        let link = Link(id: nextLink, hosts: [from, host])
        let dialer = EmbeddedChannel(loop: loop)
        let accepted = EmbeddedChannel(loop: loop)
        link.channels = [dialer, accepted]
        made += link.channels
        links[link.id] = link
        let ephemeral = 40000 + Int(link.id % 20000)
        dialer.localAddress = try SocketAddress(ipAddress: from, port: ephemeral)
        dialer.remoteAddress = try SocketAddress(ipAddress: host, port: port)
        accepted.localAddress = try SocketAddress(ipAddress: host, port: port)
        accepted.remoteAddress = try SocketAddress(ipAddress: from, port: ephemeral)
        try dialer.pipeline.syncOperations.addHandler(LinkHandler(network: self, link: link, side: 0))
        try accepted.pipeline.syncOperations.addHandler(LinkHandler(network: self, link: link, side: 1))
        do {
            try listener.initializer(accepted)
        } catch {
            breakLink(link)
            throw SimulationError("connect \(from) → \(host): reset by the listener (\(error))")
        }
        try initializer(dialer)
        accepted.connect(to: try SocketAddress(ipAddress: from, port: ephemeral), promise: nil)
        dialer.connect(to: try SocketAddress(ipAddress: host, port: port), promise: nil)
        return dialer
    }

    fileprivate func transmit(_ link: Link, from side: Int) {
        let buffers = link.pending[side]
        link.pending[side].removeAll()
        guard !link.closed else { return }
        let (source, target) = (link.hosts[side], link.hosts[1 - side])
        if isBlocked(source, target) { return }  // lost; the partition breaks the link
        for buffer in buffers {
            let at = max(world.scheduler.now + world.latency(), link.lastDelivery[side] + 1)
            link.lastDelivery[side] = at
            let channel = link.channels[1 - side]
            world.scheduler.schedule(atNanoseconds: at) {
                guard channel.isActive else { return }
                _ = try? channel.writeInbound(buffer)
            }
        }
    }

    /// `side` closed its channel: the other side sees the close after the bytes already sent.
    fileprivate func closed(_ link: Link, by side: Int) {
        guard !link.closed else { return }
        link.closed = true
        let at = max(world.scheduler.now + world.latency(), link.lastDelivery[side] + 1)
        let channel = link.channels[1 - side]
        world.scheduler.schedule(atNanoseconds: at) { [self] in
            channel.close(promise: nil)
            links[link.id] = nil
        }
    }

    /// Both ends close now; the bytes in flight are lost. Ends never activated (a connection the listener
    /// refused) are closed too: an `EmbeddedChannel` must not be released open.
    private func breakLink(_ link: Link) {
        link.closed = true
        links[link.id] = nil
        for channel in link.channels { channel.close(promise: nil) }
    }

    private struct Transport: ClusterTransport {
        let network: SimulatedNetwork
        let host: String

        func listen(host: String, port: Int, initializer: @escaping @Sendable (any Channel) throws -> Void) async throws -> any Channel {
            try network.listen(host: host, port: port == 0 ? 7000 : port, initializer: initializer)
        }

        func connect(
            host: String, port: Int, timeout: Duration, initializer: @escaping @Sendable (any Channel) throws -> Void
        ) async throws -> any Channel {
            try await network.connect(from: self.host, host: host, port: port, timeout: timeout, initializer: initializer)
        }
    }
}

/// The head of a simulated channel's pipeline: takes what the handlers write and hands it to the network.
private final class LinkHandler: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer

    let network: SimulatedNetwork
    let link: SimulatedNetwork.Link
    let side: Int

    init(network: SimulatedNetwork, link: SimulatedNetwork.Link, side: Int) {
        self.network = network
        self.link = link
        self.side = side
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        link.pending[side].append(unwrapOutboundIn(data))
        promise?.succeed()
    }

    func flush(context: ChannelHandlerContext) {
        network.transmit(link, from: side)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        network.transmit(link, from: side)
        network.closed(link, by: side)
        context.close(mode: mode, promise: promise)
    }
}
