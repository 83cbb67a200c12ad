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
/// route's instance list has not been looked up within the last second (the router's lookup refreshes it).
///
/// Responses leave in request order: a request for this handler waits while the router still owes
/// earlier responses, and later requests wait while it proxies.
final class UpstreamFastPathHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

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
        var request: HTTPRequest
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
    private var queued = CircularBuffer<HTTPRequestPart>()
    private var active = true
    private var draining = false

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
        defer { draining = false }
        while active, let part = queued.popFirst() {
            if !process(part, context: context) {
                if active { queued.prepend(part) }
                return
            }
        }
    }

    /// Handles one part; false when it has to wait for a response in progress.
    private func process(_ part: HTTPRequestPart, context: ChannelHandlerContext) -> Bool {
        switch state {
        case .forwarding:
            return false
        case .passing:
            if case .end = part { state = .idle }
            context.fireChannelRead(wrapInboundOut(part))
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
                context.fireChannelRead(wrapInboundOut(part))
                return true
            }
            if let (proxy, instances) = fastRoute(request) {
                guard routerResponses == 0 else { return false }
                state = .collecting(Exchange(request: request, proxy: proxy, instances: instances,
                                             body: context.channel.allocator.buffer(capacity: 0), tooLarge: false))
            } else {
                routerResponses += 1
                state = .passing
                context.fireChannelRead(wrapInboundOut(part))
            }
            return true
        }
    }

    /// The route and its recent instances when this request can be proxied here.
    private func fastRoute(_ request: HTTPRequest) -> (UpstreamProxy, [UpstreamInstance])? {
        guard gateway.services.globalLimiter == nil, request.headerFields[.expect] == nil, let path = request.path else { return nil }
        for proxy in proxies where path.hasPrefix(proxy.route.prefix) {
            let rest = path.utf8.dropFirst(proxy.route.prefix.utf8.count)
            guard rest.first == UInt8(ascii: "/") else { continue }
            guard let instances = proxy.pool.recentInstances() else { return nil }
            return (proxy, instances)
        }
        return nil
    }

    // MARK: Proxying

    private func start(_ exchange: Exchange, context: ChannelHandlerContext) {
        let request = exchange.request
        let configuration = gateway.configuration
        let fullPath = request.path ?? "/"
        let path = fullPath.firstIndex(of: "?").map { String(fullPath[..<$0]) } ?? fullPath
        var serviceContext = ServiceContext.current ?? .topLevel
        InstrumentationSystem.instrument.extract(request.headerFields, into: &serviceContext, using: HTTPFieldsExtractor())
        let span = InstrumentationSystem.tracer.startSpan(request.method.rawValue, context: serviceContext, ofKind: .server)
        let inFlight = gateway.inFlight.count.wrappingAdd(1, ordering: .relaxed).newValue
        let finish: (Result<(HTTPResponse.Status, HTTPFields, ByteBuffer), GatewayError>) -> Void = { [self] result in
            gateway.inFlight.count.subtract(1, ordering: .relaxed)
            let status: HTTPResponse.Status, fields: HTTPFields, body: ByteBuffer
            switch result {
            case .success(let reply):
                (status, fields, body) = reply
            case .failure(let error):
                span.recordError(error)
                status = error.status
                (fields, body) = error.problem(instance: path)
            }
            span.recordHTTP(method: request.method, path: path, status: status)
            span.end()
            respond(status: status, fields: fields, body: body, closing: request.headerFields[.connection]?.lowercased() == "close", context: context)
        }
        if let violation = gateway.limitViolation(headers: request.headerFields, inFlight: inFlight) {
            finish(.failure(violation))
            return
        }
        guard !exchange.tooLarge else {
            finish(.failure(Gateway.bodyTooLarge(configuration.maxBodyBytes)))
            return
        }
        gateway.requestCounters.counter(for: request.method).increment()
        gateway.pipelineProxied.count.add(1, ordering: .relaxed)
        let query = fullPath.firstIndex(of: "?").map { String(fullPath[$0...]) } ?? ""
        let uri = exchange.proxy.upstreamPath(path) + query
        let trace = span.context
        attempt(0, exchange: exchange, uri: uri, trace: trace, tried: [], lastError: nil, loop: context.eventLoop, finish: finish)
    }

    private func attempt(_ number: Int, exchange: Exchange, uri: String, trace: ServiceContext, tried: Set<UpstreamInstance>,
                         lastError: GatewayError?, loop: any EventLoop,
                         finish: @escaping (Result<(HTTPResponse.Status, HTTPFields, ByteBuffer), GatewayError>) -> Void) {
        let proxy = exchange.proxy
        let request = exchange.request
        let idempotent = UpstreamProxy.idempotent(request.method)
        let service = proxy.route.service
        guard number < (idempotent ? 3 : 1) else {
            finish(.failure(lastError ?? GatewayError(.serviceUnavailable, "no instance of \(service) is available")))
            return
        }
        guard proxy.pool.breaker.allow() else {
            Counter(label: "troupe_gateway_breaker_rejections_total", dimensions: [("service", service)]).increment()
            finish(.failure(GatewayError(.serviceUnavailable, "upstream \(service) is failing", detail: "circuit breaker open", headers: [.retryAfter: "1"])))
            return
        }
        guard let instance = proxy.pool.choose(from: exchange.instances, excluding: tried) else {
            finish(.failure(lastError ?? GatewayError(.serviceUnavailable, "no instance of \(service) is available")))
            return
        }
        var tried = tried
        tried.insert(instance)
        let head = UpstreamProxy.upstreamHead(method: request.method, uri: uri, fields: request.headerFields, instance: instance,
                                              bodyBytes: exchange.body.readableBytes, user: nil, trace: trace)
        let body = exchange.body.readableBytes > 0 ? exchange.body : nil
        proxy.client.start(.init(host: instance.host, port: instance.port), head: head, body: body, timeout: proxy.route.timeout, on: loop)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let reply):
                    let status = Int(reply.head.status.code)
                    proxy.pool.finished(instance, success: status < 500)
                    if status == 502 || status == 503 || status == 504, idempotent, number < 2 {
                        attempt(number + 1, exchange: exchange, uri: uri, trace: trace, tried: tried,
                                lastError: GatewayError(.badGateway, "upstream \(service) answered \(status)"), loop: loop, finish: finish)
                        return
                    }
                    finish(.success((HTTPResponse.Status(code: status), UpstreamProxy.responseFields(reply.head), reply.body)))
                case .failure(let error):
                    proxy.pool.finished(instance, success: false)
                    let failure = GatewayError(.badGateway, "upstream \(service) did not answer", detail: "\(error)")
                    if idempotent {
                        attempt(number + 1, exchange: exchange, uri: uri, trace: trace, tried: tried, lastError: failure, loop: loop, finish: finish)
                    } else {
                        finish(.failure(failure))
                    }
                }
            }
    }

    private func respond(status: HTTPResponse.Status, fields: HTTPFields, body: ByteBuffer, closing: Bool, context: ChannelHandlerContext) {
        guard active else { return }
        var fields = fields
        fields[.contentLength] = String(body.readableBytes)
        if closing { fields[.connection] = "close" }
        context.write(wrapOutboundOut(.head(HTTPResponse(status: status, headerFields: fields))), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(body)), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        state = .idle
        if closing {
            context.close(promise: nil)
            return
        }
        drain(context: context)
    }
}
