import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing
import TroupeCache
import TroupeCore
@testable import TroupeGateway
import TroupeTestSupport

/// Collects every byte a raw client connection receives.
final class ByteCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let received = Mutex("")

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        received.withLock { $0 += String(buffer: buffer) }
    }
}

@Suite("Gateway connections served on their event loop", .serialized)
struct EventLoopServingTests {
    /// A live gateway (`Gateway.application`, i.e. `.http1OnEventLoop()`) with a route that reports the
    /// thread it runs on and an upstream route.
    func withLiveGateway(_ body: @Sendable (Int, Upstream) async throws -> Void) async throws {
        let upstream = try await Upstream.start("up", status: Locked(200))
        defer { upstream.task.cancel() }
        let store = InMemoryKeyValueStore()
        let whereRoute = GatewayRoute(.get, "/where", summary: "the serving thread", requiresAuth: false) { _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: MultiThreadedEventLoopGroup.currentEventLoop == nil ? "pool" : "loop")))
        }
        let gateway = try await Gateway(
            configuration: GatewayConfiguration(signing: .hs256(secret: GatewayTests.secret), issuer: "troupe", audience: "shop"),
            services: GatewayServices(sessions: SessionStore(store: store), idempotency: IdempotencyStore(store: store), authenticate: { _, _ in nil }),
            routes: [whereRoute],
            upstreams: [(UpstreamRoute(prefix: "/api", service: "up", requiresAuth: false), UpstreamPool(service: "up") { [upstream.instance] })])
        let port = try await ServerProcess.freePort()
        let logger = Logger(label: "gateway", factory: { _ in SwiftLogNoOpLogHandler() })
        let group = ServiceGroup(configuration: .init(services: [gateway.application(port: port, logger: logger)], logger: logger))
        let server = Task { try await group.run() }
        defer { server.cancel() }
        try await withDeadline(.seconds(10)) { while !(await ServerProcess.accepts(port: port)) { try await Task.sleep(for: .milliseconds(20)) } }
        try await body(port, upstream)
        await group.triggerGracefulShutdown()
    }

    /// Sends `raw` on one connection and waits until the received text satisfies `done`.
    func exchange(port: Int, _ raw: String, until done: @escaping @Sendable (String) -> Bool) async throws -> String {
        let collector = ByteCollector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) } }
            .connect(host: "127.0.0.1", port: port).get()
        defer { channel.close(promise: nil) }
        try await channel.writeAndFlush(ByteBuffer(string: raw))
        return try await withDeadline(.seconds(10)) {
            while true {
                let text = collector.received.withLock { $0 }
                if done(text) { return text }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    @Test("route handlers run on the connection's event loop; proxied requests answer through it")
    func handlersOnTheLoop() async throws {
        try await withLiveGateway { port, upstream in
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
        try await withLiveGateway { port, _ in
            let requests = ["/api/a", "/where", "/api/b", "/health", "/api/c"].map { "GET \($0) HTTP/1.1\r\nHost: x\r\n\r\n" }.joined()
            let text = try await exchange(port: port, requests) { $0.components(separatedBy: "HTTP/1.1 200").count == 6 }
            let order = ["up /a", "loop", "up /b", "\"status\":\"ok\"", "up /c"].map { text.range(of: $0)?.lowerBound }
            #expect(order.allSatisfy { $0 != nil }, "every answer arrived: \(text)")
            let positions = order.compactMap { $0 }
            #expect(positions == positions.sorted(), "answers in request order: \(text)")
        }
    }
}
