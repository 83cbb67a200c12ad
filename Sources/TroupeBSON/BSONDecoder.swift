import Foundation

/// Decodes `Decodable` values from BSON. Numbers convert between int32, int64 and double when exact;
/// `Date` reads datetime, `Data` and `UUID` read binary.
public struct BSONDecoder: Sendable {
    /// Values handed to the types' `init(from:)` through `Decoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// A decoder.
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from document: BSONDocument) throws(BSONError) -> T {
        try decode(type, fromValue: .document(document))
    }

    /// Decodes a `T` from one BSON value (a document, an array or a scalar).
    /// - Throws: ``BSONError`` with kind `typeMismatch` or `keyNotFound` (and the coding path) when it does not fit.
    public func decode<T: Decodable>(_ type: T.Type, fromValue value: BSONValue) throws(BSONError) -> T {
        do {
            return try _BSONDecoder(value: value, codingPath: [], userInfo: userInfo).unbox(type)
        } catch let error as BSONError {
            throw error
        } catch let error as DecodingError {
            throw BSONError.from(error)
        } catch {
            throw BSONError(.typeMismatch, "decoding \(T.self) failed: \(error)")
        }
    }
}

extension BSONError {
    static func from(_ error: DecodingError) -> BSONError {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map(\.stringValue).joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return BSONError(.keyNotFound, "missing key \"\(key.stringValue)\" at \"\(path(context))\"")
        case .typeMismatch(let type, let context):
            return BSONError(.typeMismatch, "expected \(type) at \"\(path(context))\": \(context.debugDescription)")
        case .valueNotFound(let type, let context):
            return BSONError(.typeMismatch, "expected \(type) but found null at \"\(path(context))\"")
        case .dataCorrupted(let context):
            return BSONError(.invalidValue, "\(context.debugDescription) at \"\(path(context))\"")
        @unknown default:
            return BSONError(.typeMismatch, "\(error)")
        }
    }
}

final class _BSONDecoder: Decoder {
    let value: BSONValue
    var codingPath: [any CodingKey]
    let userInfoStorage: [CodingUserInfoKey: any Sendable]
    var userInfo: [CodingUserInfoKey: Any] { userInfoStorage }

    init(value: BSONValue, codingPath: [any CodingKey], userInfo: [CodingUserInfoKey: any Sendable]) {
        self.value = value
        self.codingPath = codingPath
        self.userInfoStorage = userInfo
    }

    func mismatch(_ type: Any.Type, _ found: BSONValue) -> DecodingError {
        DecodingError.typeMismatch(type, .init(codingPath: codingPath, debugDescription: "found BSON type 0x\(String(found.typeByte, radix: 16))"))
    }

    func unbox<T: Decodable>(_ type: T.Type) throws -> T {
        if let native = try unboxNative(type) { return native }
        return try T(from: self)
    }

    /// The types with a native BSON form.
    private func unboxNative<T>(_ type: T.Type) throws -> T? {
        if T.self == BSONValue.self { return value as? T }
        if T.self == BSONDocument.self {
            guard case .document(let d) = value else { throw mismatch(T.self, value) }
            return d as? T
        }
        if T.self == BSONObjectID.self {
            guard case .objectID(let o) = value else { throw mismatch(T.self, value) }
            return o as? T
        }
        if T.self == Date.self {
            switch value {
            case .datetime(let ms): return Date(timeIntervalSince1970: Double(ms) / 1000) as? T
            default: throw mismatch(T.self, value)
            }
        }
        if T.self == Data.self {
            guard case .binary(let b) = value else { throw mismatch(T.self, value) }
            return Data(b.data) as? T
        }
        if T.self == UUID.self {
            guard case .binary(let b) = value, b.data.count == 16 else { throw mismatch(T.self, value) }
            let d = b.data
            return UUID(uuid: (d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15])) as? T
        }
        if T.self == BSONBinary.self {
            guard case .binary(let b) = value else { throw mismatch(T.self, value) }
            return b as? T
        }
        if T.self == BSONTimestamp.self {
            guard case .timestamp(let t) = value else { throw mismatch(T.self, value) }
            return t as? T
        }
        if T.self == BSONDecimal128.self {
            guard case .decimal128(let d) = value else { throw mismatch(T.self, value) }
            return d as? T
        }
        if T.self == BSONRegularExpression.self {
            guard case .regex(let r) = value else { throw mismatch(T.self, value) }
            return r as? T
        }
        return nil
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .document(let doc) = value else { throw mismatch([String: Any].self, value) }
        return KeyedDecodingContainer(KeyedContainer<Key>(decoder: self, document: doc, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else { throw mismatch([Any].self, value) }
        return UnkeyedContainer(decoder: self, items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleContainer(decoder: self, value: value, codingPath: codingPath) }

    // MARK: Scalars shared by the containers

    static func integer<T: FixedWidthInteger>(_ type: T.Type, _ value: BSONValue, _ decoder: _BSONDecoder, _ path: [any CodingKey]) throws -> T {
        let result: T?
        switch value {
        case .int32(let v): result = T(exactly: v)
        case .int64(let v): result = T(exactly: v)
        case .double(let d): result = T(exactly: d)
        default: throw DecodingError.typeMismatch(T.self, .init(codingPath: path, debugDescription: "found BSON type 0x\(String(value.typeByte, radix: 16))"))
        }
        guard let result else {
            throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "\(value) does not fit \(T.self)"))
        }
        return result
    }

