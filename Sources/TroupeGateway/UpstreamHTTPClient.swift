public import NIOCore
public import NIOHTTP1
public import NIOPosix
import Synchronization
import TroupeCore

/// An HTTP/1.1 client on SwiftNIO (the gateway's client for upstream services, and the load generator of
/// the end-to-end benchmark): keep-alive connections pooled per
/// instance (one request at a time on each), a connect timeout and a deadline per request. A connection
/// that fails, times out or is not keep-alive is closed, never reused.
public final class UpstreamHTTPClient: Sendable {
    /// An upstream instance the client keeps connections to.
    public struct Endpoint: Hashable, Sendable {
        /// Host name or address.
        public var host: String
        /// Port.
        public var port: Int

        /// The endpoint `host:port`.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// An upstream's response: its head and body.
    public struct Reply: Sendable {
        /// The response head.
        public var head: HTTPResponseHead
        /// The response body (at most `maxResponseBytes`).
        public var body: ByteBuffer
    }

    /// Why an upstream request failed (connecting, sending, a malformed or too large response, the timeout).
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Idle connections are kept per endpoint and event loop: a request made from a task running on an
    /// event loop (see `EventLoopTaskExecutor`) uses and opens connections on that loop only.
    private struct PoolKey: Hashable {
        var endpoint: Endpoint
        var loop: ObjectIdentifier
        /// Byte-level connections (`RawUpstreamHandler`) are pooled apart from the codec ones.
        var raw: Bool
    }

    /// A pooled connection; `raw` is the handler of a byte-level one, called directly on the connection's
    /// loop (a write through the pipeline would box the exchange and cast it back).
    struct Connection: Sendable {
        var channel: any Channel
        var raw: NIOLoopBound<RawUpstreamHandler>?
    }

    private struct Idle {
        var channels: [PoolKey: [Connection]] = [:]
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
        let state = Guarded(Idle())
    }

    private func idle(_ key: PoolKey) -> IdleStore {
        idleByLoop[key.loop] ?? fallback
    }

    /// A client on `group`, keeping at most `maxIdlePerEndpoint` idle connections per endpoint and event loop.
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
        let key = PoolKey(endpoint: endpoint, loop: ObjectIdentifier(loop as AnyObject), raw: false)
        let run: @Sendable (Connection) -> EventLoopFuture<Reply> = { connection in
            let promise = loop.makePromise(of: Reply.self)
            // Settles the connection before the caller's callbacks run (callbacks run in registration order).
            promise.futureResult.whenComplete { result in
                switch result {
                case .success(let reply): self.release(connection, key: key, reusable: Self.keepAlive(request: head, response: reply.head))
                case .failure: connection.channel.close(promise: nil)
                }
            }
            // The deadline is kept on the channel's event loop, by the handler: no extra thread hops.
            connection.channel.writeAndFlush(UpstreamExchange(head: head, body: body, promise: promise, timeout: Self.timeAmount(timeout)), promise: nil)
            return promise.futureResult
        }
        do {
            if let idle = try popIdle(key) { return run(idle) }
        } catch {
            return loop.makeFailedFuture(error)
        }
        return connect(endpoint, raw: false, on: loop).flatMap(run)
    }

