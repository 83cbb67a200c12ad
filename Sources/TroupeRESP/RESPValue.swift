public import NIOCore

/// One RESP3 value as received from a server (https://github.com/redis/redis-specifications/blob/master/protocol/RESP3.md).
///
/// Strings stay as `ByteBuffer`s (Redis strings are binary); use ``string``, ``bytes`` and the
/// other accessors to read them. RESP2 replies decode into the same cases (`$-1` and `*-1` as
/// ``null``).
public enum RESPValue: Sendable, Hashable {
    /// `+OK`
    case simpleString(ByteBuffer)
    /// `-ERR message`
    case simpleError(ByteBuffer)
    /// `$5\r\nhello`
    case blobString(ByteBuffer)
    /// `!21\r\nSYNTAX invalid syntax`
    case blobError(ByteBuffer)
    /// `=15\r\ntxt:Some string` — `format` is the three-character type (`txt`, `mkd`).
    case verbatimString(format: String, ByteBuffer)
    /// `:1000`
    case integer(Int64)
    /// `,1.23` (also `inf`, `-inf`, `nan`)
    case double(Double)
    /// `#t` / `#f`
    case boolean(Bool)
    /// `_` (and RESP2's `$-1` / `*-1`)
    case null
    /// `(3492890328409238509324850943850943825024385` — the digits, with an optional leading `-`.
    case bigNumber(String)
    /// `*2\r\n…`
    case array([RESPValue])
    /// `~2\r\n…`
    case set([RESPValue])
    /// `%2\r\n…` — key/value pairs in the server's order.
    case map([RESPPair])
    /// `|1\r\n…` followed by the reply the attributes describe.
    indirect case attribute([RESPPair], RESPValue)
    /// `>3\r\n…` — out-of-band data (pub/sub messages, invalidations); never a command's reply.
    case push([RESPValue])
}

/// A key/value pair of a RESP3 map or attribute.
public struct RESPPair: Sendable, Hashable {
    /// The key.
    public var key: RESPValue
    /// The value.
    public var value: RESPValue

    /// The pair `key`: `value`.
    public init(key: RESPValue, value: RESPValue) {
        self.key = key
        self.value = value
    }
}

extension RESPValue {
    /// The value without its attributes.
    public var withoutAttributes: RESPValue {
        if case .attribute(_, let value) = self { return value.withoutAttributes }
        return self
    }

    /// Whether the value is a simple or blob error.
    public var isError: Bool {
        switch self {
        case .simpleError, .blobError: true
        case .attribute(_, let value): value.isError
        default: false
        }
    }

    /// The items of a push frame (attributes skipped), nil for every other value. Checking a reply
    /// this way copies nothing unless it is a push.
    public var pushItems: [RESPValue]? {
        switch self {
        case .push(let items): items
        case .attribute(_, let value): value.pushItems
        default: nil
        }
    }

    /// The text of a string, error, number or boolean; `nil` for null and aggregates.
    public var string: String? {
        switch withoutAttributes {
        case .simpleString(let b), .blobString(let b), .simpleError(let b), .blobError(let b), .verbatimString(_, let b):
            return String(buffer: b)
        case .integer(let i): return String(i)
        case .double(let d): return String(d)
        case .boolean(let b): return b ? "1" : "0"
        case .bigNumber(let digits): return digits
        default: return nil
        }
    }

    /// The raw bytes of a string value.
    public var bytes: [UInt8]? {
        switch withoutAttributes {
        case .simpleString(let b), .blobString(let b), .verbatimString(_, let b): return Array(buffer: b)
        default: return nil
        }
    }

    /// The buffer of a string value.
    public var buffer: ByteBuffer? {
        switch withoutAttributes {
        case .simpleString(let b), .blobString(let b), .verbatimString(_, let b): return b
        default: return nil
        }
    }

    /// An integer reply, or a string that holds an integer.
    public var int: Int64? {
        switch withoutAttributes {
        case .integer(let i): return i
        case .boolean(let b): return b ? 1 : 0
        case .simpleString, .blobString: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    /// A double reply, or a string or integer that holds a number.
    public var double: Double? {
        switch withoutAttributes {
        case .double(let d): return d
        case .integer(let i): return Double(i)
        case .simpleString, .blobString: return string.flatMap { Double($0) }
        default: return nil
        }
    }

    /// The elements of an array, set or push.
    public var array: [RESPValue]? {
        switch withoutAttributes {
        case .array(let a), .set(let a), .push(let a): return a
        case .map(let pairs): return pairs.flatMap { [$0.key, $0.value] }
        default: return nil
        }
    }

    /// The pairs of a map, or of a flat RESP2 array of alternating keys and values.
    public var pairs: [RESPPair]? {
        switch withoutAttributes {
        case .map(let pairs): return pairs
        case .array(let items) where items.count.isMultiple(of: 2):
            return stride(from: 0, to: items.count, by: 2).map { RESPPair(key: items[$0], value: items[$0 + 1]) }
        default: return nil
        }
    }

    /// Whether the value is null (attributes aside).
    public var isNull: Bool {
        if case .null = withoutAttributes { return true }
        return false
    }
}
