import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing
import TroupeCache
import TroupeCore
@testable import TroupeGateway
import TroupeTestSupport

/// A real upstream HTTP server on a free loopback port that answers with `status` and its own name.
struct Upstream {
    let instance: UpstreamInstance
    let hits: Locked<Int>
    let task: Task<Void, any Error>

    static func start(_ name: String, status: Locked<Int>) async throws -> Upstream {
        let port = try await ServerProcess.freePort()
        let hits = Locked(0)
        let router = Router()
        router.on("**", method: .get) { request, _ -> Response in
            hits.withLock { $0 += 1 }
            let code = status.withLock { $0 }
            // `/headers` answers the request's header names, lowercased, space-separated (with spaces around).
            let text = request.uri.path.hasSuffix("/headers")
                ? " " + request.headers.map { $0.name.canonicalName }.joined(separator: " ") + " "
                : "\(name) \(request.uri.path)"
            return Response(status: HTTPResponse.Status(code: code), headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.on("**", method: .post) { _, _ -> Response in
            hits.withLock { $0 += 1 }
            return Response(status: HTTPResponse.Status(code: status.withLock { $0 }), body: .init(byteBuffer: ByteBuffer(string: name)))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
                              logger: Logger(label: "upstream", factory: { _ in SwiftLogNoOpLogHandler() }))
        let task = Task { try await app.run() }
        try await withDeadline(.seconds(10)) { while !(await ServerProcess.accepts(port: port)) { try await Task.sleep(for: .milliseconds(20)) } }
        return Upstream(instance: UpstreamInstance(id: name, host: "127.0.0.1", port: port), hits: hits, task: task)
    }
}

@Suite("Gateway upstream routing", .serialized)
struct UpstreamTests {
    @Test("an upstream that never answers: the request fails with 502 at the route's deadline, and the connection is not reused")
    func deadline() async throws {
        // Accepts connections and never writes a byte.
        let port = try await ServerProcess.freePort()
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: port).get()
        defer { silent.close(promise: nil) }
        let store = InMemoryKeyValueStore()
        let pool = UpstreamPool(service: "slow") { [UpstreamInstance(id: "silent", host: "127.0.0.1", port: port)] }
        let gateway = try await Gateway(
            configuration: GatewayConfiguration(signing: .hs256(secret: GatewayTests.secret), issuer: "troupe", audience: "shop"),
            services: GatewayServices(sessions: SessionStore(store: store), idempotency: IdempotencyStore(store: store), authenticate: { _, _ in nil }),
            routes: [], upstreams: [(UpstreamRoute(prefix: "/slow", service: "slow", requiresAuth: false, timeout: .milliseconds(300)), pool)])
        let app = Application(router: gateway.router())
        try await app.test(.router) { client in
            for _ in 0..<2 {
                let started = ContinuousClock.now
                try await client.execute(uri: "/slow/x", method: .get) { response in
                    #expect(response.status == .badGateway)
                    #expect(String(buffer: response.body).contains("did not answer"))
                }
                let elapsed = ContinuousClock.now - started
                #expect(elapsed >= .milliseconds(300) && elapsed < .seconds(3), "\(elapsed)")
            }
        }
    }

    func gateway(_ pool: UpstreamPool) async throws -> Gateway {
        let store = InMemoryKeyValueStore()
        return try await Gateway(
            configuration: GatewayConfiguration(signing: .hs256(secret: GatewayTests.secret), issuer: "troupe", audience: "shop"),
            services: GatewayServices(sessions: SessionStore(store: store), idempotency: IdempotencyStore(store: store), authenticate: { _, _ in nil }),
            routes: [], upstreams: [(UpstreamRoute(prefix: "/api", service: "catalog", requiresAuth: false), pool)])
    }

    @Test("requests spread over healthy instances; a failing one is ejected; idempotent requests are retried elsewhere")
    func balancing() async throws {
        let okStatus = Locked(200), badStatus = Locked(503)
        let good = try await Upstream.start("good", status: okStatus)
        let bad = try await Upstream.start("bad", status: badStatus)
        defer { good.task.cancel(); bad.task.cancel() }
        let pool = UpstreamPool(service: "catalog", ejectAfter: 3, ejectFor: .seconds(30), breaker: AdaptiveBreaker(k: 100)) {
            [good.instance, bad.instance]
        }
        let app = Application(router: try await gateway(pool).router())
        try await app.test(.router) { client in
            for i in 0..<20 {
                try await client.execute(uri: "/api/items/\(i)?x=1", method: .get) { response in
                    #expect(response.status == .ok, "GET is retried on the healthy instance")
                    #expect(String(buffer: response.body) == "good /items/\(i)", "prefix stripped, path kept")
                }
            }
            #expect(pool.ejected.map(\.id) == ["bad"], "the failing instance is ejected")
            #expect(bad.hits.withLock { $0 } <= 3, "after 3 failures it gets no more traffic")
        }
    }

    @Test("non-idempotent requests are not retried")
    func noRetryForPost() async throws {
        let badStatus = Locked(503)
        let bad = try await Upstream.start("bad", status: badStatus)
        defer { bad.task.cancel() }
        let pool = UpstreamPool(service: "catalog", ejectAfter: 100, breaker: AdaptiveBreaker(k: 100)) { [bad.instance] }
        let app = Application(router: try await gateway(pool).router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/orders", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .serviceUnavailable)
            }
            #expect(bad.hits.withLock { $0 } == 1, "POST went out exactly once")
        }
    }

