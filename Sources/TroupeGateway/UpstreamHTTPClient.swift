import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An HTTP/1.1 client on SwiftNIO (the gateway's client for upstream services, and the load generator of
/// the end-to-end benchmark): keep-alive connections pooled per
/// instance (one request at a time on each), a connect timeout and a deadline per request. A connection
/// that fails, times out or is not keep-alive is closed, never reused.
public final class UpstreamHTTPClient: Sendable {
    public struct Endpoint: Hashable, Sendable {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    public struct Reply: Sendable {
        public var head: HTTPResponseHead
        public var body: ByteBuffer
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Idle connections are kept per endpoint and event loop: a request made from a task running on an
    /// event loop (see `EventLoopTaskExecutor`) uses and opens connections on that loop only.
    private struct PoolKey: Hashable {
        var endpoint: Endpoint
        var loop: ObjectIdentifier
    }

    private struct Idle {
        var channels: [PoolKey: [Channel]] = [:]
        var closed = false
    }

    let group: any EventLoopGroup
    let maxIdlePerEndpoint: Int
    let connectTimeout: TimeAmount
    /// Largest response body accepted from an upstream.
    let maxResponseBytes: Int
    /// Idle connections, one store per event loop of the group (a loop's store is used by that loop, so the
    /// loops never contend); `fallback` for loops outside the group.
    private let idleByLoop: [ObjectIdentifier: IdleStore]
    private let fallback = IdleStore()

    private final class IdleStore: Sendable {
        let state = Mutex(Idle())
    }

    private func idle(_ key: PoolKey) -> IdleStore {
        idleByLoop[key.loop] ?? fallback
    }

    public init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, maxIdlePerEndpoint: Int = 128,
         connectTimeout: TimeAmount = .seconds(2), maxResponseBytes: Int = 16 << 20) {
        self.group = group
        self.maxIdlePerEndpoint = maxIdlePerEndpoint
        self.connectTimeout = connectTimeout
        self.maxResponseBytes = maxResponseBytes
        var stores: [ObjectIdentifier: IdleStore] = [:]
        for loop in group.makeIterator() { stores[ObjectIdentifier(loop as AnyObject)] = IdleStore() }
        self.idleByLoop = stores
    }

    /// Sends one request and collects the whole response (the body up to `maxResponseBytes`).
    public func execute(_ endpoint: Endpoint, head: HTTPRequestHead, body: ByteBuffer?, timeout: Duration) async throws -> Reply {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? group.next()
        if loop.inEventLoop {
            return try await start(endpoint, head: head, body: body, timeout: timeout, on: loop).get()
        }
        return try await loop.flatSubmit { self.start(endpoint, head: head, body: body, timeout: timeout, on: loop) }.get()
    }

    /// Sends one request from `loop` (call it on that loop) on a connection living there: a keep-alive
    /// connection of that loop's pool, or a new one. The future completes on `loop`.
    func start(_ endpoint: Endpoint, head: HTTPRequestHead, body: ByteBuffer?, timeout: Duration, on loop: any EventLoop) -> EventLoopFuture<Reply> {
        let key = PoolKey(endpoint: endpoint, loop: ObjectIdentifier(loop as AnyObject))
        let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        let exchange: @Sendable (any Channel) -> EventLoopFuture<Reply> = { channel in
            let promise = loop.makePromise(of: Reply.self)
            // Settles the connection before the caller's callbacks run (callbacks run in registration order).
            promise.futureResult.whenComplete { result in
                switch result {
                case .success(let reply): self.release(channel, key: key, reusable: Self.keepAlive(request: head, response: reply.head))
                case .failure: channel.close(promise: nil)
                }
            }
            // The deadline is kept on the channel's event loop, by the handler: no extra thread hops.
            channel.writeAndFlush(UpstreamExchange(head: head, body: body, promise: promise, timeout: .nanoseconds(nanoseconds)), promise: nil)
            return promise.futureResult
        }
        do {
            if let idle = try popIdle(key) { return exchange(idle) }
        } catch {
            return loop.makeFailedFuture(error)
        }
        return connect(endpoint, on: loop).flatMap(exchange)
    }

    /// Closes every idle connection; later requests fail.
    public func shutdown() {
        var channels: [Channel] = []
        for store in Array(idleByLoop.values) + [fallback] {
            channels += store.state.withLock { state -> [Channel] in
                state.closed = true
                defer { state.channels = [:] }
                return state.channels.values.flatMap { $0 }
            }
        }
        for channel in channels { channel.close(promise: nil) }
    }

    static func keepAlive(request: HTTPRequestHead, response: HTTPResponseHead) -> Bool {
        request.isKeepAlive && response.isKeepAlive
    }

    private func popIdle(_ key: PoolKey) throws -> Channel? {
        while let channel = try idle(key).state.withLock({ state -> Channel? in
            guard !state.closed else { throw Failure(description: "the upstream client is shut down") }
            return state.channels[key]?.popLast()
        }) {
            if channel.isActive { return channel }
        }
        return nil
    }

    private func connect(_ endpoint: Endpoint, on loop: any EventLoop) -> EventLoopFuture<Channel> {
        let maxResponseBytes = self.maxResponseBytes
        return ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(UpstreamExchangeHandler(maxBody: maxResponseBytes))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
    }

    private func release(_ channel: Channel, key: PoolKey, reusable: Bool) {
        guard reusable, channel.isActive else {
            channel.close(promise: nil)
            return
        }
        let kept = idle(key).state.withLock { state -> Bool in
            guard !state.closed, state.channels[key, default: []].count < maxIdlePerEndpoint else { return false }
            state.channels[key, default: []].append(channel)
            return true
        }
        if !kept { channel.close(promise: nil) }
    }
}

/// One request on a connection and the promise of its response.
struct UpstreamExchange {
    var head: HTTPRequestHead
    var body: ByteBuffer?
    var promise: EventLoopPromise<UpstreamHTTPClient.Reply>
    var timeout: TimeAmount
}

/// Writes an exchange's request and completes its promise with the response; fails it when the
/// connection closes first, the response is malformed, or the body exceeds the limit.
final class UpstreamExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = UpstreamExchange
    typealias OutboundOut = HTTPClientRequestPart

    let maxBody: Int
    private var pending: EventLoopPromise<UpstreamHTTPClient.Reply>?
    /// When the request in flight times out, and how long it was given.
    private var deadline: (at: NIODeadline, timeout: TimeAmount)?
    /// One timer per connection, re-armed lazily: it is not cancelled when a response arrives in time (a
    /// keep-alive connection would otherwise schedule and cancel a task per request), and when it fires
    /// early for the current request it is armed again for that request's deadline.
    private var timer: (task: Scheduled<Void>, at: NIODeadline)?
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    init(maxBody: Int) {
        self.maxBody = maxBody
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        guard pending == nil else {
            exchange.promise.fail(UpstreamHTTPClient.Failure(description: "a request is already in flight on this connection"))
            return
        }
        pending = exchange.promise
        head = nil
        body.clear()
        let at = NIODeadline.now() + exchange.timeout
        deadline = (at, exchange.timeout)
        // A timer armed to fire before this deadline re-arms for it when it fires; otherwise arm one for it.
        if timer.map({ $0.at > at }) ?? true { arm(at: at, context: context) }
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if let payload = exchange.body, payload.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(payload))), promise: nil)
        }
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let responseHead):
            head = responseHead
        case .body(var part):
            guard body.readableBytes + part.readableBytes <= maxBody else {
                fail(context: context, "the response body exceeds \(maxBody) bytes")
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let head, let promise = pending else {
                fail(context: context, "a response arrived without a request")
                return
            }
            pending = nil
            deadline = nil
            self.head = nil
            promise.succeed(UpstreamHTTPClient.Reply(head: head, body: body))
            body = ByteBuffer()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        pending?.fail(UpstreamHTTPClient.Failure(description: "the upstream closed the connection"))
        pending = nil
        context.fireChannelInactive()
    }

    private func arm(at: NIODeadline, context: ChannelHandlerContext) {
        timer?.task.cancel()
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: at) { [weak self] () -> Void in
            guard let self else { return }
            self.timerFired(context: context)
        }
        timer = (task, at)
    }

    private func disarm() {
        timer?.task.cancel()
        timer = nil
        deadline = nil
    }

    private func timerFired(context: ChannelHandlerContext) {
        timer = nil
        guard pending != nil, let deadline else { return }
        guard deadline.at <= .now() else {
            arm(at: deadline.at, context: context)
            return
        }
        fail(context: context, "no response within \(Double(deadline.timeout.nanoseconds) / 1e9) s")
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, "\(error)")
    }

    private func fail(context: ChannelHandlerContext, _ why: String) {
        disarm()
        pending?.fail(UpstreamHTTPClient.Failure(description: why))
        pending = nil
        context.close(promise: nil)
    }
}
