import NIOCore
import Testing
@testable import TroupeGateway

@Suite("HTTP/1.1 head scanner of the byte-level proxy path")
struct HTTP1ScannerTests {
    func request(_ text: String) -> HTTP1Scanner.RequestScan {
        Array(text.utf8).withUnsafeBytes { HTTP1Scanner.scanRequest($0) }
    }

    func response(_ text: String, toHEAD: Bool = false) -> HTTP1Scanner.ResponseScan {
        Array(text.utf8).withUnsafeBytes { HTTP1Scanner.scanResponse($0, toHEAD: toHEAD) }
    }

    func text(_ source: String, _ range: Range<Int>) -> String {
        String(decoding: Array(source.utf8)[range], as: UTF8.self)
    }

    @Test("a plain request: method, target, fields, length, Content-Length and Connection")
    func plainRequest() throws {
        let raw = "POST /api/orders?x=1 HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\nX-Empty:\r\nConnection: keep-alive, close\r\n\r\n{}"
        guard case .request(let head) = request(raw) else { Issue.record("not a request: \(request(raw))"); return }
        #expect(text(raw, head.method) == "POST")
        #expect(text(raw, head.target) == "/api/orders?x=1")
        #expect(head.fields.map { text(raw, $0.name) } == ["Host", "Content-Length", "X-Empty", "Connection"])
        #expect(head.fields.map { text(raw, $0.value) } == ["shop", "2", "", "keep-alive, close"])
        #expect(head.length == raw.utf8.count - 2)
        #expect(head.contentLength == 2)
        #expect(head.close)
        #expect(head.fieldBytes == (4 + 4 + 4) + (14 + 1 + 4) + (7 + 0 + 4) + (10 + 17 + 4))
    }

    @Test("values lose surrounding blanks, keep inner ones and obs-text")
    func fieldValues() throws {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nA: \t one two \t\r\nB: caf\u{e9}\r\n\r\n"
        guard case .request(let head) = request(raw) else { Issue.record("not a request"); return }
        #expect(head.fields.map { text(raw, $0.value) } == ["h", "one two", "caf\u{e9}"])
        #expect(!head.close)
    }

    @Test("anything unusual is left to the full codec", arguments: [
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET http://example.com/ HTTP/1.1\r\n\r\n",
        "GET * HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 9999999999999999\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: X-Private\r\n\r\n",
        "GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nA : 1\r\n\r\n",
        "GET / HTTP/1.1\r\n: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nA: 1\n\r\n",
        "GET / HTTP/1.1\r\nA: 1\r2\r\n\r\n",
        "GET / HTTP/1.1\r\nA: \u{0}\r\n\r\n",
        "GET / HTTP/1.1\r\nA: \u{7f}\r\n\r\n",
        "GET /\u{1} HTTP/1.1\r\n\r\n",
    ])
    func unsupported(raw: String) {
        guard case .unsupported = request(raw) else {
            Issue.record("\(raw.debugDescription) was \(request(raw))")
            return
        }
    }

    @Test("every strict prefix of a request is incomplete, never a request or a trap")
    func truncatedRequests() {
        let raw = "PUT /a/b?c=d HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nX-A:  v \r\n\r\n"
        let bytes = Array(raw.utf8)
        for end in 0..<bytes.count {
            let scan = bytes[0..<end].withUnsafeBytes { HTTP1Scanner.scanRequest($0) }
            guard case .incomplete = scan else {
                Issue.record("prefix of \(end) bytes: \(scan)")
                return
            }
        }
        guard case .request = bytes.withUnsafeBytes({ HTTP1Scanner.scanRequest($0) }) else {
            Issue.record("the whole request was not read")
            return
        }
    }

