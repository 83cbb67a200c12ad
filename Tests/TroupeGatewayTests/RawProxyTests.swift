import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TroupeCore
@testable import TroupeGateway
import TroupeTestSupport

/// A loopback HTTP/1.1 server that answers each request (head and Content-Length body, as text) with the
/// bytes `script` returns for it: nil says nothing, and an answer ending in `ScriptedUpstream.close` is
/// followed by closing the connection.
final class ScriptedUpstream: Sendable {
    static let close = "\u{0}close"
    let channel: any Channel
    let requests = Locked<[String]>([])
    let connections = Locked(0)

    var upstream: Upstream {
        let port = channel.localAddress?.port ?? 0
        return Upstream(instance: UpstreamInstance(id: "scripted", host: "127.0.0.1", port: port), hits: Locked(0), task: Task {})
    }

    init(_ script: @escaping @Sendable (String) -> String?) async throws {
        let requests = self.requests, connections = self.connections
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                connections.withLock { $0 += 1 }
                return child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(Handler(script: script, requests: requests))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    deinit { channel.close(promise: nil) }

    private final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let script: @Sendable (String) -> String?
        let requests: Locked<[String]>
        let unread = Locked("")

        init(script: @escaping @Sendable (String) -> String?, requests: Locked<[String]>) {
            self.script = script
            self.requests = requests
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let text = unread.withLock { $0 + String(buffer: unwrapInboundIn(data)) }
            var rest = Substring(text)
            while let end = rest.range(of: "\r\n\r\n") {
                let head = rest[..<end.upperBound]
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                guard rest.utf8.count >= head.utf8.count + length else { break }
                let request = String(rest.prefix(head.count + length))
                rest = rest.dropFirst(request.count)
                requests.withLock { $0.append(request) }
                guard let answer = script(request) else { continue }
                let closing = answer.hasSuffix(ScriptedUpstream.close)
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: closing ? String(answer.dropLast(ScriptedUpstream.close.count)) : answer)), promise: nil)
                if closing { context.close(promise: nil) }
            }
            unread.withLock { $0 = String(rest) }
        }
    }
}

@Suite("Gateway byte-level proxy path", .serialized)
struct RawProxyTests {
    let serving = EventLoopServingTests()

    func path(of request: String) -> String {
        String(request.split(separator: " ").dropFirst().first ?? "")
    }

    /// Body of a response text (after the head).
    func body(_ text: String) -> String {
        text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    }

