/// One BSON value. `document` and `array` nest; every BSON type of the specification is a case,
/// including the deprecated ones (`undefined`, `dbPointer`, `symbol`, `codeWithScope`), which are decoded
/// and re-encoded faithfully but never produced by the Codable encoder.
public enum BSONValue: Sendable, Equatable {
    case double(Double)
    case string(String)
    case document(BSONDocument)
    case array([BSONValue])
    case binary(BSONBinary)
    case undefined
    case objectID(BSONObjectID)
    case bool(Bool)
    /// Milliseconds since the Unix epoch.
    case datetime(Int64)
    case null
    case regex(BSONRegularExpression)
    case dbPointer(collection: String, id: BSONObjectID)
    case code(String)
    case symbol(String)
    case codeWithScope(code: String, scope: BSONDocument)
    case int32(Int32)
    case timestamp(BSONTimestamp)
    case int64(Int64)
    case decimal128(BSONDecimal128)
    case minKey
    case maxKey

    /// The type byte of this value on the wire.
    public var typeByte: UInt8 {
        switch self {
        case .double: 0x01
        case .string: 0x02
        case .document: 0x03
        case .array: 0x04
        case .binary: 0x05
        case .undefined: 0x06
        case .objectID: 0x07
        case .bool: 0x08
        case .datetime: 0x09
        case .null: 0x0A
        case .regex: 0x0B
        case .dbPointer: 0x0C
        case .code: 0x0D
        case .symbol: 0x0E
        case .codeWithScope: 0x0F
        case .int32: 0x10
        case .timestamp: 0x11
        case .int64: 0x12
        case .decimal128: 0x13
        case .minKey: 0xFF
        case .maxKey: 0x7F
        }
    }

    // MARK: Accessors

    /// The string, if this is one.
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    /// The document, if this is one.
    public var documentValue: BSONDocument? { if case .document(let d) = self { return d }; return nil }
    /// The array, if this is one.
    public var arrayValue: [BSONValue]? { if case .array(let a) = self { return a }; return nil }
    /// The boolean, if this is one.
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    /// The object id, if this is one.
    public var objectIDValue: BSONObjectID? { if case .objectID(let o) = self { return o }; return nil }
    /// The binary data, if this is some.
    public var binaryValue: BSONBinary? { if case .binary(let b) = self { return b }; return nil }
    /// The timestamp, if this is one.
    public var timestampValue: BSONTimestamp? { if case .timestamp(let t) = self { return t }; return nil }

    /// Any numeric value as `Int`, when it is integral and fits (int32, int64, or an integral double).
    public var intValue: Int? {
        switch self {
        case .int32(let v): return Int(v)
        case .int64(let v): return Int(exactly: v)
        case .double(let d): return Int(exactly: d)
        default: return nil
        }
    }

    /// Any numeric value as `Double`.
    public var doubleValue: Double? {
        switch self {
        case .int32(let v): return Double(v)
        case .int64(let v): return Double(v)
        case .double(let d): return d
        default: return nil
        }
    }

    /// Whether this is `null`.
    public var isNull: Bool { if case .null = self { return true }; return false }
}

extension BSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    /// Integer literals become int32 when they fit, int64 otherwise (as the shell does).
    public init(integerLiteral value: Int) {
        if let small = Int32(exactly: value) { self = .int32(small) } else { self = .int64(Int64(value)) }
    }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: BSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, BSONValue)...) { self = .document(BSONDocument(elements)) }
    public init(nilLiteral: ()) { self = .null }
}

/// Binary data with its subtype.
public struct BSONBinary: Sendable, Hashable {
    /// The subtype byte (see the constants below).
    public var subtype: UInt8
    /// The bytes.
    public var data: [UInt8]

    /// Generic binary data (0x00).
    public static let generic: UInt8 = 0x00
    /// A function (0x01).
    public static let function: UInt8 = 0x01
    /// The old binary subtype (0x02): the data is prefixed with its length again.
    public static let binaryOld: UInt8 = 0x02
    /// The old UUID subtype (0x03), in a driver-specific byte order.
    public static let uuidOld: UInt8 = 0x03
    /// A UUID (0x04), 16 bytes.
    public static let uuid: UInt8 = 0x04
    /// An MD5 digest (0x05).
    public static let md5: UInt8 = 0x05
    /// Encrypted data (0x06).
    public static let encrypted: UInt8 = 0x06
    /// Compressed time-series column data (0x07).
    public static let column: UInt8 = 0x07
    /// Sensitive data (0x08): never logged.
    public static let sensitive: UInt8 = 0x08
    /// A vector of numbers (0x09).
    public static let vector: UInt8 = 0x09
    /// The first user-defined subtype (0x80).
    public static let userDefined: UInt8 = 0x80

    /// Binary `data` of `subtype` (generic by default).
    public init(subtype: UInt8 = BSONBinary.generic, data: [UInt8]) {
        self.subtype = subtype
        self.data = data
    }
}

/// A regular expression: the pattern and its option letters (stored sorted, as the specification requires).
public struct BSONRegularExpression: Sendable, Hashable {
    /// The pattern.
    public var pattern: String
    /// The option letters.
    public var options: String

    /// The expression `pattern` with `options` (sorted as stored).
    public init(pattern: String, options: String = "") {
        self.pattern = pattern
        self.options = String(options.sorted())
    }
}

/// The internal replication timestamp: seconds and an ordinal within the second.
public struct BSONTimestamp: Sendable, Hashable, Comparable {
    /// Seconds since the epoch.
    public var seconds: UInt32
    /// The ordinal within the second.
    public var increment: UInt32

    /// The timestamp `seconds`, `increment`.
    public init(seconds: UInt32, increment: UInt32) {
        self.seconds = seconds
        self.increment = increment
    }

    public static func < (a: BSONTimestamp, b: BSONTimestamp) -> Bool {
        (a.seconds, a.increment) < (b.seconds, b.increment)
    }
}
