import NIOCore

/// A strict, allocation-light reader of HTTP/1.1 message heads for the gateway's byte-level proxy path
/// (`RawProxyHandler`, `RawUpstreamHandler`). It only recognises the common, unambiguous shape of a message
/// (RFC 9112): a request it does not fully understand is reported as `unsupported` and handed to NIO's
/// HTTP/1 codec, which answers every case; a response it does not understand is an upstream failure.
///
/// Positions are byte offsets from the start of the scanned bytes.
enum HTTP1Scanner {
    struct Field {
        var name: Range<Int>
        var value: Range<Int>
    }

    struct RequestHead {
        var method: Range<Int>
        var target: Range<Int>
        var fields: [Field]
        /// Bytes of the head, up to and including the empty line.
        var length: Int
        /// Sum of name + value + 4 over the fields (the measure the gateway's header limit uses).
        var fieldBytes: Int
        var contentLength: Int
        /// The client sent `Connection: close`.
        var close: Bool
    }

    enum Framing: Equatable {
        case length(Int)
        case chunked
        /// Delimited by the upstream closing the connection.
        case untilClose
        case none
    }

    struct ResponseHead {
        var status: Int
        var reason: Range<Int>
        var fields: [Field]
        var length: Int
        var framing: Framing
        /// The connection cannot carry another exchange after this response.
        var close: Bool
    }

    enum RequestScan {
        case incomplete
        /// Valid or not, this request is for the full HTTP/1 codec (the reason says why).
        case unsupported(String)
        case request(RequestHead)
    }

    enum ResponseScan {
        case incomplete
        case invalid(String)
        case response(ResponseHead)
    }

    static let maxFields = 100

    // MARK: Requests

    /// Reads a request head from the start of `bytes`. Only `METHOD /path HTTP/1.1` with CRLF line ends,
    /// exactly one Host, at most one Content-Length and none of Transfer-Encoding, Expect or Upgrade is a
    /// `request` (anything else goes to the codec path, which answers it or refuses it).
    static func scanRequest(_ bytes: UnsafeRawBufferPointer) -> RequestScan {
        let count = bytes.count
        var i = 0
        while i < count, isTokenByte(bytes[i]) { i += 1 }
        guard i < count else { return .incomplete }
        let method = 0..<i
        guard !method.isEmpty, bytes[i] == UInt8(ascii: " ") else { return .unsupported("request method") }
        i += 1
        let targetStart = i
        while i < count, bytes[i] > 0x20, bytes[i] < 0x7F { i += 1 }
        guard i < count else { return .incomplete }
        let target = targetStart..<i
        guard !target.isEmpty, bytes[targetStart] == UInt8(ascii: "/"), bytes[i] == UInt8(ascii: " ") else {
            return .unsupported("request target")
        }
        i += 1
        switch matches(bytes, at: i, "HTTP/1.1\r\n") {
        case nil: return .incomplete
        case false: return .unsupported("HTTP version")
        case true: i += 10
        }
        var head = RequestHead(method: method, target: target, fields: [], length: 0, fieldBytes: 0, contentLength: 0, close: false)
        var sawLength = false
        var hosts = 0
        switch scanFields(bytes, from: i, into: &head.fields) {
        case .incomplete: return .incomplete
        case .invalid(let why): return .unsupported(why)
        case .end(let end): head.length = end
        }
        for field in head.fields {
            head.fieldBytes += field.name.count + field.value.count + 4
            if equalsIgnoringCase(bytes, field.name, "content-length") {
                guard !sawLength, let value = decimal(bytes, field.value) else { return .unsupported("Content-Length") }
                sawLength = true
                head.contentLength = value
            } else if equalsIgnoringCase(bytes, field.name, "transfer-encoding") || equalsIgnoringCase(bytes, field.name, "expect")
                        || equalsIgnoringCase(bytes, field.name, "upgrade") {
                return .unsupported("Transfer-Encoding, Expect or Upgrade")
            } else if equalsIgnoringCase(bytes, field.name, "connection") {
                guard let close = connectionClose(bytes, field.value) else { return .unsupported("Connection options") }
                head.close = head.close || close
            } else if equalsIgnoringCase(bytes, field.name, "host") {
                hosts += 1
            }
        }
        guard hosts == 1 else { return .unsupported("Host") }
        return .request(head)
    }

    // MARK: Responses