    /// Sends `request` — a complete HTTP/1.1 request, head and body, as bytes — from `loop` (call it there) on
    /// a byte-level connection of that loop (`RawUpstreamHandler`), and calls `done` on the loop with the
    /// response as read (no future: this runs for every request of the gateway's byte-level path). `toHEAD`
    /// when the request's method is HEAD (its response has no body).
    func startRaw(_ endpoint: Endpoint, request: ByteBuffer, toHEAD: Bool, timeout: Duration, on loop: any EventLoop,
                  _ done: @escaping (Result<RawReply, any Error>) -> Void) {
        let key = PoolKey(endpoint: endpoint, loop: ObjectIdentifier(loop as AnyObject), raw: true)
        let timeout = Self.timeAmount(timeout)
        let run = { (connection: Connection) -> Void in
            guard let handler = connection.raw?.value else {
                connection.channel.close(promise: nil)
                done(.failure(Failure(description: "not a byte-level upstream connection")))
                return
            }
            handler.start(RawUpstreamExchange(request: request, toHEAD: toHEAD, timeout: timeout) { result in
                // The connection is settled before the caller hears of the reply.
                switch result {
                case .success(let reply): self.release(connection, key: key, reusable: !reply.head.close)
                case .failure: connection.channel.close(promise: nil)
                }
                done(result)
            })
        }
        do {
            if let idle = try popIdle(key) {
                run(idle)
                return
            }
        } catch {
            done(.failure(error))
            return
        }
        connect(endpoint, raw: true, on: loop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let connection): run(connection)
            case .failure(let error): done(.failure(error))
            }
        }
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    /// Closes every idle connection; later requests fail.
    public func shutdown() {
        var channels: [any Channel] = []
        for store in Array(idleByLoop.values) + [fallback] {
            channels += store.state.withLock { state -> [any Channel] in
                state.closed = true
                defer { state.channels = [:] }
                return state.channels.values.flatMap { $0.map(\.channel) }
            }
        }
        for channel in channels { channel.close(promise: nil) }
    }

    static func keepAlive(request: HTTPRequestHead, response: HTTPResponseHead) -> Bool {
        request.isKeepAlive && response.isKeepAlive
    }

    private func popIdle(_ key: PoolKey) throws -> Connection? {
        while let connection = try idle(key).state.withLock({ state -> Connection? in
            guard !state.closed else { throw Failure(description: "the upstream client is shut down") }
            return state.channels[key]?.popLast()
        }) {
            if connection.channel.isActive { return connection }
        }
        return nil
    }

    private func connect(_ endpoint: Endpoint, raw: Bool, on loop: any EventLoop) -> EventLoopFuture<Connection> {
        let maxResponseBytes = self.maxResponseBytes
        let handler = raw ? NIOLoopBound(RawUpstreamHandler(maxBody: maxResponseBytes), eventLoop: loop) : nil
        return ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let handler {
                        try channel.pipeline.syncOperations.addHandler(handler.value)
                        return
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(UpstreamExchangeHandler(maxBody: maxResponseBytes))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .map { Connection(channel: $0, raw: handler) }
    }

    private func release(_ connection: Connection, key: PoolKey, reusable: Bool) {
        guard reusable, connection.channel.isActive else {
            connection.channel.close(promise: nil)
            return
        }
        let kept = idle(key).state.withLock { state -> Bool in
            guard !state.closed else { return false }
            // One hash lookup: count and append in place.
            return Self.appendIfRoom(&state.channels[key, default: []], connection, limit: maxIdlePerEndpoint)
        }
        if !kept { connection.channel.close(promise: nil) }
    }

    private static func appendIfRoom(_ list: inout [Connection], _ connection: Connection, limit: Int) -> Bool {
        guard list.count < limit else { return false }
        list.append(connection)
        return true
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
    private var deadline = ExchangeDeadline()
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
        deadline.start(exchange.timeout, context: context) { [weak self] in self?.timerFired(context: context) }
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
            deadline.finish()
            self.head = nil
            promise.succeed(UpstreamHTTPClient.Reply(head: head, body: body))
            body = ByteBuffer()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline.cancel()
        pending?.fail(UpstreamHTTPClient.Failure(description: "the upstream closed the connection"))
        pending = nil
        context.fireChannelInactive()
    }

    private func timerFired(context: ChannelHandlerContext) {
        guard let expired = deadline.fired(context: context, rearm: { [weak self] in self?.timerFired(context: context) }), pending != nil else { return }
        fail(context: context, "no response within \(Double(expired.nanoseconds) / 1e9) s")
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, "\(error)")
    }

    private func fail(context: ChannelHandlerContext, _ why: String) {
        deadline.cancel()
        pending?.fail(UpstreamHTTPClient.Failure(description: why))
        pending = nil
        context.close(promise: nil)
    }
}