    static func double(_ value: BSONValue, _ path: [any CodingKey]) throws -> Double {
        switch value {
        case .double(let d): return d
        case .int32(let v): return Double(v)
        case .int64(let v): return Double(v)
        case .decimal128(let d): if let v = Double(d.description) { return v }
        default: break
        }
        throw DecodingError.typeMismatch(Double.self, .init(codingPath: path, debugDescription: "found BSON type 0x\(String(value.typeByte, radix: 16))"))
    }

    static func string(_ value: BSONValue, _ path: [any CodingKey]) throws -> String {
        switch value {
        case .string(let s), .symbol(let s): return s
        default: throw DecodingError.typeMismatch(String.self, .init(codingPath: path, debugDescription: "found BSON type 0x\(String(value.typeByte, radix: 16))"))
        }
    }

    static func bool(_ value: BSONValue, _ path: [any CodingKey]) throws -> Bool {
        guard case .bool(let b) = value else {
            throw DecodingError.typeMismatch(Bool.self, .init(codingPath: path, debugDescription: "found BSON type 0x\(String(value.typeByte, radix: 16))"))
        }
        return b
    }

    struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let decoder: _BSONDecoder
        let document: BSONDocument
        let index: [String: Int]?
        var codingPath: [any CodingKey]

        init(decoder: _BSONDecoder, document: BSONDocument, codingPath: [any CodingKey]) {
            self.decoder = decoder
            self.document = document
            self.codingPath = codingPath
            // Linear lookup for small documents; an index for wide ones.
            if document.count > 12 {
                var index = [String: Int](minimumCapacity: document.count)
                for (i, element) in document.elements.enumerated() where index[element.key] == nil { index[element.key] = i }
                self.index = index
            } else {
                self.index = nil
            }
        }

        var allKeys: [Key] { document.elements.compactMap { Key(stringValue: $0.key) } }

        private func lookup(_ key: Key) -> BSONValue? {
            if let index { return index[key.stringValue].map { document.elements[$0].value } }
            return document[key.stringValue]
        }

        func contains(_ key: Key) -> Bool { lookup(key) != nil }