    @Test("upstream chunked, interim, HEAD and close-delimited responses reach the client whole, with Content-Length")
    func responseFraming() async throws {
        let upstream = try await ScriptedUpstream { request in
            switch self.path(of: request) {
            case "/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
            case "/interim": "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            case "/head": "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Head: 1\r\n\r\n"
            case "/until-close": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close" + ScriptedUpstream.close
            default: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            }
        }
        try await serving.withLiveGateway(instances: [upstream.upstream]) { port, _, gateway in
            let chunked = try await serving.exchange(port: port, "GET /api/chunked HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("hello world") }
            #expect(chunked.hasPrefix("HTTP/1.1 200 OK\r\n") && chunked.contains("X-Up: 1\r\n") && chunked.contains("content-length: 11\r\n"))
            #expect(!chunked.lowercased().contains("transfer-encoding") && !chunked.contains("X-T"), "\(chunked)")
            let interim = try await serving.exchange(port: port, "GET /api/interim HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("ok") }
            #expect(interim.hasPrefix("HTTP/1.1 200 OK\r\n") && !interim.contains("100 Continue") && !interim.contains("Early"), "\(interim)")
            let head = try await serving.exchange(port: port, "HEAD /api/head HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("\r\n\r\n") }
            #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n") && head.contains("X-Head: 1\r\n") && head.lowercased().contains("content-length: 10\r\n"), "\(head)")
            #expect(body(head).isEmpty)
            let before = upstream.requests.withLock { $0.count }
            for _ in 0..<3 {
                // A connection reused after the upstream closed it would fail this request (one instance: a 502).
                let untilClose = try await serving.exchange(port: port, "GET /api/until-close HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("until close") }
                #expect(untilClose.hasPrefix("HTTP/1.1 200 OK\r\n") && untilClose.contains("content-length: 11\r\n"))
            }
            #expect(upstream.requests.withLock { $0.count } - before == 3, "each close-delimited exchange went out once")
            #expect(gateway.pipelineProxied.count.load(ordering: .relaxed) == 6)
        }
    }

    @Test("a malformed, oversized or missing upstream response is a 502 problem+json; the client connection goes on")
    func upstreamFailures() async throws {
        let upstream = try await ScriptedUpstream { request in
            switch self.path(of: request) {
            case "/garbage": "SSH-2.0-OpenSSH_9.2\r\n\r\n"
            case "/lengths": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
            case "/huge": "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + String(repeating: "z", count: 5000)
            case "/silent": nil
            default: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine"
            }
        }
        // maxBodyBytes 64: the upstream client accepts responses up to 16 × that.
        try await serving.withLiveGateway(instances: [upstream.upstream], maxBodyBytes: 64, timeout: .milliseconds(300)) { port, _, _ in
            for target in ["/api/garbage", "/api/lengths", "/api/huge"] {
                // POST: not retried, so each failure is the upstream's own.
                let raw = "POST \(target) HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET /api/next HTTP/1.1\r\nHost: x\r\n\r\n"
                let text = try await serving.exchange(port: port, raw) { $0.hasSuffix("fine") }
                #expect(text.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), "\(target): \(text)")
                #expect(text.contains("application/problem+json") && text.contains("did not answer"), "\(target): \(text)")
                #expect(text.contains("HTTP/1.1 200 OK"), "the next request on the same connection was answered")
            }
            let started = ContinuousClock.now
            let silent = try await serving.exchange(port: port, "POST /api/silent HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n") { $0.contains("}") }
            let elapsed = ContinuousClock.now - started
            #expect(silent.hasPrefix("HTTP/1.1 502") && silent.contains("no response within"), "\(silent)")
            #expect(elapsed >= .milliseconds(300) && elapsed < .seconds(3), "\(elapsed)")
        }
    }

    @Test("the upstream gets the request line, end-to-end fields, Host, Content-Length and body; hop-by-hop fields stay behind")
    func requestForwarding() async throws {
        let upstream = try await ScriptedUpstream { request in
            "HTTP/1.1 200 OK\r\nContent-Length: \(request.utf8.count)\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n\(request)"
        }
        try await serving.withLiveGateway(instances: [upstream.upstream]) { port, _, gateway in
            let raw = "POST /api/echo/1?q=2 HTTP/1.1\r\nHost: client\r\nX-Custom: a b\r\nTE: trailers\r\nKeep-Alive: timeout=1\r\nContent-Length: 7\r\nConnection: keep-alive\r\n\r\n{\"a\":1}"
            let text = try await serving.exchange(port: port, raw) { $0.hasSuffix("{\"a\":1}") }
            let forwarded = try #require(upstream.requests.withLock { $0.last })
            let port = upstream.upstream.instance.port
            #expect(forwarded == "POST /echo/1?q=2 HTTP/1.1\r\nX-Custom: a b\r\nHost: 127.0.0.1:\(port)\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(!text.contains("Keep-Alive") && !text.contains("Connection: keep-alive"), "the upstream's hop-by-hop fields stay behind: \(text)")
            #expect(gateway.pipelineProxied.count.load(ordering: .relaxed) == 1)
        }
    }

    @Test("identity fields a client sends (X-Troupe-*, any case, repeated) never reach an upstream, on either proxy path")
    func identitySpoofing() async throws {
        let upstream = try await ScriptedUpstream { request in
            "HTTP/1.1 200 OK\r\nContent-Length: \(request.utf8.count)\r\nX-Troupe-User: leaked\r\n\r\n\(request)"
        }
        for byteLevel in [true, false] {
            try await serving.withLiveGateway(instances: [upstream.upstream], byteLevel: byteLevel) { port, _, _ in
                let raw = "GET /api/me HTTP/1.1\r\nHost: x\r\nX-Troupe-User: admin\r\nx-troupe-user: root\r\nX-TROUPE-ROLES: all\r\nX-Other: kept\r\n\r\n"
                // The upstream answers the request it got as its body: wait for that request's end.
                let text = try await serving.exchange(port: port, raw) { $0.contains("\r\n\r\nGET ") && $0.hasSuffix("\r\n\r\n") }
                let forwarded = try #require(upstream.requests.withLock { $0.last })
                #expect(!forwarded.lowercased().contains("x-troupe-"), "byte level \(byteLevel): \(forwarded)")
                #expect(forwarded.contains("X-Other: kept"))
                let head = String(text[..<(text.range(of: "\r\n\r\n")?.lowerBound ?? text.endIndex)])
                #expect(!head.lowercased().contains("x-troupe-user"), "the upstream's X-Troupe-* fields stay behind too: \(head)")
            }
        }
    }

    @Test("pipelined requests on the byte-level path are answered in order; Connection: close is honoured")
    func pipeliningAndClose() async throws {
        let upstream = try await ScriptedUpstream { request in
            let path = self.path(of: request)
            return "HTTP/1.1 200 OK\r\nContent-Length: \(path.utf8.count)\r\n\r\n\(path)"
        }
        try await serving.withLiveGateway(instances: [upstream.upstream]) { port, _, gateway in
            let raw = ["/api/1", "/api/2", "/api/3"].map { "GET \($0) HTTP/1.1\r\nHost: x\r\n\r\n" }.joined()
            let text = try await serving.exchange(port: port, raw) { $0.hasSuffix("/3") }
            let positions = ["\r\n\r\n/1", "\r\n\r\n/2", "\r\n\r\n/3"].compactMap { text.range(of: $0)?.lowerBound }
            #expect(positions.count == 3 && positions == positions.sorted(), "\(text)")
            #expect(gateway.pipelineProxied.count.load(ordering: .relaxed) == 3)
            let closing = try await serving.exchangeWatchingClose(port: port, "GET /api/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                                                  closeWait: .seconds(5)) { $0.hasSuffix("/last") }
            #expect(closing.text.contains("connection: close\r\n") && closing.closed)
        }
    }

    @Test("with byteLevelProxy off every request goes through the codec path, answered the same")
    func switchedOff() async throws {
        let upstream = try await ScriptedUpstream { request in
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        }
        for byteLevel in [true, false] {
            try await serving.withLiveGateway(instances: [upstream.upstream], byteLevel: byteLevel) { port, _, gateway in
                for i in 0..<3 {
                    let text = try await serving.exchange(port: port, "GET /api/x/\(i) HTTP/1.1\r\nHost: x\r\n\r\n") { $0.hasSuffix("abc") }
                    #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n") && text.lowercased().contains("content-length: 3\r\n"), "\(text)")
                }
                #expect(gateway.pipelineProxied.count.load(ordering: .relaxed) >= 2)
                #expect(gateway.byteLevelProxied.count.load(ordering: .relaxed) == (byteLevel ? 3 : 0))
            }
        }
    }
}
