public import NIOCore

/// Why bytes from a server are not valid RESP.
public struct RESPDecodeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Why the bytes are not RESP.
    public enum Reason: Sendable, Hashable {
        case unknownType(UInt8)
        case invalidLength
        case invalidInteger
        case invalidDouble
        case invalidBoolean
        case missingCRLF
        case tooDeep
        case tooLarge
        case invalidVerbatim
        /// RESP3 streamed strings and aggregates (`$?`, `*?`) — Redis never sends them.
        case streamedNotSupported
    }

    /// Why the input is not valid RESP.
    public var reason: Reason
    /// Up to 64 bytes around the failure, for diagnostics (never shown in ``description``).
    public var bytes: [UInt8]

    /// An error for `reason`, keeping up to 64 `bytes` around it.
    public init(_ reason: Reason, bytes: [UInt8] = []) {
        self.reason = reason
        self.bytes = bytes
    }

    public var description: String { "invalid RESP: \(reason)" }
}

/// Limits applied to values from the server, checked before anything is allocated for them.
public struct RESPLimits: Sendable, Hashable {
    /// Deepest nesting of aggregates (arrays, maps, sets, pushes, attributes).
    public var maxDepth: Int
    /// Largest blob string accepted (Redis' own `proto-max-bulk-len` defaults to 512 MB).
    public var maxBlobLength: Int
    /// Largest element count of one aggregate.
    public var maxAggregateCount: Int

    /// Limits of `maxDepth` nesting, `maxBlobLength` bytes per blob and `maxAggregateCount` elements per
    /// aggregate (defaults: 100, 512 MB, 16,777,216).
    public init(maxDepth: Int = 100, maxBlobLength: Int = 512 * 1024 * 1024, maxAggregateCount: Int = 1 << 24) {
        self.maxDepth = maxDepth
        self.maxBlobLength = maxBlobLength
        self.maxAggregateCount = maxAggregateCount
    }
}