        private func require(_ key: Key) throws -> BSONValue {
            guard let value = lookup(key) else {
                throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no value for \"\(key.stringValue)\""))
            }
            return value
        }

        func decodeNil(forKey key: Key) throws -> Bool {
            switch lookup(key) {
            case nil, .null?, .undefined?: return true
            default: return false
            }
        }

        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try _BSONDecoder.bool(require(key), codingPath + [key]) }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try _BSONDecoder.string(require(key), codingPath + [key]) }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try _BSONDecoder.double(require(key), codingPath + [key]) }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { Float(try _BSONDecoder.double(require(key), codingPath + [key])) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try _BSONDecoder.integer(type, require(key), decoder, codingPath + [key]) }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            let child = _BSONDecoder(value: try require(key), codingPath: codingPath + [key], userInfo: decoder.userInfoStorage)
            return try child.unbox(type)
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            try _BSONDecoder(value: try require(key), codingPath: codingPath + [key], userInfo: decoder.userInfoStorage).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try _BSONDecoder(value: try require(key), codingPath: codingPath + [key], userInfo: decoder.userInfoStorage).unkeyedContainer()
        }

        func superDecoder() throws -> any Decoder {
            _BSONDecoder(value: lookup(Key(stringValue: "super")!) ?? .null, codingPath: codingPath, userInfo: decoder.userInfoStorage)
        }

        func superDecoder(forKey key: Key) throws -> any Decoder {
            _BSONDecoder(value: lookup(key) ?? .null, codingPath: codingPath + [key], userInfo: decoder.userInfoStorage)
        }
    }

    struct IndexKey: CodingKey {
        var stringValue: String
        var intValue: Int?
        init(_ i: Int) { stringValue = String(i); intValue = i }
        init?(stringValue: String) { self.stringValue = stringValue; intValue = Int(stringValue) }
        init?(intValue: Int) { self.init(intValue) }
    }

    struct UnkeyedContainer: UnkeyedDecodingContainer {
        let decoder: _BSONDecoder
        let items: [BSONValue]
        var codingPath: [any CodingKey]
        var currentIndex = 0

        init(decoder: _BSONDecoder, items: [BSONValue], codingPath: [any CodingKey]) {
            self.decoder = decoder
            self.items = items
            self.codingPath = codingPath
        }

        var count: Int? { items.count }
        var isAtEnd: Bool { currentIndex >= items.count }

        private mutating func next() throws -> (BSONValue, [any CodingKey]) {
            guard !isAtEnd else {
                throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "array exhausted"))
            }
            defer { currentIndex += 1 }
            return (items[currentIndex], codingPath + [IndexKey(currentIndex)])
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd else { return true }
            switch items[currentIndex] {
            case .null, .undefined: currentIndex += 1; return true
            default: return false
            }
        }

        mutating func decode(_ type: Bool.Type) throws -> Bool { let (v, p) = try next(); return try _BSONDecoder.bool(v, p) }
        mutating func decode(_ type: String.Type) throws -> String { let (v, p) = try next(); return try _BSONDecoder.string(v, p) }
        mutating func decode(_ type: Double.Type) throws -> Double { let (v, p) = try next(); return try _BSONDecoder.double(v, p) }
        mutating func decode(_ type: Int.Type) throws -> Int { let (v, p) = try next(); return try _BSONDecoder.integer(type, v, decoder, p) }
        mutating func decode(_ type: Int64.Type) throws -> Int64 { let (v, p) = try next(); return try _BSONDecoder.integer(type, v, decoder, p) }
        mutating func decode(_ type: Int32.Type) throws -> Int32 { let (v, p) = try next(); return try _BSONDecoder.integer(type, v, decoder, p) }
        mutating func decode(_ type: UInt8.Type) throws -> UInt8 { let (v, p) = try next(); return try _BSONDecoder.integer(type, v, decoder, p) }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            let (v, p) = try next()
            return try _BSONDecoder(value: v, codingPath: p, userInfo: decoder.userInfoStorage).unbox(type)
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            let (v, p) = try next()
            return try _BSONDecoder(value: v, codingPath: p, userInfo: decoder.userInfoStorage).container(keyedBy: type)
        }

        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            let (v, p) = try next()
            return try _BSONDecoder(value: v, codingPath: p, userInfo: decoder.userInfoStorage).unkeyedContainer()
        }

        mutating func superDecoder() throws -> any Decoder {
            let (v, p) = try next()
            return _BSONDecoder(value: v, codingPath: p, userInfo: decoder.userInfoStorage)
        }
    }

    struct SingleContainer: SingleValueDecodingContainer {
        let decoder: _BSONDecoder
        let value: BSONValue
        var codingPath: [any CodingKey]

        func decodeNil() -> Bool {
            switch value {
            case .null, .undefined: true
            default: false
            }
        }
        func decode(_ type: Bool.Type) throws -> Bool { try _BSONDecoder.bool(value, codingPath) }
        func decode(_ type: String.Type) throws -> String { try _BSONDecoder.string(value, codingPath) }
        func decode(_ type: Double.Type) throws -> Double { try _BSONDecoder.double(value, codingPath) }
        func decode(_ type: Float.Type) throws -> Float { Float(try _BSONDecoder.double(value, codingPath)) }
        func decode(_ type: Int.Type) throws -> Int { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode(_ type: Int8.Type) throws -> Int8 { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode(_ type: Int16.Type) throws -> Int16 { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode(_ type: Int32.Type) throws -> Int32 { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode(_ type: Int64.Type) throws -> Int64 { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode(_ type: UInt.Type) throws -> UInt { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try _BSONDecoder.integer(type, value, decoder, codingPath) }
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            try _BSONDecoder(value: value, codingPath: codingPath, userInfo: decoder.userInfoStorage).unbox(type)
        }
    }
}