    @Test("responses: status, reason, framing and whether the connection can be reused")
    func responses() throws {
        func head(_ raw: String, toHEAD: Bool = false) -> HTTP1Scanner.ResponseHead? {
            guard case .response(let head) = response(raw, toHEAD: toHEAD) else { return nil }
            return head
        }
        let plain = "HTTP/1.1 201 Created Now\r\nContent-Length: 5\r\nETag: x\r\n\r\nhello"
        let created = try #require(head(plain))
        #expect(created.status == 201 && text(plain, created.reason) == "Created Now")
        #expect(created.framing == .length(5) && !created.close && created.length == plain.utf8.count - 5)
        #expect(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?.framing == .chunked)
        let both = try #require(head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"))
        #expect(both.framing == .chunked && both.close, "chunked wins; the connection is not reused")
        let untilClose = try #require(head("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"))
        #expect(untilClose.framing == .untilClose && untilClose.close)
        #expect(head("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", toHEAD: true)?.framing == HTTP1Scanner.Framing.none)
        #expect(head("HTTP/1.1 204 No Content\r\n\r\n")?.framing == HTTP1Scanner.Framing.none)
        #expect(head("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n")?.framing == HTTP1Scanner.Framing.none)
        #expect(head("HTTP/1.1 100 Continue\r\n\r\n")?.status == 100)
        #expect(head("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")?.status == 200, "the reason phrase may be missing")
        #expect(head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?.close == true)
        #expect(head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")?.close == true)
        #expect(head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")?.close == false)
        #expect(head("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n")?.framing == .length(4))
    }

    @Test("malformed responses are refused with a reason", arguments: [
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 20x OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n",
    ])
    func malformedResponses(raw: String) {
        guard case .invalid = response(raw) else {
            Issue.record("\(raw.debugDescription) was \(response(raw))")
            return
        }
    }

    @Test("chunked bodies are read across any split, with extensions and trailers")
    func chunks() {
        let raw = Array("5;ext=1\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n".utf8)
        for split in 0...raw.count {
            var offset = 0
            var body = ByteBuffer()
            let first = raw[0..<split].withUnsafeBytes { HTTP1Scanner.scanChunks($0, from: &offset, into: &body, limit: 100) }
            if split < raw.count {
                guard case .incomplete = first else {
                    Issue.record("split at \(split): \(first)")
                    return
                }
            }
            let second = raw.withUnsafeBytes { HTTP1Scanner.scanChunks($0, from: &offset, into: &body, limit: 100) }
            guard case .end(let end) = second, end == raw.count else {
                Issue.record("split at \(split): \(second)")
                return
            }
            #expect(String(buffer: body) == "hello world0123456789", "split at \(split)")
        }
    }

    @Test("malformed or oversized chunked bodies are refused", arguments: [
        ("x\r\n", 100), ("5\r\nhelloXX", 100), ("5\nhello\r\n0\r\n\r\n", 100), ("FFFFFFFFFFFFFFFF\r\n", 100),
        ("10\r\n0123456789abcdef\r\n0\r\n\r\n", 8), ("0\r\nBad Trailer\r\n\r\n", 100),
    ])
    func badChunks(raw: String, limit: Int) {
        var offset = 0
        var body = ByteBuffer()
        let scan = Array(raw.utf8).withUnsafeBytes { HTTP1Scanner.scanChunks($0, from: &offset, into: &body, limit: limit) }
        guard case .invalid = scan else {
            Issue.record("\(raw.debugDescription) was \(scan)")
            return
        }
    }

    @Test("random and mutated input never traps")
    func fuzz() {
        var generator = SystemRandomNumberGenerator()
        let seeds = [
            "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        ].map { Array($0.utf8) }
        let alphabet = Array("\r\n :;,0123456789aAfF-/HTTP\t\u{0}".utf8) + [0x80, 0xFF, 0x7F]
        for round in 0..<20_000 {
            var bytes = seeds[round % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let position = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[position] = alphabet.randomElement(using: &generator)!
                case 1: bytes.insert(alphabet.randomElement(using: &generator)!, at: position)
                default: if bytes.count > 1 { bytes.remove(at: position) }
                }
            }
            bytes.withUnsafeBytes { raw in
                // Whatever is read lies inside the input.
                if case .request(let head) = HTTP1Scanner.scanRequest(raw) {
                    #expect(head.length <= raw.count && head.target.upperBound <= head.length)
                    #expect(head.fields.allSatisfy { $0.name.upperBound <= head.length && $0.value.upperBound <= head.length })
                }
                if case .response(let head) = HTTP1Scanner.scanResponse(raw, toHEAD: false) {
                    #expect(head.length <= raw.count && head.reason.upperBound <= head.length && (100...999).contains(head.status))
                    #expect(head.fields.allSatisfy { $0.name.upperBound <= head.length && $0.value.upperBound <= head.length })
                }
                var offset = Int.random(in: 0...raw.count, using: &generator)
                var body = ByteBuffer()
                if case .end(let end) = HTTP1Scanner.scanChunks(raw, from: &offset, into: &body, limit: 64) {
                    #expect(end <= raw.count && body.readableBytes <= 64)
                }
                #expect(offset <= raw.count)
            }
        }
    }
}
