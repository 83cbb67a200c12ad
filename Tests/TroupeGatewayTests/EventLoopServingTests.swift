import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization
import Testing
import TroupeCache
import TroupeCore
@testable import TroupeGateway
import TroupeTestSupport
import TroupeTLS

/// Collects every byte a raw client connection receives.
final class ByteCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let received = Guarded("")
    /// Set when the server closed the connection.
    let closed = Guarded(false)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        received.withLock { $0 += String(buffer: buffer) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed.withLock { $0 = true }
        context.fireChannelInactive()
    }
}

@Suite("Gateway connections served on their event loop", .serialized)
struct EventLoopServingTests {
    /// A live gateway (`Gateway.application`: connections on their event loops, public upstream routes
    /// proxied in the pipeline) with a route that reports the thread it runs on and an upstream route
    /// `/api` over `instances` (one upstream "up" answering 200 by default).
    func withLiveGateway(instances: [Upstream]? = nil, maxBodyBytes: Int? = nil, timeout: Duration = .seconds(10), byteLevel: Bool = true,
                         tls: TLSContextReloader? = nil, configure: (inout GatewayConfiguration) -> Void = { _ in },
                         _ body: @Sendable (Int, Upstream, Gateway) async throws -> Void) async throws {
        let upstream = try await Upstream.start("up", status: Locked(200))
        defer { upstream.task.cancel() }
        let pool = instances.map { list in list.map(\.instance) } ?? [upstream.instance]
        let store = InMemoryKeyValueStore()
        let whereRoute = GatewayRoute(.get, "/where", summary: "the serving thread", requiresAuth: false) { _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: MultiThreadedEventLoopGroup.currentEventLoop == nil ? "pool" : "loop")))
        }
        var configuration = GatewayConfiguration(signing: .hs256(secret: GatewayTests.secret), issuer: "troupe", audience: "shop")
        if let maxBodyBytes { configuration.maxBodyBytes = maxBodyBytes }
        configuration.byteLevelProxy = byteLevel
        configure(&configuration)
        let gateway = try await Gateway(
            configuration: configuration,
            services: GatewayServices(sessions: SessionStore(store: store), idempotency: IdempotencyStore(store: store), authenticate: { _, _ in nil }),
            routes: [whereRoute],
            upstreams: [(UpstreamRoute(prefix: "/api", service: "up", requiresAuth: false, timeout: timeout),
                         UpstreamPool(service: "up", ejectAfter: 100, breaker: AdaptiveBreaker(k: 100)) { pool })])
        let port = try await ServerProcess.freePort()
        let logger = Logger(label: "gateway", factory: { _ in SwiftLogNoOpLogHandler() })
        let group = ServiceGroup(configuration: .init(services: [gateway.application(port: port, tls: tls, logger: logger)], logger: logger))
        let server = Task { try await group.run() }
        defer { server.cancel() }
        try await withDeadline(.seconds(10)) { while !(await ServerProcess.accepts(port: port)) { try await Task.sleep(for: .milliseconds(20)) } }
        try await body(port, upstream, gateway)
        // Stopped gracefully and waited for (cancelling it straight away would cut the connections' drain short).
        await group.triggerGracefulShutdown()
        try await withDeadline(.seconds(10)) { try await server.value }
    }

    /// Sends `raw` on one connection and waits until the received text satisfies `done`.
    func exchange(port: Int, _ raw: String, tls: NIOSSLContext? = nil, until done: @escaping @Sendable (String) -> Bool) async throws -> String {
        try await exchangeWatchingClose(port: port, raw, tls: tls, until: done).text
    }

    /// The same, also telling whether the server closed the connection within `closeWait` after answering.
    func exchangeWatchingClose(port: Int, _ raw: String, closeWait: Duration = .zero, tls: NIOSSLContext? = nil,
                               until done: @escaping @Sendable (String) -> Bool) async throws -> (text: String, closed: Bool) {
        let collector = ByteCollector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: "localhost")) }
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        defer { channel.close(promise: nil) }
        try await channel.writeAndFlush(ByteBuffer(string: raw))
        let text = try await withDeadline(.seconds(10)) {
            while true {
                let text = collector.received.withLock { $0 }
                if done(text) { return text }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        let deadline = ContinuousClock.now + closeWait
        while !collector.closed.withLock({ $0 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        return (text, collector.closed.withLock { $0 })
    }

    @Test("route handlers run on the connection's event loop; proxied requests answer through it")
    func handlersOnTheLoop() async throws {
        try await withLiveGateway { port, upstream, _ in
            let text = try await exchange(port: port, "GET /where HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("loop") || $0.hasSuffix("pool") }
            #expect(text.hasPrefix("HTTP/1.1 200"))
            #expect(text.hasSuffix("loop"), "the handler ran on an event loop thread: \(text)")
            for i in 0..<20 {
                let reply = try await exchange(port: port, "GET /api/item/\(i) HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("up /item/\(i)") }
                #expect(reply.hasPrefix("HTTP/1.1 200"))
            }
            #expect(upstream.hits.withLock { $0 } == 20)
        }
    }

    @Test("pipelined requests mixing local and proxied routes are answered in order")
    func pipelinedInOrder() async throws {
        // /api/a takes the byte-level path; /where hands the connection to the codec path, where /api/b is
        // proxied in the pipeline and /health then goes to the router after it (this stalled until the next
        // read before the codec path ended such forwarding with a read-complete).
        try await withLiveGateway { port, _, _ in
            let requests = ["/api/a", "/where", "/api/b", "/health", "/api/c"].map { "GET \($0) HTTP/1.1\r\nHost: x\r\n\r\n" }.joined()
            let text = try await exchange(port: port, requests) { $0.components(separatedBy: "HTTP/1.1 200").count == 6 }
            let order = ["up /a", "loop", "up /b", "\"status\":\"ok\"", "up /c"].map { text.range(of: $0)?.lowerBound }
            #expect(order.allSatisfy { $0 != nil }, "every answer arrived: \(text)")
            let positions = order.compactMap { $0 }
            #expect(positions == positions.sorted(), "answers in request order: \(text)")
        }
    }

    @Test("public upstream routes are proxied in the pipeline once the instances were looked up, with the router's rules")
    func proxiedInPipeline() async throws {
        try await withLiveGateway(maxBodyBytes: 64) { port, upstream, gateway in
            // The first request finds no instance list yet: it is looked up from the event loop, and the request
            // still proxied in the pipeline.
            let first = try await exchange(port: port, "GET /api/one?x=1 HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("up /one") }
            #expect(first.hasPrefix("HTTP/1.1 200"))
            #expect(gateway.pipelineProxied.count.load(ordering: .relaxed) == 1)
            for i in 0..<10 {
                let reply = try await exchange(port: port, "GET /api/item/\(i)?q=\(i) HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("up /item/\(i)") }
                #expect(reply.hasPrefix("HTTP/1.1 200"), "\(reply)")
                #expect(reply.lowercased().contains("content-length: \("up /item/\(i)".utf8.count)"))
            }
            #expect(gateway.pipelineProxied.count.load(ordering: .relaxed) >= 9, "most of them were proxied in the pipeline")
            #expect(upstream.hits.withLock { $0 } == 11)
            // Limits answer problem+json without reaching the upstream.
            let big = String(repeating: "a", count: 100)
            let tooLarge = try await exchange(port: port, "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n\(big)") { $0.contains("}") }
            #expect(tooLarge.hasPrefix("HTTP/1.1 413"), "\(tooLarge)")
            #expect(tooLarge.contains("application/problem+json") && tooLarge.contains("request body too large"))
            let chunked = try await exchange(port: port, "POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n\(big)\r\n0\r\n\r\n") { $0.contains("}") }
            #expect(chunked.hasPrefix("HTTP/1.1 413"), "a chunked body over the limit: \(chunked)")
            let header = "X-Big: " + String(repeating: "h", count: 17 * 1024)
            let headers = try await exchange(port: port, "GET /api/x HTTP/1.1\r\nHost: x\r\n\(header)\r\n\r\n") { $0.contains("}") }
            #expect(headers.hasPrefix("HTTP/1.1 431"), "\(headers.prefix(200))")
            #expect(upstream.hits.withLock { $0 } == 11, "refused requests never reached the upstream")
            // Connection: close is honoured.
            let closing = try await exchange(port: port, "GET /api/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") { $0.hasSuffix("up /last") }
            #expect(closing.lowercased().contains("connection: close"))
        }
    }

    @Test("in the pipeline: HTTP/1.0 keep-alive semantics, hop-by-hop headers stay on their hop")
    func pipelineHTTP10AndHopByHop() async throws {
        try await withLiveGateway { port, _, gateway in
            _ = try await exchange(port: port, "GET /api/warm HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("up /warm") }
            let before = gateway.pipelineProxied.count.load(ordering: .relaxed)
            // HTTP/1.0 without keep-alive: answered as 1.0, then the gateway closes the connection.
            let plain = try await exchangeWatchingClose(port: port, "GET /api/old HTTP/1.0\r\n\r\n", closeWait: .seconds(5)) { $0.hasSuffix("up /old") }
            #expect(plain.text.hasPrefix("HTTP/1.0 200"), "\(plain.text)")
            #expect(plain.text.lowercased().contains("connection: close"))
            #expect(plain.closed, "an HTTP/1.0 connection without keep-alive is closed after the response")
            // HTTP/1.0 asking for keep-alive: told so, and the connection serves the next request.
            let kept = try await exchangeWatchingClose(
                port: port, "GET /api/k1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /api/k2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                closeWait: .milliseconds(200)) { $0.hasSuffix("up /k2") }
            #expect(kept.text.contains("up /k1") && kept.text.lowercased().contains("connection: keep-alive"), "\(kept.text)")
            #expect(!kept.closed)
            // Hop-by-hop request headers are not forwarded; end-to-end ones are.
            let echoed = try await exchange(port: port, "GET /api/headers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nX-Custom: 1\r\nKeep-Alive: timeout=5\r\n\r\n") {
                $0.contains("x-custom")
            }
            #expect(!echoed.contains("keep-alive") && !echoed.contains(" te "), "\(echoed)")
            #expect(gateway.pipelineProxied.count.load(ordering: .relaxed) - before == 4, "all four took the pipeline path")
        }
    }

    @Test("in the pipeline, an idempotent request is retried on another instance after a 503; a POST is not")
    func pipelineRetries() async throws {
        let bad = try await Upstream.start("bad", status: Locked(503))
        let good = try await Upstream.start("good", status: Locked(200))
        defer { bad.task.cancel(); good.task.cancel() }
        try await withLiveGateway(instances: [bad, good]) { port, _, gateway in
            _ = try await exchange(port: port, "GET /api/warm HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("good /warm") }
            for i in 0..<10 {
                let reply = try await exchange(port: port, "GET /api/r/\(i) HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("good /r/\(i)") }
                #expect(reply.hasPrefix("HTTP/1.1 200"))
            }
            #expect(gateway.pipelineProxied.count.load(ordering: .relaxed) >= 9)
            let badBefore = bad.hits.withLock { $0 }, goodBefore = good.hits.withLock { $0 }
            var statuses: [String] = []
            for _ in 0..<10 {
                let reply = try await exchange(port: port, "POST /api/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}") { $0.hasSuffix("good") || $0.hasSuffix("bad") }
                statuses.append(String(reply.prefix(12)))
            }
            let sent = (bad.hits.withLock { $0 } - badBefore) + (good.hits.withLock { $0 } - goodBefore)
            #expect(sent == 10, "each POST went out exactly once: \(statuses)")
            #expect(statuses.contains { $0.hasPrefix("HTTP/1.1 503") }, "a POST that reached the failing instance got its 503: \(statuses)")
        }
    }
}
