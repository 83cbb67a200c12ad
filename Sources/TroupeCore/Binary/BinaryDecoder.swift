/// Decodes `Decodable` values from Troupe's compact binary format (see ``BinaryValue``).
///
/// Input is untrusted: the bytes are first read into a validated value tree (lengths, depth,
/// UTF-8), then decoded; any mismatch throws ``BinaryCodingError`` and never traps.
public struct BinaryDecoder: Sendable {
    /// The depth and size limits applied to every input.
    public var limits: BinaryDecodingLimits

    /// A decoder applying `limits` to what it reads.
    public init(limits: BinaryDecodingLimits = .default) {
        self.limits = limits
    }

    /// Decodes a `T` from `bytes`, which must hold exactly one value.
    /// - Throws: ``BinaryCodingError`` for bytes that are not a valid value or do not fit `T`; never traps.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        let value = try BinaryReader.readValue(from: bytes, limits: limits)
        return try Self.decode(type, from: value)
    }

    /// Decodes a `T` from a value tree already read and validated (see ``BinaryReader/readValue(from:limits:)``).
    /// `codingPath` prefixes the paths named in errors.
    public static func decode<T: Decodable>(_ type: T.Type, from value: BinaryValue, codingPath: [any CodingKey] = []) throws -> T {
        if let primitive = try primitive(type, from: value, codingPath: codingPath) { return primitive }
        return try T(from: TreeDecoder(value: value, codingPath: codingPath))
    }

    static func primitive<T>(_ type: T.Type, from value: BinaryValue, codingPath: [any CodingKey]) throws -> T? {
        if type == Int.self { return try integer(Int.self, value, codingPath) as? T }
        if type == String.self {
            guard case .string(let s) = value else { throw mismatch("String", codingPath) }
            return s as? T
        }
        if type == Bool.self {
            guard case .bool(let b) = value else { throw mismatch("Bool", codingPath) }
            return b as? T
        }
        if type == Double.self { return try floating(value, codingPath) as? T }
        if type == Int64.self { return try integer(Int64.self, value, codingPath) as? T }
        if type == UInt64.self { return try integer(UInt64.self, value, codingPath) as? T }
        if type == [UInt8].self {
            guard case .bytes(let b) = value else { throw mismatch("bytes", codingPath) }
            return b as? T
        }
        if type == Int32.self { return try integer(Int32.self, value, codingPath) as? T }
        if type == UInt32.self { return try integer(UInt32.self, value, codingPath) as? T }
        if type == UInt.self { return try integer(UInt.self, value, codingPath) as? T }
        if type == Int16.self { return try integer(Int16.self, value, codingPath) as? T }
        if type == Int8.self { return try integer(Int8.self, value, codingPath) as? T }
        if type == UInt16.self { return try integer(UInt16.self, value, codingPath) as? T }
        if type == UInt8.self { return try integer(UInt8.self, value, codingPath) as? T }
        if type == Float.self {
            switch value {
            case .float(let f): return f as? T
            case .double(let d): return Float(d) as? T
            default: throw mismatch("Float", codingPath)
            }
        }
        if type == BinaryValue.self { return value as? T }
        return nil
    }

    static func integer<I: FixedWidthInteger>(_ type: I.Type, _ value: BinaryValue, _ codingPath: [any CodingKey]) throws -> I {
        switch value {
        case .int(let v):
            guard let result = I(exactly: v) else { throw BinaryCodingError(.numberOutOfRange, path: render(codingPath)) }
            return result
        case .uint(let v):
            guard let result = I(exactly: v) else { throw BinaryCodingError(.numberOutOfRange, path: render(codingPath)) }
            return result
        default:
            throw mismatch(String(describing: I.self), codingPath)
        }
    }

    static func floating(_ value: BinaryValue, _ codingPath: [any CodingKey]) throws -> Double {
        switch value {
        case .double(let d): return d
        case .float(let f): return Double(f)
        case .int(let i): return Double(i)
        case .uint(let u): return Double(u)
        default: throw mismatch("Double", codingPath)
        }
    }

    static func mismatch(_ expected: String, _ codingPath: [any CodingKey]) -> BinaryCodingError {
        BinaryCodingError(.typeMismatch(expected: expected), path: render(codingPath))
    }

    static func render(_ codingPath: [any CodingKey]) -> String {
        codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}

// MARK: - Tree decoding

struct TreeDecoder: Decoder {
    let value: BinaryValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .map(let entries) = value else { throw BinaryDecoder.mismatch("map", codingPath) }
        return KeyedDecodingContainer(KeyedContainer<Key>(entries: entries, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else { throw BinaryDecoder.mismatch("array", codingPath) }
        return UnkeyedContainer(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleContainer(value: value, codingPath: codingPath)
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let index: [String: BinaryValue]
    let codingPath: [any CodingKey]

    init(entries: [(String, BinaryValue)], codingPath: [any CodingKey]) {
        var index: [String: BinaryValue] = [:]
        index.reserveCapacity(entries.count)
        for (key, value) in entries where index[key] == nil { index[key] = value }
        self.index = index
        self.codingPath = codingPath
    }

    var allKeys: [Key] { index.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { index[key.stringValue] != nil }

    private func value(_ key: Key) throws -> BinaryValue {
        guard let value = index[key.stringValue] else {
            throw BinaryCodingError(.keyNotFound(key.stringValue), path: BinaryDecoder.render(codingPath))
        }
        return value
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try value(key) { return true }
        return false
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try BinaryDecoder.decode(type, from: try value(key), codingPath: codingPath + [key])
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let value = index[key.stringValue] else { return nil }
        if case .null = value { return nil }
        return try BinaryDecoder.decode(type, from: value, codingPath: codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try TreeDecoder(value: try value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try TreeDecoder(value: try value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        TreeDecoder(value: index["super"] ?? .null, codingPath: codingPath)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        TreeDecoder(value: index[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

private struct IndexKey: CodingKey {
    var stringValue: String { String(intValue ?? 0) }
    var intValue: Int?
    init(_ index: Int) { self.intValue = index }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let items: [BinaryValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    init(items: [BinaryValue], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    private mutating func next() throws -> BinaryValue {
        guard !isAtEnd else { throw BinaryCodingError(.truncated, path: BinaryDecoder.render(codingPath)) }
        defer { currentIndex += 1 }
        return items[currentIndex]
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { throw BinaryCodingError(.truncated, path: BinaryDecoder.render(codingPath)) }
        if case .null = items[currentIndex] {
            currentIndex += 1
            return true
        }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let path = codingPath + [IndexKey(currentIndex)]
        return try BinaryDecoder.decode(type, from: try next(), codingPath: path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let path = codingPath + [IndexKey(currentIndex)]
        return try TreeDecoder(value: try next(), codingPath: path).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let path = codingPath + [IndexKey(currentIndex)]
        return try TreeDecoder(value: try next(), codingPath: path).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let path = codingPath + [IndexKey(currentIndex)]
        return TreeDecoder(value: try next(), codingPath: path)
    }
}

private struct SingleContainer: SingleValueDecodingContainer {
    let value: BinaryValue
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool {
        if case .null = value { return true }
        return false
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try BinaryDecoder.decode(type, from: value, codingPath: codingPath)
    }
}