/// Decodes RESP3 (and RESP2) values from a byte stream.
///
/// Incomplete input returns `nil` and consumes nothing; the next call re-reads from the start of
/// the value. Malformed input throws ``RESPDecodeError``.
public struct RESPDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = RESPValue

    /// The limits applied.
    public let limits: RESPLimits

    /// A decoder applying `limits`.
    public init(limits: RESPLimits = RESPLimits()) {
        self.limits = limits
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> RESPValue? {
        try Self.parse(&buffer, limits: limits)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RESPValue? {
        try Self.parse(&buffer, limits: limits)
    }

    /// Reads one value from the front of `buffer`, or returns `nil` (consuming nothing) if it is incomplete.
    public static func parse(_ buffer: inout ByteBuffer, limits: RESPLimits = RESPLimits()) throws(RESPDecodeError) -> RESPValue? {
        var view = buffer
        guard let value = try parseValue(&view, depth: 0, limits: limits) else { return nil }
        buffer = view
        return value
    }

    private static func parseValue(_ buffer: inout ByteBuffer, depth: Int, limits: RESPLimits) throws(RESPDecodeError) -> RESPValue? {
        guard let type = buffer.readInteger(as: UInt8.self) else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            return try readLine(&buffer).map { .simpleString($0) }
        case UInt8(ascii: "-"):
            return try readLine(&buffer).map { .simpleError($0) }
        case UInt8(ascii: ":"):
            guard let line = try readLine(&buffer) else { return nil }
            return .integer(try integer(line))
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            guard let line = try readLine(&buffer) else { return nil }
            if line.readableBytes == 1, line.getInteger(at: line.readerIndex, as: UInt8.self) == UInt8(ascii: "?") {
                throw RESPDecodeError(.streamedNotSupported)
            }
            let length = try integer(line)
            if length == -1, type == UInt8(ascii: "$") { return .null }  // RESP2 null bulk string
            guard length >= 0 else { throw RESPDecodeError(.invalidLength, bytes: Array(buffer: line)) }
            guard length <= limits.maxBlobLength else { throw RESPDecodeError(.tooLarge) }
            guard buffer.readableBytes >= Int(length) + 2 else { return nil }
            guard let blob = buffer.readSlice(length: Int(length)) else { return nil }
            try expectCRLF(&buffer)
            switch type {
            case UInt8(ascii: "$"): return .blobString(blob)
            case UInt8(ascii: "!"): return .blobError(blob)
            default:
                var text = blob
                guard text.readableBytes >= 4, let format = text.readString(length: 3),
                      text.readInteger(as: UInt8.self) == UInt8(ascii: ":")
                else { throw RESPDecodeError(.invalidVerbatim) }
                return .verbatimString(format: format, text)
            }
        case UInt8(ascii: "_"):
            guard let line = try readLine(&buffer) else { return nil }
            guard line.readableBytes == 0 else { throw RESPDecodeError(.invalidLength, bytes: Array(buffer: line)) }
            return .null
        case UInt8(ascii: "#"):
            guard let line = try readLine(&buffer) else { return nil }
            switch line.getInteger(at: line.readerIndex, as: UInt8.self) {
            case UInt8(ascii: "t") where line.readableBytes == 1: return .boolean(true)
            case UInt8(ascii: "f") where line.readableBytes == 1: return .boolean(false)
            default: throw RESPDecodeError(.invalidBoolean, bytes: Array(buffer: line))
            }
        case UInt8(ascii: ","):
            guard let line = try readLine(&buffer) else { return nil }
            let text = String(buffer: line)
            switch text {
            case "inf": return .double(.infinity)
            case "-inf": return .double(-.infinity)
            case "nan", "-nan": return .double(.nan)
            default:
                // Digits, sign, point and exponent only: `Double(_:)` would also take hexadecimal, "infinity",
                // "nan(…)" and — since it stops at a NUL — "nan\0anything" or "1\0anything".
                guard !text.isEmpty, text.utf8.allSatisfy(Self.isDecimalFloatByte), let value = Double(text) else {
                    throw RESPDecodeError(.invalidDouble, bytes: Array(buffer: line))
                }
                return .double(value)
            }
        case UInt8(ascii: "("):
            guard let line = try readLine(&buffer) else { return nil }
            let text = String(buffer: line)
            let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                throw RESPDecodeError(.invalidInteger, bytes: Array(buffer: line))
            }
            return .bigNumber(text)
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            guard let count = try aggregateCount(&buffer, allowNull: type == UInt8(ascii: "*"), depth: depth, limits: limits) else { return nil }
            guard count >= 0 else { return .null }
            var items: [RESPValue] = []
            items.reserveCapacity(min(count, buffer.readableBytes / 3 + 1))
            for _ in 0..<count {
                guard let item = try parseValue(&buffer, depth: depth + 1, limits: limits) else { return nil }
                items.append(item)
            }
            switch type {
            case UInt8(ascii: "*"): return .array(items)
            case UInt8(ascii: "~"): return .set(items)
            default: return .push(items)
            }
        case UInt8(ascii: "%"), UInt8(ascii: "|"):
            guard let count = try aggregateCount(&buffer, allowNull: false, depth: depth, limits: limits) else { return nil }
            var pairs: [RESPPair] = []
            pairs.reserveCapacity(min(count, buffer.readableBytes / 6 + 1))
            for _ in 0..<count {
                guard let key = try parseValue(&buffer, depth: depth + 1, limits: limits),
                      let value = try parseValue(&buffer, depth: depth + 1, limits: limits)
                else { return nil }
                pairs.append(RESPPair(key: key, value: value))
            }
            if type == UInt8(ascii: "%") { return .map(pairs) }
            guard let described = try parseValue(&buffer, depth: depth + 1, limits: limits) else { return nil }
            return .attribute(pairs, described)
        default:
            throw RESPDecodeError(.unknownType(type))
        }
    }

    /// The element count of an aggregate header; -1 for a RESP2 null array.
    private static func aggregateCount(_ buffer: inout ByteBuffer, allowNull: Bool, depth: Int, limits: RESPLimits) throws(RESPDecodeError) -> Int? {
        guard depth < limits.maxDepth else { throw RESPDecodeError(.tooDeep) }
        guard let line = try readLine(&buffer) else { return nil }
        if line.readableBytes == 1, line.getInteger(at: line.readerIndex, as: UInt8.self) == UInt8(ascii: "?") {
            throw RESPDecodeError(.streamedNotSupported)
        }
        let count = try integer(line)
        if count == -1, allowNull { return -1 }
        guard count >= 0 else { throw RESPDecodeError(.invalidLength, bytes: Array(buffer: line)) }
        guard count <= limits.maxAggregateCount else { throw RESPDecodeError(.tooLarge) }
        return Int(count)
    }

    /// The longest line (simple string, error, number, length header) accepted, CRLF excluded. The rule holds
    /// however the line arrives: longer is `tooLarge` whether it came whole or split at any byte.
    static let maxLineLength = 64 * 1024

    /// The bytes up to the next CRLF (consumed), or `nil` if no CRLF has arrived yet.
    /// A byte a RESP3 double may hold besides `inf`, `-inf` and `nan`: `0`–`9`, `+`, `-`, `.`, `e`, `E`.
    static func isDecimalFloatByte(_ byte: UInt8) -> Bool {
        (48...57).contains(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
            || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
    }

    private static func readLine(_ buffer: inout ByteBuffer) throws(RESPDecodeError) -> ByteBuffer? {
        guard let cr = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\r")) else {
            // More than the limit without a CR: this line can only end up too long.
            guard buffer.readableBytes <= maxLineLength else { throw RESPDecodeError(.tooLarge) }
            return nil
        }
        let length = cr - buffer.readerIndex
        guard length <= maxLineLength else { throw RESPDecodeError(.tooLarge) }
        guard buffer.readableBytes >= length + 2 else { return nil }
        guard buffer.getInteger(at: cr + 1, as: UInt8.self) == UInt8(ascii: "\n") else {
            throw RESPDecodeError(.missingCRLF, bytes: buffer.getBytes(at: buffer.readerIndex, length: min(64, buffer.readableBytes)) ?? [])
        }
        guard let line = buffer.readSlice(length: length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    private static func expectCRLF(_ buffer: inout ByteBuffer) throws(RESPDecodeError) {
        guard buffer.readInteger(as: UInt8.self) == UInt8(ascii: "\r"), buffer.readInteger(as: UInt8.self) == UInt8(ascii: "\n") else {
            throw RESPDecodeError(.missingCRLF)
        }
    }

    /// A strict decimal integer: optional `-`, 1…19 digits, no overflow.
    private static func integer(_ line: ByteBuffer) throws(RESPDecodeError) -> Int64 {
        var value: Int64 = 0
        var negative = false
        var digits = 0
        for (offset, byte) in line.readableBytesView.enumerated() {
            if offset == 0, byte == UInt8(ascii: "-") {
                negative = true
                continue
            }
            guard byte >= 48, byte <= 57 else { throw RESPDecodeError(.invalidInteger, bytes: Array(buffer: line)) }
            let (multiplied, overflow1) = value.multipliedReportingOverflow(by: 10)
            // Accumulate towards the sign so that Int64.min parses.
            let digit = Int64(byte - 48)
            let (added, overflow2) = negative ? multiplied.subtractingReportingOverflow(digit) : multiplied.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { throw RESPDecodeError(.invalidInteger, bytes: Array(buffer: line)) }
            value = added
            digits += 1
        }
        guard digits > 0 else { throw RESPDecodeError(.invalidInteger, bytes: Array(buffer: line)) }
        return value
    }
}