    @Test("the adaptive breaker sheds requests to a failing service locally, and lets them through again when it recovers")
    func breaker() async throws {
        let status = Locked(503)
        let flaky = try await Upstream.start("flaky", status: status)
        defer { flaky.task.cancel() }
        let pool = UpstreamPool(service: "catalog", ejectAfter: 10_000, breaker: AdaptiveBreaker(k: 1.5, window: .seconds(1))) { [flaky.instance] }
        let app = Application(router: try await gateway(pool).router())
        try await app.test(.router) { client in
            var shed = 0
            for _ in 0..<60 {
                try await client.execute(uri: "/api/x", method: .post) { response in
                    if response.status == .serviceUnavailable, String(buffer: response.body).contains("circuit breaker open") { shed += 1 }
                }
            }
            #expect(shed > 20, "most requests are shed locally once the service keeps failing (\(shed) of 60)")
            #expect(flaky.hits.withLock { $0 } < 40)
            // The service recovers; once the failures age out of the window every request goes through.
            status.withLock { $0 = 200 }
            try await Task.sleep(for: .milliseconds(1200))
            for _ in 0..<10 {
                try await client.execute(uri: "/api/x", method: .post) { response in #expect(response.status == .ok) }
            }
        }
    }

    @Test("an upstream prefix must be a path")
    func badPrefix() async throws {
        let store = InMemoryKeyValueStore()
        let pool = UpstreamPool(service: "x") { [] }
        await #expect(throws: GatewayError.self) {
            _ = try await Gateway(
                configuration: GatewayConfiguration(signing: .hs256(secret: GatewayTests.secret), issuer: "troupe", audience: "shop"),
                services: GatewayServices(sessions: SessionStore(store: store), idempotency: IdempotencyStore(store: store), authenticate: { _, _ in nil }),
                routes: [], upstreams: [(UpstreamRoute(prefix: "api", service: "x"), pool)])
        }
    }
}

/// A loopback server answering the first request on each connection with 200 and never the later ones
/// (it closes such a connection after 4 s, so a client without a working deadline fails the test instead of
/// hanging it).
final class FirstRequestOnlyServer: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let answered = Guarded(false)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let text = String(buffer: unwrapInboundIn(data))
        guard text.contains("\r\n\r\n") else { return }
        let first = answered.withLock { answered -> Bool in
            defer { answered = true }
            return !answered
        }
        guard first else {
            context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(4)) { context.close(promise: nil) }
            return
        }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")), promise: nil)
    }
}

@Suite("Upstream client deadlines")
struct UpstreamClientDeadlineTests {
    /// Runs `body` with a client on one event loop (so requests share its keep-alive connection) and a server
    /// answering only each connection's first request; returns how many connections the server accepted.
    func withServer(_ body: (UpstreamHTTPClient, UpstreamHTTPClient.Endpoint) async throws -> Void) async throws -> Int {
        let connections = Locked(0)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                connections.withLock { $0 += 1 }
                return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(FirstRequestOnlyServer()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = UpstreamHTTPClient(group: loop)
        do {
            try await body(client, .init(host: "127.0.0.1", port: server.localAddress!.port!))
        } catch {
            client.shutdown()
            try? await server.close()
            try? await loop.shutdownGracefully()
            throw error
        }
        client.shutdown()
        try await server.close()
        try await loop.shutdownGracefully()
        return connections.withLock { $0 }
    }

    func request(_ path: String) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: ["Host": "x"])
    }

    @Test("a request on a reused connection times out at its own deadline, later or earlier than the previous one's")
    func deadlinesOnReusedConnections() async throws {
        for (first, second) in [(Duration.milliseconds(100), Duration.milliseconds(600)), (.seconds(3), .milliseconds(300))] {
            let accepted = try await withServer { client, endpoint in
                let ok = try await client.execute(endpoint, head: request("/first"), body: nil, timeout: first)
                #expect(ok.head.status == .ok)
                let start = ContinuousClock.now
                await #expect(throws: (any Error).self) { try await client.execute(endpoint, head: request("/hangs"), body: nil, timeout: second) }
                let waited = ContinuousClock.now - start
                #expect(waited >= second - .milliseconds(20) && waited < second + .milliseconds(700),
                        "timed out after \(waited), deadline \(second) (the previous request's was \(first))")
            }
            #expect(accepted == 1, "both requests used one keep-alive connection")
        }
    }
}
