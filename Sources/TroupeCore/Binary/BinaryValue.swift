/// The self-describing value tree of Troupe's compact binary format.
///
/// Every value starts with a one-byte tag, so a decoder can validate and skip anything it
/// does not need, and schemas can evolve (unknown keys are ignored, missing optionals decode
/// as `nil`). Integers are varints (zig-zag for signed), so small numbers take one or two bytes.
///
/// | tag | value |
/// |-----|-------|
/// | 0x00 | nil |
/// | 0x01 / 0x02 | false / true |
/// | 0x03 | signed integer, zig-zag varint |
/// | 0x04 | unsigned integer, varint |
/// | 0x05 | Double, 8 bytes little-endian IEEE 754 |
/// | 0x06 | Float, 4 bytes little-endian IEEE 754 |
/// | 0x07 | string: varint byte count, UTF-8 |
/// | 0x08 | bytes: varint byte count, raw |
/// | 0x09 | array: varint element count, elements |
/// | 0x0A | map: varint entry count, (string key without tag, value) pairs |
public enum BinaryValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case float(Float)
    case string(String)
    case bytes([UInt8])
    case array([BinaryValue])
    case map([(String, BinaryValue)])

    public static func == (lhs: BinaryValue, rhs: BinaryValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.uint(let a), .uint(let b)): return a == b
        case (.double(let a), .double(let b)): return a.bitPattern == b.bitPattern
        case (.float(let a), .float(let b)): return a.bitPattern == b.bitPattern
        case (.string(let a), .string(let b)): return a == b
        case (.bytes(let a), .bytes(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.map(let a), .map(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let v): hasher.combine(v)
        case .int(let v): hasher.combine(v)
        case .uint(let v): hasher.combine(v)
        case .double(let v): hasher.combine(v.bitPattern)
        case .float(let v): hasher.combine(v.bitPattern)
        case .string(let v): hasher.combine(v)
        case .bytes(let v): hasher.combine(v)
        case .array(let v): hasher.combine(v)
        case .map(let v):
            for (key, value) in v {
                hasher.combine(key)
                hasher.combine(value)
            }
        }
    }
}

/// Wire tags of ``BinaryValue``.
enum BinaryTag: UInt8 {
    case null = 0x00
    case `false` = 0x01
    case `true` = 0x02
    case int = 0x03
    case uint = 0x04
    case double = 0x05
    case float = 0x06
    case string = 0x07
    case bytes = 0x08
    case array = 0x09
    case map = 0x0A
}

/// Limits applied while reading binary values from untrusted bytes.
public struct BinaryDecodingLimits: Sendable, Hashable {
    /// Deepest nesting of arrays and maps accepted.
    public var maxDepth: Int
    /// Largest number of bytes accepted for one input.
    public var maxBytes: Int

    /// Limits of `maxDepth` nested containers and `maxBytes` bytes per input (defaults: 64 and 64 MiB).
    public init(maxDepth: Int = 64, maxBytes: Int = 64 * 1024 * 1024) {
        self.maxDepth = maxDepth
        self.maxBytes = maxBytes
    }

    /// 64 levels, 64 MiB.
    public static let `default` = BinaryDecodingLimits()
}

/// Why bytes could not be read as a binary value or decoded into a type.
public struct BinaryCodingError: Error, Sendable, CustomStringConvertible {
    /// Why binary decoding failed.
    public enum Reason: Sendable, Hashable {
        /// The input ended inside a value.
        case truncated
        /// A tag byte that the format does not define.
        case unknownTag(UInt8)
        /// A varint longer than 10 bytes or overflowing 64 bits.
        case badVarint
        /// A string that is not valid UTF-8.
        case invalidUTF8
        /// Arrays and maps nested deeper than the limit.
        case tooDeep
        /// The input is larger than the limit, or a count exceeds what the input can hold.
        case tooLarge
        /// Bytes left over after the top-level value.
        case trailingBytes
        /// The value has a different type than the one being decoded.
        case typeMismatch(expected: String)
        /// A number that does not fit the type being decoded.
        case numberOutOfRange
        /// A required key is missing.
        case keyNotFound(String)
        /// A value that cannot be encoded (for example a map key that is not a string).
        case unsupported(String)
    }

    /// Why decoding failed.
    public var reason: Reason
    /// The coding path where decoding failed, dot separated.
    public var path: String

    /// An error for `reason` at the dot-separated coding `path`.
    public init(_ reason: Reason, path: String = "") {
        self.reason = reason
        self.path = path
    }

    public var description: String {
        path.isEmpty ? "binary coding error: \(reason)" : "binary coding error at \(path): \(reason)"
    }
}