/// The deadline of a connection's exchange in flight, kept with one timer per connection and re-armed
/// lazily: the timer is not cancelled when a response arrives in time (a keep-alive connection would
/// otherwise schedule and cancel a task per request); when it fires early for the current exchange it is
/// armed again for that exchange's deadline, and an exchange due before the armed time re-arms it.
struct ExchangeDeadline {
    /// When the exchange in flight times out, and how long it was given.
    private var deadline: (at: NIODeadline, timeout: TimeAmount)?
    private var timer: (task: Scheduled<Void>, at: NIODeadline)?

    /// An exchange given `timeout` begins; `fire` runs on the loop when the timer goes off.
    mutating func start(_ timeout: TimeAmount, context: ChannelHandlerContext, fire: @escaping () -> Void) {
        let at = NIODeadline.now() + timeout
        deadline = (at, timeout)
        if timer.map({ $0.at > at }) ?? true { arm(at: at, context: context, fire: fire) }
    }

    /// The exchange ended in time (the timer stays armed for the next one).
    mutating func finish() {
        deadline = nil
    }

    /// The connection is done: no timer, no exchange.
    mutating func cancel() {
        timer?.task.cancel()
        timer = nil
        deadline = nil
    }

    /// The timer went off: the timeout of the exchange in flight when its deadline has passed, nil otherwise
    /// (re-armed with `rearm` when an exchange is still waiting).
    mutating func fired(context: ChannelHandlerContext, rearm: @escaping () -> Void) -> TimeAmount? {
        timer = nil
        guard let deadline else { return nil }
        guard deadline.at <= .now() else {
            arm(at: deadline.at, context: context, fire: rearm)
            return nil
        }
        return deadline.timeout
    }

    private mutating func arm(at: NIODeadline, context: ChannelHandlerContext, fire: @escaping () -> Void) {
        timer?.task.cancel()
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: at) { fire() }
        timer = (task, at)
    }
}

/// A response read by `RawUpstreamHandler`.
struct RawReply: Sendable {
    var head: HTTP1Scanner.ResponseHead
    /// The response head as received (the head's positions refer to it).
    var headBytes: ByteBuffer
    /// The body, de-chunked.
    var body: ByteBuffer
}

/// One byte-level request on a connection and what to call with its response (on the connection's loop).
struct RawUpstreamExchange {
    var request: ByteBuffer
    var toHEAD: Bool
    var timeout: TimeAmount
    var done: (Result<RawReply, any Error>) -> Void
}

