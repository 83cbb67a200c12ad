import Foundation
import Testing
@testable import TroupeGateway
import TroupeCore
import HTTPTypes

@Suite("Requests HTTP/1.1 says to refuse: Host fields, oversized heads, malformed requests", .serialized)
struct RequestHeadCheckTests {
    let serving = EventLoopServingTests()

    /// The answer to `raw` on a fresh connection, and whether the server closed the connection after it.
    func answer(_ port: Int, _ raw: String, closeWait: Duration = .seconds(3)) async throws -> (text: String, closed: Bool) {
        try await serving.exchangeWatchingClose(port: port, raw, closeWait: closeWait) { $0.contains("\r\n\r\n") && ($0.hasSuffix("}") || $0.hasSuffix("loop") || $0.hasSuffix("/x")) }
    }

    @Test("no Host or two Host fields: 400 in the API's words, connection closed — on the router and on the proxy paths",
          arguments: [true, false])
    func hostFields(byteLevel: Bool) async throws {
        try await serving.withLiveGateway(byteLevel: byteLevel) { port, upstream, _ in
            for path in ["/where", "/api/x"] {
                let none = try await answer(port, "GET \(path) HTTP/1.1\r\n\r\n")
                #expect(none.text.hasPrefix("HTTP/1.1 400"), "\(path) without Host: \(none.text)")
                #expect(none.text.contains("needs a Host field") && none.closed)
                let two = try await answer(port, "GET \(path) HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
                #expect(two.text.hasPrefix("HTTP/1.1 400"), "\(path) with two Host fields: \(two.text)")
                #expect(two.text.contains("only one Host field") && two.closed)
            }
            #expect(upstream.hits.withLock { $0 } == 0, "nothing refused reached the upstream")
            // HTTP/1.0 may omit Host; one Host is fine.
            let old = try await answer(port, "GET /where HTTP/1.0\r\n\r\n", closeWait: .zero)
            #expect(old.text.contains(" 200 "), "HTTP/1.0 without Host: \(old.text)")
            #expect(try await answer(port, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n", closeWait: .zero).text.hasPrefix("HTTP/1.1 200"))
        }
    }

    @Test("a 1 MB token is answered 431, a malformed request line 400, each closing the connection")
    func oversizedAndMalformed() async throws {
        try await serving.withLiveGateway { port, upstream, _ in
            let token = String(repeating: "a", count: 1 << 20)
            let big = try await answer(port, "GET /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\n\r\n")
            #expect(big.text.hasPrefix("HTTP/1.1 431"), "\(big.text.prefix(200))")
            #expect(big.text.contains("application/problem+json") && big.closed)
            let garbage = try await answer(port, "GET /where HTTP/1.1 extra\r\nHost: x\r\n\r\n")
            #expect(garbage.text.hasPrefix("HTTP/1.1 400"), "\(garbage.text)")
            #expect(garbage.text.contains("not well-formed") && garbage.closed)
            #expect(upstream.hits.withLock { $0 } == 0)
        }
    }

    @Test("behind a pipelined request, the refusal waits for the earlier response")
    func pipelinedRefusal() async throws {
        try await serving.withLiveGateway(byteLevel: false) { port, _, _ in
            let reply = try await serving.exchangeWatchingClose(port: port, "GET /where HTTP/1.1\r\nHost: x\r\n\r\nGET /where HTTP/1.1\r\n\r\n",
                                                                closeWait: .seconds(3)) { $0.contains("needs a Host field") }
            let first = try #require(reply.text.range(of: "HTTP/1.1 200"))
            let second = try #require(reply.text.range(of: "HTTP/1.1 400"))
            #expect(first.lowerBound < second.lowerBound)
            #expect(reply.closed)
        }
    }
}
