import HTTPTypes
import Hummingbird
import Instrumentation
import Metrics
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import ServiceContextModule
import Synchronization
import Tracing

/// The gateway's public upstream routes served inside the connection's channel pipeline.
///
/// A request under the prefix of an upstream route that needs no authentication is proxied by this
/// handler on the connection's event loop, with a keep-alive upstream connection of the same loop: no
/// Swift task, no router. It keeps every rule the router path applies to such a request — load
/// shedding, header and body limits, the request counter, a server span continuing the caller's
/// trace, power-of-two-choices with passive health, the adaptive breaker, retries of idempotent
/// methods on another instance, problem+json errors. Everything else goes to the router unchanged:
/// protected routes (authentication awaits the session store), any request while a global rate limit
/// is configured (the limiter is awaited), requests with `Expect`, and requests arriving when the
/// route's instance list has not been looked up within the last 10 s (the router's lookup refreshes it; a
/// list older than a second is refreshed in the background, see `UpstreamPool.recentInstances()`).
///
/// Responses leave in request order: a request for this handler waits while the router still owes
/// earlier responses, and later requests wait while it proxies.
///
/// It sits right after NIO's HTTP/1 decoder, before the conversion to Swift HTTP Types (which the router
/// needs and which it undoes for each request it proxies): the request head goes upstream as NIO parsed it,
/// minus hop-by-hop headers, and the upstream's response head comes back the same way. HTTP/1.0 clients get
/// NIO's keep-alive semantics (closed unless they ask for keep-alive).
final class UpstreamFastPathHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Requests queued behind the one in progress (pipelining) before the connection is closed.
    static let maxQueuedParts = 1024

    private enum State {
        case idle
        /// A request's parts go to the router.
        case passing
        case collecting(Exchange)
        case forwarding
    }

    struct Exchange {
        var request: HTTPRequestHead
        var proxy: UpstreamProxy
        var instances: [UpstreamInstance]
        var body: ByteBuffer
        var tooLarge: Bool
    }

    private let gateway: Gateway
    private let proxies: [UpstreamProxy]
    private var state = State.idle
    /// Requests handed to the router whose response has not ended yet.
    private var routerResponses = 0
    private var queued = CircularBuffer<HTTPServerRequestPart>()
    private var active = true
    private var draining = false
    /// Inside `channelRead` (the read cycle ends with a read-complete of its own).
    private var reading = false
    /// Parts went to the router since the last read-complete.
    private var forwarded = false

    init(gateway: Gateway, proxies: [UpstreamProxy]) {
        self.gateway = gateway
        self.proxies = proxies
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        queued.removeAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        defer { reading = false }
        queued.append(unwrapInboundIn(data))
        guard queued.count <= Self.maxQueuedParts else {
            context.close(promise: nil)
            return
        }
        drain(context: context)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), routerResponses > 0 {
            routerResponses -= 1
            context.write(data, promise: promise)
            if routerResponses == 0 { drain(context: context) }
            return
        }
        context.write(data, promise: promise)
    }

    private func drain(context: ChannelHandlerContext) {
        // Not re-entered: a response finished synchronously inside `process` comes back here.
        guard !draining else { return }
        draining = true
        defer {
            draining = false
            // Parts forwarded outside a read cycle (after a proxied response) need a read-complete of their own:
            // the router's channel hands reads over in batches ended by it.
            if forwarded, !reading, active {
                forwarded = false
                context.fireChannelReadComplete()
            }
        }
        while active, let part = queued.popFirst() {
            if !process(part, context: context) {
                if active { queued.prepend(part) }
                return
            }
        }
    }

    private func forward(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        forwarded = true
        context.fireChannelRead(wrapInboundOut(part))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        forwarded = false
        context.fireChannelReadComplete()
    }

    /// Handles one part; false when it has to wait for a response in progress.
    private func process(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) -> Bool {
        switch state {
        case .forwarding:
            return false
        case .passing:
            if case .end = part { state = .idle }
            forward(part, context: context)
            return true
        case .collecting(var exchange):
            switch part {
            case .head:
                // A head before the previous request's end cannot come from the HTTP decoder.
                context.close(promise: nil)
                return false
            case .body(var chunk):
                if exchange.body.readableBytes + chunk.readableBytes > gateway.configuration.maxBodyBytes {
                    exchange.tooLarge = true
                    exchange.body.clear()
                } else if !exchange.tooLarge {
                    exchange.body.writeBuffer(&chunk)
                }
                state = .collecting(exchange)
            case .end:
                state = .forwarding
                start(exchange, context: context)
            }
            return true
        case .idle:
            guard case .head(let request) = part else {
                forward(part, context: context)
                return true
            }
            if let (proxy, instances) = fastRoute(request) {
                guard routerResponses == 0 else { return false }
                state = .collecting(Exchange(request: request, proxy: proxy, instances: instances,
                                             body: context.channel.allocator.buffer(capacity: 0), tooLarge: false))
            } else {
                routerResponses += 1
                state = .passing
                forward(part, context: context)
            }
            return true
        }
    }

    /// The route and its recent instances when this request can be proxied here.
    private func fastRoute(_ request: HTTPRequestHead) -> (UpstreamProxy, [UpstreamInstance])? {
        guard gateway.services.globalLimiter == nil, !request.headers.contains(name: "expect") else { return nil }
        guard let proxy = proxies.first(where: { $0.matches(request.uri) }), let instances = proxy.pool.recentInstances() else { return nil }
        return (proxy, instances)
    }

    // MARK: Proxying

    private func start(_ exchange: Exchange, context: ChannelHandlerContext) {
        let request = exchange.request
        let configuration = gateway.configuration
        let fullPath = request.uri
        let queryStart = fullPath.utf8.firstIndex(of: UInt8(ascii: "?"))
        let path = queryStart.map { String(fullPath[..<$0]) } ?? fullPath
        var serviceContext = ServiceContext.current ?? .topLevel
        InstrumentationSystem.instrument.extract(request.headers, into: &serviceContext, using: HTTPHeadersExtractor())
        let span = InstrumentationSystem.tracer.startSpan(request.method.rawValue, context: serviceContext, ofKind: .server)
        let inFlight = gateway.inFlight.count.wrappingAdd(1, ordering: .relaxed).newValue
        let closing = !request.isKeepAlive
        let started = ContinuousClock.now
        let finish: (Result<(HTTPResponseStatus, HTTPHeaders, ByteBuffer), GatewayError>) -> Void = { [self] result in
            gateway.inFlight.count.subtract(1, ordering: .relaxed)
            let status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer
            switch result {
            case .success(let reply):
                (status, headers, body) = reply
            case .failure(let error):
                span.recordError(error)
                status = HTTPResponseStatus(statusCode: error.status.code, reasonPhrase: error.status.reasonPhrase)
                let (fields, problem) = error.problem(instance: path)
                headers = HTTPHeaders(fields.map { ($0.name.rawName, $0.value) })
                body = problem
            }
            span.recordHTTP(method: request.method.rawValue, path: path, status: Int(status.code))
            span.end()
            gateway.requestMetrics.record(route: exchange.proxy.template, method: request.method.rawValue, status: Int(status.code), since: started)
            respond(status: status, headers: headers, body: body, version: request.version, closing: closing, context: context)
        }
        let headerBytes = request.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        if let violation = gateway.limitViolation(headerBytes: headerBytes, contentLength: request.headers.first(name: "content-length"), inFlight: inFlight) {
            finish(.failure(violation))
            return
        }
        guard !exchange.tooLarge else {
            finish(.failure(Gateway.bodyTooLarge(configuration.maxBodyBytes)))
            return
        }
        gateway.pipelineProxied.count.add(1, ordering: .relaxed)
        let query = queryStart.map { String(fullPath[$0...]) } ?? ""
        let uri = exchange.proxy.upstreamPath(path) + query
        exchange.proxy.attempt(CodecCall(exchange: exchange, uri: uri, trace: span.context, loop: context.eventLoop, finish: finish),
                               idempotent: UpstreamProxy.idempotent(request.method), instances: exchange.instances)
    }

    /// One request of this path, as `UpstreamProxy.attempt` drives it.
    private final class CodecCall: UpstreamCall {
        let exchange: Exchange
        let uri: String
        let trace: ServiceContext
        let loop: any EventLoop
        let done: (Result<(HTTPResponseStatus, HTTPHeaders, ByteBuffer), GatewayError>) -> Void

        init(exchange: Exchange, uri: String, trace: ServiceContext, loop: any EventLoop,
             finish: @escaping (Result<(HTTPResponseStatus, HTTPHeaders, ByteBuffer), GatewayError>) -> Void) {
            self.exchange = exchange
            self.uri = uri
            self.trace = trace
            self.loop = loop
            self.done = finish
        }

        func send(to instance: UpstreamInstance, _ done: @escaping (Result<UpstreamHTTPClient.Reply, any Error>) -> Void) {
            let head = UpstreamProxy.upstreamHead(method: exchange.request.method, uri: uri, headers: exchange.request.headers, instance: instance,
                                                  bodyBytes: exchange.body.readableBytes, trace: trace)
            let proxy = exchange.proxy
            proxy.client.start(.init(host: instance.host, port: instance.port), head: head, body: exchange.body.readableBytes > 0 ? exchange.body : nil,
                               timeout: proxy.route.timeout, on: loop).assumeIsolated().whenComplete(done)
        }

        func status(of reply: UpstreamHTTPClient.Reply) -> Int { Int(reply.head.status.code) }

        func finish(_ result: Result<UpstreamHTTPClient.Reply, GatewayError>) {
            done(result.map { ($0.head.status, UpstreamProxy.responseHeaders($0.head), $0.body) })
        }
    }

    private func respond(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, version: HTTPVersion, closing: Bool,
                         context: ChannelHandlerContext) {
        guard active else { return }
        var headers = headers
        headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes))
        if closing {
            headers.replaceOrAdd(name: "connection", value: "close")
        } else if version.major == 1, version.minor == 0 {
            headers.replaceOrAdd(name: "connection", value: "keep-alive")
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        state = .idle
        if closing {
            context.close(promise: nil)
            return
        }
        drain(context: context)
    }
}

struct HTTPHeadersExtractor: Extractor {
    func extract(key: String, from headers: HTTPHeaders) -> String? {
        headers.first(name: key)
    }
}