    /// Reads a response head from the start of `bytes`; `toHEAD` when it answers a HEAD request (no body).
    static func scanResponse(_ bytes: UnsafeRawBufferPointer, toHEAD: Bool) -> ResponseScan {
        var i = 0
        switch matches(bytes, at: 0, "HTTP/1.") {
        case nil: return .incomplete
        case false: return .invalid("not an HTTP/1 status line")
        case true: i = 7
        }
        guard bytes.count >= i + 6 else { return .incomplete }
        let minor = bytes[i]
        guard minor == UInt8(ascii: "0") || minor == UInt8(ascii: "1"), bytes[i + 1] == UInt8(ascii: " ") else {
            return .invalid("HTTP version")
        }
        i += 2
        var status = 0
        for offset in 0..<3 {
            let digit = bytes[i + offset]
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return .invalid("status code") }
            status = status * 10 + Int(digit - UInt8(ascii: "0"))
        }
        i += 3
        guard status >= 100, bytes[i] == UInt8(ascii: " ") || bytes[i] == UInt8(ascii: "\r") else { return .invalid("status code") }
        if bytes[i] == UInt8(ascii: " ") { i += 1 }
        let reasonStart = i
        while i < bytes.count, bytes[i] == 0x09 || (bytes[i] >= 0x20 && bytes[i] != 0x7F) { i += 1 }
        guard i + 1 < bytes.count else { return .incomplete }
        guard bytes[i] == UInt8(ascii: "\r"), bytes[i + 1] == UInt8(ascii: "\n") else { return .invalid("status line") }
        var head = ResponseHead(status: status, reason: reasonStart..<i, fields: [], length: 0, framing: .untilClose, close: minor == UInt8(ascii: "0"))
        switch scanFields(bytes, from: i + 2, into: &head.fields) {
        case .incomplete: return .incomplete
        case .invalid(let why): return .invalid(why)
        case .end(let end): head.length = end
        }
        var length: Int?
        var chunked = false
        for field in head.fields {
            if equalsIgnoringCase(bytes, field.name, "content-length") {
                guard let value = decimal(bytes, field.value), length == nil || length == value else { return .invalid("Content-Length") }
                length = value
            } else if equalsIgnoringCase(bytes, field.name, "transfer-encoding") {
                guard !chunked, equalsIgnoringCase(bytes, field.value, "chunked") else { return .invalid("Transfer-Encoding other than chunked") }
                chunked = true
            } else if equalsIgnoringCase(bytes, field.name, "connection") {
                if connectionClose(bytes, field.value) ?? true { head.close = true }
                if minor == UInt8(ascii: "0"), containsIgnoringCase(bytes, field.value, "keep-alive") { head.close = false }
            }
        }
        if toHEAD || status < 200 || status == 204 || status == 304 {
            head.framing = .none
        } else if chunked {
            head.framing = .chunked
            // Both framings at once: chunked wins (RFC 9112 §6.3) and the connection is not reused.
            if length != nil { head.close = true }
        } else if let length {
            head.framing = .length(length)
        } else {
            head.close = true
        }
        return .response(head)
    }

    // MARK: Chunked bodies

    enum ChunkScan {
        case incomplete
        case invalid(String)
        /// Every chunk was read; the message ends at this offset.
        case end(Int)
    }

    /// Reads the chunks of a body starting at `from`, appending their data to `body` (at most `limit` bytes
    /// in all). `from` advances past each complete chunk, so a later call continues where this one stopped.
    static func scanChunks(_ bytes: UnsafeRawBufferPointer, from: inout Int, into body: inout ByteBuffer, limit: Int) -> ChunkScan {
        while true {
            var i = from
            var size = 0
            var digits = 0
            while i < bytes.count, let digit = hexValue(bytes[i]) {
                guard digits < 15 else { return .invalid("chunk size") }
                size = size * 16 + digit
                digits += 1
                i += 1
            }
            guard i < bytes.count else { return .incomplete }
            guard digits > 0 else { return .invalid("chunk size") }
            // Chunk extensions are skipped up to the line end.
            while i < bytes.count, bytes[i] != UInt8(ascii: "\r"), bytes[i] != UInt8(ascii: "\n") { i += 1 }
            guard i + 1 < bytes.count else { return .incomplete }
            guard bytes[i] == UInt8(ascii: "\r"), bytes[i + 1] == UInt8(ascii: "\n") else { return .invalid("chunk line") }
            i += 2
            if size == 0 {
                // Trailer fields (ignored), then the empty line.
                var trailers: [Field] = []
                switch scanFields(bytes, from: i, into: &trailers) {
                case .incomplete: return .incomplete
                case .invalid(let why): return .invalid("trailer: \(why)")
                case .end(let end): return .end(end)
                }
            }
            guard body.readableBytes + size <= limit else { return .invalid("the response body exceeds \(limit) bytes") }
            guard bytes.count - i >= size + 2 else { return .incomplete }
            guard bytes[i + size] == UInt8(ascii: "\r"), bytes[i + size + 1] == UInt8(ascii: "\n") else { return .invalid("chunk end") }
            body.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + size)]))
            from = i + size + 2
        }
    }

    // MARK: Fields

    enum FieldsScan {
        case incomplete
        case invalid(String)
        /// The offset just past the empty line.
        case end(Int)
    }

    /// Reads `name: value` lines from `from` up to the empty line. Names are tokens, values visible
    /// characters, spaces, tabs and obs-text; folded lines, bare LF and control characters are refused.
    static func scanFields(_ bytes: UnsafeRawBufferPointer, from: Int, into fields: inout [Field]) -> FieldsScan {
        fields.reserveCapacity(16)  // one allocation for a typical head instead of one per doubling
        var i = from
        let count = bytes.count
        while true {
            guard i + 1 < count else { return .incomplete }
            if bytes[i] == UInt8(ascii: "\r") {
                return bytes[i + 1] == UInt8(ascii: "\n") ? .end(i + 2) : .invalid("line end")
            }
            let nameStart = i
            while i < count, isTokenByte(bytes[i]) { i += 1 }
            guard i < count else { return .incomplete }
            guard i > nameStart, bytes[i] == UInt8(ascii: ":") else { return .invalid("field name") }
            let name = nameStart..<i
            i += 1
            while i < count, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
            let valueStart = i
            var valueEnd = i
            while i < count {
                let byte = bytes[i]
                if byte == 0x20 || byte == 0x09 {
                    i += 1
                } else if byte > 0x20, byte != 0x7F {
                    i += 1
                    valueEnd = i
                } else {
                    break
                }
            }
            guard i + 1 < count else { return .incomplete }
            guard bytes[i] == UInt8(ascii: "\r"), bytes[i + 1] == UInt8(ascii: "\n") else { return .invalid("field value") }
            i += 2
            guard fields.count < maxFields else { return .invalid("more than \(maxFields) fields") }
            fields.append(Field(name: name, value: valueStart..<valueEnd))
        }
    }

    // MARK: Bytes

    /// RFC 9110 tchar.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// Whether `bytes` holds `literal` at `offset`; nil when they end before it could be told.
    static func matches(_ bytes: UnsafeRawBufferPointer, at offset: Int, _ literal: StaticString) -> Bool? {
        let length = literal.utf8CodeUnitCount
        let available = min(length, bytes.count - offset)
        for k in 0..<available where bytes[offset + k] != literal.utf8Start[k] { return false }
        return available == length ? true : nil
    }

    /// ASCII case-insensitive comparison of a range with a lowercase literal.
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: StaticString) -> Bool {
        lowercase.withUTF8Buffer { equalsIgnoringCase(bytes, range, $0) }
    }

    /// The same against lowercase bytes.
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: some Collection<UInt8>) -> Bool {
        guard range.count == lowercase.count else { return false }
        return zip(range, lowercase).allSatisfy { lowercased(bytes[$0]) == $1 }
    }

    static func containsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: StaticString) -> Bool {
        let length = lowercase.utf8CodeUnitCount
        guard range.count >= length else { return false }
        return (range.lowerBound...(range.upperBound - length)).contains { equalsIgnoringCase(bytes, $0..<($0 + length), lowercase) }
    }

    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    /// A non-negative decimal of at most 15 digits.
    static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.count <= 15 else { return nil }
        var value = 0
        for i in range {
            let byte = bytes[i]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(byte - UInt8(ascii: "A")) + 10
        default: return nil
        }
    }

    /// A Connection value's meaning: true for `close`, false for `keep-alive` (or both absent), nil when it
    /// names other options (hop-by-hop fields of its own, which only the full codec path handles).
    static func connectionClose(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool? {
        var close = false
        var start = range.lowerBound
        while start < range.upperBound {
            var end = start
            while end < range.upperBound, bytes[end] != UInt8(ascii: ",") { end += 1 }
            var lower = start, upper = end
            while lower < upper, bytes[lower] == 0x20 || bytes[lower] == 0x09 { lower += 1 }
            while upper > lower, bytes[upper - 1] == 0x20 || bytes[upper - 1] == 0x09 { upper -= 1 }
            if equalsIgnoringCase(bytes, lower..<upper, "close") {
                close = true
            } else if !(lower == upper || equalsIgnoringCase(bytes, lower..<upper, "keep-alive")) {
                return nil
            }
            start = end + 1
        }
        return close
    }
}