/// The byte-level counterpart of `UpstreamExchangeHandler`: sends a request given as bytes (`start`, called
/// directly on the connection's loop) and reads the
/// response with `HTTP1Scanner` (interim 1xx responses skipped; Content-Length, chunked and close-delimited
/// bodies). A malformed response, a body over the limit, a 101 or bytes beyond the response fail the
/// exchange and close the connection.
final class RawUpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Largest response head accepted.
    static let maxHeadBytes = 64 * 1024

    let maxBody: Int
    private var context: ChannelHandlerContext?
    private var pending: RawUpstreamExchange?
    private var deadline = ExchangeDeadline()
    private var received: ByteBuffer?
    private var head: HTTP1Scanner.ResponseHead?
    private var chunkOffset = 0
    private var body = ByteBuffer()

    init(maxBody: Int) {
        self.maxBody = maxBody
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Sends the exchange's request (call on the connection's event loop).
    func start(_ exchange: RawUpstreamExchange) {
        guard let context, context.channel.isActive else {
            exchange.done(.failure(UpstreamHTTPClient.Failure(description: "the upstream connection is closed")))
            return
        }
        guard pending == nil, received == nil || received?.readableBytes == 0 else {
            exchange.done(.failure(UpstreamHTTPClient.Failure(description: "a request is already in flight on this connection")))
            return
        }
        pending = exchange
        head = nil
        body.clear()
        deadline.start(exchange.timeout, context: context) { [weak self] in self?.timerFired(context: context) }
        context.writeAndFlush(wrapOutboundOut(exchange.request), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if received == nil || received?.readableBytes == 0 {
            received = bytes
        } else {
            received!.writeBuffer(&bytes)
        }
        advance(context: context, closed: false)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if pending != nil, let head, head.framing == .untilClose {
            advance(context: context, closed: true)
        }
        deadline.cancel()
        let exchange = pending
        pending = nil
        exchange?.done(.failure(UpstreamHTTPClient.Failure(description: "the upstream closed the connection")))
        context.fireChannelInactive()
    }

    /// Reads as much of the response as has arrived; `closed` when the upstream closed the connection.
    private func advance(context: ChannelHandlerContext, closed: Bool) {
        guard let exchange = pending else {
            fail(context: context, "the upstream sent bytes without a request")
            return
        }
        guard var buffer = received else { return }
        received = nil
        /// `done` carries the body, de-chunked, or nil when it is the rest of the buffer after the head.
        enum Step { case wait, fail(String), skip(Int), done(ByteBuffer?) }
        let step: Step = buffer.withUnsafeReadableBytes { bytes -> Step in
            while head == nil {
                switch HTTP1Scanner.scanResponse(bytes, toHEAD: exchange.toHEAD) {
                case .incomplete:
                    return bytes.count > Self.maxHeadBytes ? .fail("the response head exceeds \(Self.maxHeadBytes) bytes") : .wait
                case .invalid(let why):
                    return .fail("malformed response: \(why)")
                case .response(let scanned):
                    if scanned.status == 101 { return .fail("the upstream switched protocols") }
                    if scanned.status < 200 { return .skip(scanned.length) }  // interim: the final response follows
                    head = scanned
                    chunkOffset = scanned.length
                }
            }
            guard let head else { return .wait }
            switch head.framing {
            case .none:
                return bytes.count > head.length ? .fail("bytes beyond the response") : .done(ByteBuffer())
            case .length(let length):
                guard length <= maxBody else { return .fail("the response body exceeds \(maxBody) bytes") }
                let available = bytes.count - head.length
                if available > length { return .fail("bytes beyond the response") }
                return available == length ? .done(nil) : .wait
            case .chunked:
                switch HTTP1Scanner.scanChunks(bytes, from: &chunkOffset, into: &body, limit: maxBody) {
                case .incomplete: return .wait
                case .invalid(let why): return .fail("malformed chunked body: \(why)")
                case .end(let end): return end == bytes.count ? .done(body) : .fail("bytes beyond the response")
                }
            case .untilClose:
                guard bytes.count - head.length <= maxBody else { return .fail("the response body exceeds \(maxBody) bytes") }
                return closed ? .done(nil) : .wait
            }
        }
        switch step {
        case .wait:
            received = buffer
        case .fail(let why):
            fail(context: context, why)
        case .skip(let length):
            buffer.moveReaderIndex(forwardBy: length)
            received = buffer
            if buffer.readableBytes > 0 { advance(context: context, closed: closed) }
        case .done(let responseBody):
            guard let head else { return }
            let headBytes = buffer.readSlice(length: head.length) ?? ByteBuffer()
            // A Content-Length or close-delimited body is the rest of the buffer: a slice, not a copy.
            let responseBody = responseBody ?? buffer
            pending = nil
            self.head = nil
            deadline.finish()
            body = ByteBuffer()
            exchange.done(.success(RawReply(head: head, headBytes: headBytes, body: responseBody)))
        }
    }

    private func timerFired(context: ChannelHandlerContext) {
        guard let expired = deadline.fired(context: context, rearm: { [weak self] in self?.timerFired(context: context) }), pending != nil else { return }
        fail(context: context, "no response within \(Double(expired.nanoseconds) / 1e9) s")
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, "\(error)")
    }

    private func fail(context: ChannelHandlerContext, _ why: String) {
        deadline.cancel()
        let exchange = pending
        pending = nil
        received = nil
        context.close(promise: nil)
        exchange?.done(.failure(UpstreamHTTPClient.Failure(description: why)))
    }
}
