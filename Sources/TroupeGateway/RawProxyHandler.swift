import Instrumentation
import Metrics
import NIOCore
import NIOHTTP1
import ServiceContextModule
import Tracing
import Synchronization
import HTTPTypes

/// The gateway's byte-level proxy path, first in each HTTP connection's pipeline.
///
/// Requests of the common shape (`HTTP1Scanner`: HTTP/1.1, Content-Length or no body, no Expect, Upgrade or
/// Transfer-Encoding, a body within `maxBodyBytes`) for a public upstream route are proxied from bytes to
/// bytes: the request head is read in place, rewritten for the upstream (hop-by-hop fields dropped, Host,
/// Content-Length and trace context set) on a byte-level upstream connection of the same event loop
/// (`RawUpstreamHandler`), and the upstream's response goes back with its end-to-end fields as received and
/// one write. NIO's HTTP/1 codec, the request/response part objects and the HTTP Types conversion are not
/// involved, which is where the codec path spends most of its CPU.
///
/// The rules are those of `UpstreamFastPathHandler` and the router: load shedding, header and body limits,
/// the request counter, a server span continuing the caller's trace, power-of-two-choices with passive
/// health, the breaker, retries of idempotent methods, problem+json errors.
///
/// The first request this path does not take — another route, HTTP/1.0, a body over the limit, anything
/// unusual, or bytes it cannot read — hands the connection to the codec path for good: the unread bytes
/// go down the pipeline (starting at a request boundary, with no response of this path outstanding) and
/// this handler leaves it. So every request this path declines is answered exactly as before.
final class RawProxyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Largest request body proxied here; larger ones take the codec path (which streams them to its limit).
    static let maxBodyBytes = 64 * 1024

    fileprivate let gateway: Gateway
    private let proxies: [UpstreamProxy]
    /// Read once per connection (each read of the global takes a lock); executables bootstrap them first.
    fileprivate let instrument = InstrumentationSystem.instrument
    fileprivate let tracer = InstrumentationSystem.tracer
    /// Bytes read and not yet handled (pipelined requests wait here while one is proxied).
    private var unread: ByteBuffer?
    private var busy = false
    private var active = true
    private var handedOver = false
    private var proceeding = false
    /// What the connection waits for from its client, if anything, and until when (one lazily re-armed
    /// timer per connection: starting a wait after each response only moves the deadline).
    private var client = ClientWaitDeadline()

    init(gateway: Gateway, proxies: [UpstreamProxy]) {
        self.gateway = gateway
        self.proxies = proxies
    }

    /// Bytes kept while a request is proxied before the connection is refused as flooding.
    private var maxUnread: Int {
        gateway.configuration.maxHeaderBytes + gateway.configuration.maxBodyBytes + 64 * 1024
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !handedOver else {
            context.fireChannelRead(data)
            return
        }
        var bytes = unwrapInboundIn(data)
        if var pending = unread, pending.readableBytes > 0 {
            pending.writeBuffer(&bytes)
            unread = pending
        } else {
            unread = bytes
        }
        guard (unread?.readableBytes ?? 0) <= maxUnread else {
            unread = nil
            context.close(promise: nil)
            return
        }
        proceed(context: context)
    }

    /// Not passed on while this path handles the connection: the handlers behind it saw no bytes (sparing a
    /// trip through the HTTP/1 codec's handlers per read).
    func channelReadComplete(context: ChannelHandlerContext) {
        if handedOver { context.fireChannelReadComplete() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        unread = nil
        client.cancel()
        context.fireChannelInactive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { awaitClient(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        awaitClient(context: context)
        context.fireChannelActive()
    }

    // MARK: Client deadlines

    /// Starts the wait the connection is in (none while a request is proxied); a wait already running keeps
    /// its deadline, so a request trickling in byte by byte is still timed from its first byte.
    private func awaitClient(context: ChannelHandlerContext) {
        guard active, !handedOver, !busy else { return }
        client.enter((unread?.readableBytes ?? 0) > 0 ? .reading : .idle, configuration: gateway.configuration, context: context) { [self] in
            clientTimerFired(context: context)
        }
    }

    private func clientTimerFired(context: ChannelHandlerContext) {
        guard active, !handedOver, let expired = client.fired(context: context, rearm: { [self] in clientTimerFired(context: context) }) else { return }
        switch expired {
        case .idle:
            active = false
            unread = nil
            context.close(promise: nil)
        case .reading:
            respond(ClientDeadlineHandler.timedOut(gateway.configuration), instance: nil, closing: true, context: context)
        }
    }

    private enum Step {
        case wait
        case handOver
        /// The instances are nil when the route's list is not recent: it is looked up first.
        case proxy(HTTP1Scanner.RequestHead, target: String, UpstreamProxy, [UpstreamInstance]?)
    }

    /// Handles the requests read so far, one at a time.
    private func proceed(context: ChannelHandlerContext) {
        // Not re-entered: a response written synchronously inside `start` comes back here.
        guard !proceeding else { return }
        proceeding = true
        defer {
            proceeding = false
            awaitClient(context: context)
        }
        while active, !busy, !handedOver, var pending = unread, pending.readableBytes > 0 {
            let configuration = gateway.configuration
            let step = pending.withUnsafeReadableBytes { bytes -> Step in
                switch HTTP1Scanner.scanRequest(bytes) {
                case .incomplete:
                    return bytes.count > configuration.maxHeaderBytes + 1024 ? .handOver : .wait
                case .unsupported:
                    return .handOver
                case .request(let head):
                    // Over a limit: the codec path answers 413 / 431 as it always has.
                    guard head.contentLength <= min(Self.maxBodyBytes, configuration.maxBodyBytes),
                          head.fieldBytes <= configuration.maxHeaderBytes else { return .handOver }
                    let target = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[head.target]), as: UTF8.self)
                    guard let proxy = route(target) else { return .handOver }
                    guard bytes.count >= head.length + head.contentLength else { return .wait }
                    return .proxy(head, target: target, proxy, proxy.pool.recentInstances())
                }
            }
            switch step {
            case .wait:
                return
            case .handOver:
                handOver(context: context)
                return
            case .proxy(let head, let target, let proxy, let instances):
                let headBytes = pending.readSlice(length: head.length)!
                let body = pending.readSlice(length: head.contentLength)!
                unread = pending
                busy = true
                client.stop()
                let request = RawRequest(head: head, bytes: headBytes, target: target, body: body)
                if let instances {
                    start(request, proxy: proxy, instances: instances, context: context)
                } else {
                    proxy.pool.lookUp(on: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                        start(request, proxy: proxy, instances: (try? result.get()) ?? [], context: context)
                    }
                }
            }
        }
    }

    /// The rest of the connection goes to the codec path.
    private func handOver(context: ChannelHandlerContext) {
        handedOver = true
        client.cancel()
        // The codec path's deadlines (`ClientDeadlineHandler`) start now.
        context.fireUserInboundEventTriggered(ClientDeadlineHandler.Begin())
        let pending = unread
        unread = nil
        if let pending, pending.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(pending))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// The route when a request for `target` can be proxied here.
    private func route(_ target: String) -> UpstreamProxy? {
        guard gateway.services.globalLimiter == nil else { return nil }
        return proxies.first { $0.matches(target) }
    }

    // MARK: Proxying

    private func start(_ request: RawRequest, proxy: UpstreamProxy, instances: [UpstreamInstance], context: ChannelHandlerContext) {
        let call = Call(handler: self, context: context, request: request, proxy: proxy)
        let inFlight = gateway.inFlight.count.wrappingAdd(1, ordering: .relaxed).newValue
        if let violation = gateway.limitViolation(headerBytes: request.head.fieldBytes, contentLength: nil, inFlight: inFlight) {
            call.finish(.failure(violation))
            return
        }
        gateway.pipelineProxied.count.add(1, ordering: .relaxed)
        gateway.byteLevelProxied.count.add(1, ordering: .relaxed)
        proxy.attempt(call, idempotent: UpstreamProxy.idempotent(call.method), instances: instances)
    }

    /// One request on this path: its span, the upstream request's target, and how its tries end.
    private final class Call: UpstreamCall {
        let handler: RawProxyHandler
        let context: ChannelHandlerContext
        let request: RawRequest
        let proxy: UpstreamProxy
        let method: HTTPMethod
        let path: String
        /// The target for the upstream: the route's path plus the query.
        let uri: String
        let span: any Span
        let started = ContinuousClock.now

        init(handler: RawProxyHandler, context: ChannelHandlerContext, request: RawRequest, proxy: UpstreamProxy) {
            self.handler = handler
            self.context = context
            self.request = request
            self.proxy = proxy
            method = request.method
            let target = request.target
            let queryStart = target.utf8.firstIndex(of: UInt8(ascii: "?"))
            path = queryStart.map { String(target[..<$0]) } ?? target
            uri = proxy.upstreamPath(path) + (queryStart.map { String(target[$0...]) } ?? "")
            var serviceContext = ServiceContext.current ?? .topLevel
            handler.instrument.extract(request, into: &serviceContext, using: RawRequestExtractor())
            span = handler.tracer.startSpan(method.rawValue, context: serviceContext, ofKind: .server)
        }

        func send(to instance: UpstreamInstance, _ done: @escaping (Result<RawReply, any Error>) -> Void) {
            let bytes = request.upstream(uri: uri, instance: instance, trace: span.context, instrument: handler.instrument, allocator: context.channel.allocator)
            proxy.client.startRaw(.init(host: instance.host, port: instance.port), request: bytes, toHEAD: method == .HEAD,
                                  timeout: proxy.route.timeout, on: context.eventLoop, done)
        }

        func status(of reply: RawReply) -> Int { reply.head.status }

        func finish(_ result: Result<RawReply, GatewayError>) {
            handler.gateway.inFlight.count.subtract(1, ordering: .relaxed)
            let closing = request.head.close
            let status: Int
            switch result {
            case .success(let reply):
                status = reply.head.status
                span.recordHTTP(method: method.rawValue, path: path, status: status)
                handler.respond(reply, toHEAD: method == .HEAD, closing: closing, context: context)
            case .failure(let error):
                status = Int(error.status.code)
                span.recordError(error)
                span.recordHTTP(method: method.rawValue, path: path, status: status)
                handler.respond(error, instance: path, closing: closing, context: context)
            }
            span.end()
            handler.gateway.requestMetrics.record(route: proxy.template, method: method.rawValue, status: status, since: started)
        }
    }

    /// The upstream's response with its end-to-end fields as received. A response to HEAD keeps the
    /// upstream's Content-Length (the size a GET would have had) and has no body.
    fileprivate func respond(_ reply: RawReply, toHEAD: Bool, closing: Bool, context: ChannelHandlerContext) {
        guard active else { return }
        var headLength: Int?
        var out = context.channel.allocator.buffer(capacity: reply.headBytes.readableBytes + reply.body.readableBytes + 48)
        reply.headBytes.withUnsafeReadableBytes { bytes in
            out.writeStaticString("HTTP/1.1 ")
            out.writeString(String(reply.head.status))
            out.writeStaticString(" ")
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[reply.head.reason]))
            out.writeStaticString("\r\n")
            for field in reply.head.fields {
                if toHEAD, HTTP1Scanner.equalsIgnoringCase(bytes, field.name, "content-length") {
                    headLength = HTTP1Scanner.decimal(bytes, field.value)
                }
                guard !UpstreamProxy.isHopByHop(bytes, field.name) else { continue }
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.name]))
                out.writeStaticString(": ")
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
                out.writeStaticString("\r\n")
            }
        }
        finishResponse(&out, body: reply.body, length: headLength, closing: closing, context: context)
    }

    fileprivate func respond(_ error: GatewayError, instance: String?, closing: Bool, context: ChannelHandlerContext) {
        guard active else { return }
        let (fields, body) = error.problem(instance: instance)
        var out = context.channel.allocator.buffer(capacity: 256 + body.readableBytes)
        out.writeString("HTTP/1.1 \(error.status.code) \(error.status.reasonPhrase)\r\n")
        for field in fields where !UpstreamProxy.isHopByHop(field.name.rawName) {
            out.writeString("\(field.name.rawName): \(field.value)\r\n")
        }
        finishResponse(&out, body: body, closing: closing, context: context)
    }

    /// Content-Length (the body's, unless `length` says otherwise), Connection when closing, the body; one
    /// write. Then the next request, or the close.
    private func finishResponse(_ out: inout ByteBuffer, body: ByteBuffer, length: Int? = nil, closing: Bool, context: ChannelHandlerContext) {
        out.writeStaticString("content-length: ")
        out.writeString(String(length ?? body.readableBytes))
        out.writeStaticString(closing ? "\r\nconnection: close\r\n\r\n" : "\r\n\r\n")
        var body = body
        out.writeBuffer(&body)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        busy = false
        if closing {
            active = false
            unread = nil
            context.close(promise: nil)
            return
        }
        proceed(context: context)
    }
}

/// A request read by `RawProxyHandler`: its scanned head, the head's bytes, the target and the body.
struct RawRequest {
    var head: HTTP1Scanner.RequestHead
    var bytes: ByteBuffer
    var target: String
    var body: ByteBuffer

    var method: HTTPMethod {
        bytes.withUnsafeReadableBytes { HTTPMethod(rawValue: String(decoding: UnsafeRawBufferPointer(rebasing: $0[head.method]), as: UTF8.self)) }
    }

    /// The value of the first field named `name` (any case).
    func field(_ name: String) -> String? {
        let lowercase = Array(name.lowercased().utf8)
        return bytes.withUnsafeReadableBytes { bytes in
            head.fields.first { HTTP1Scanner.equalsIgnoringCase(bytes, $0.name, lowercase) }
                .map { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0.value]), as: UTF8.self) }
        }
    }

    /// The request for `instance`, as bytes: the request line with `uri`, the end-to-end fields as received
    /// (hop-by-hop ones and those the trace context replaces dropped), Host, Content-Length, the trace
    /// context, the body.
    func upstream(uri: String, instance: UpstreamInstance, trace: ServiceContext, instrument: any Instrument, allocator: ByteBufferAllocator) -> ByteBuffer {
        var injected = HTTPHeaders()
        instrument.inject(trace, into: &injected, using: HTTPHeadersInjector())
        let replaced = injected.map { Array($0.name.lowercased().utf8) }
        var out = allocator.buffer(capacity: bytes.readableBytes + uri.utf8.count + body.readableBytes + 64)
        bytes.withUnsafeReadableBytes { bytes in
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.method]))
            out.writeStaticString(" ")
            out.writeString(uri)
            out.writeStaticString(" HTTP/1.1\r\n")
            for field in head.fields where !UpstreamProxy.isHopByHop(bytes, field.name)
                && !replaced.contains(where: { HTTP1Scanner.equalsIgnoringCase(bytes, field.name, $0) }) {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.name]))
                out.writeStaticString(": ")
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
                out.writeStaticString("\r\n")
            }
        }
        out.writeStaticString("Host: ")
        out.writeString(instance.host)
        out.writeStaticString(":")
        out.writeString(String(instance.port))
        out.writeStaticString("\r\nContent-Length: ")
        out.writeString(String(body.readableBytes))
        out.writeStaticString("\r\n")
        for (name, value) in injected { out.writeString("\(name): \(value)\r\n") }
        out.writeStaticString("\r\n")
        var body = body
        out.writeBuffer(&body)
        return out
    }
}

struct RawRequestExtractor: Extractor {
    func extract(key: String, from request: RawRequest) -> String? {
        request.field(key)
    }
}
