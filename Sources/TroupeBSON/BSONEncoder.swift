public import Foundation

/// Encodes `Encodable` values into BSON. `Date` → datetime, `Data` → binary, `UUID` → binary subtype 4,
/// `Int`/`Int64`/`UInt32` → int64, smaller integers → int32, and the BSON value types as themselves.
public struct BSONEncoder: Sendable {
    /// Values handed to the types' `encode(to:)` through `Encoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// An encoder.
    public init() {}

    /// Encodes a value whose BSON form is a document (a struct, class or dictionary).
    public func encode<T: Encodable>(_ value: T) throws(BSONError) -> BSONDocument {
        guard case .document(let doc) = try encodeValue(value) else {
            throw BSONError(.typeMismatch, "\(T.self) does not encode to a document")
        }
        return doc
    }

    /// Encodes any value to a BSON value.
    public func encodeValue<T: Encodable>(_ value: T) throws(BSONError) -> BSONValue {
        do {
            let encoder = _BSONEncoder(codingPath: [], userInfo: userInfo)
            return try encoder.box(value)
        } catch let error as BSONError {
            throw error
        } catch {
            throw BSONError(.invalidValue, "encoding \(T.self) failed: \(error)")
        }
    }
}

/// Values that have a native BSON form; the coders use it instead of the generic Codable path.
protocol BSONRepresentable {
    var bsonValue: BSONValue { get }
}

extension BSONValue: BSONRepresentable { var bsonValue: BSONValue { self } }
extension BSONDocument: BSONRepresentable { var bsonValue: BSONValue { .document(self) } }
extension BSONObjectID: BSONRepresentable { var bsonValue: BSONValue { .objectID(self) } }
extension BSONBinary: BSONRepresentable { var bsonValue: BSONValue { .binary(self) } }
extension BSONTimestamp: BSONRepresentable { var bsonValue: BSONValue { .timestamp(self) } }
extension BSONDecimal128: BSONRepresentable { var bsonValue: BSONValue { .decimal128(self) } }
extension BSONRegularExpression: BSONRepresentable { var bsonValue: BSONValue { .regex(self) } }
extension Date: BSONRepresentable {
    var bsonValue: BSONValue { .datetime(Int64((timeIntervalSince1970 * 1000).rounded(.down))) }
}
extension Data: BSONRepresentable { var bsonValue: BSONValue { .binary(BSONBinary(subtype: BSONBinary.generic, data: [UInt8](self))) } }
extension UUID: BSONRepresentable {
    var bsonValue: BSONValue {
        let u = uuid
        return .binary(BSONBinary(subtype: BSONBinary.uuid, data: [
            u.0, u.1, u.2, u.3, u.4, u.5, u.6, u.7, u.8, u.9, u.10, u.11, u.12, u.13, u.14, u.15,
        ]))
    }
}

/// A mutable slot in the tree being built; containers hand these out so nested encoders can fill them later.
final class BSONNode {
    enum Content {
        case value(BSONValue)
        case document([(String, BSONNode)])
        case array([BSONNode])
    }
    var content: Content

    init(_ content: Content) { self.content = content }

    var value: BSONValue {
        switch content {
        case .value(let v): return v
        case .document(let members):
            var doc = BSONDocument()
            doc.reserveCapacity(members.count)
            for (key, node) in members { doc.append(key, node.value) }
            return .document(doc)
        case .array(let nodes): return .array(nodes.map(\.value))
        }
    }
}

final class _BSONEncoder: Encoder {
    var codingPath: [any CodingKey]
    let userInfoStorage: [CodingUserInfoKey: any Sendable]
    var userInfo: [CodingUserInfoKey: Any] { userInfoStorage }
    var node: BSONNode?

    init(codingPath: [any CodingKey], userInfo: [CodingUserInfoKey: any Sendable]) {
        self.codingPath = codingPath
        self.userInfoStorage = userInfo
    }

    /// Encodes a value into a finished BSON value.
    func box<T: Encodable>(_ value: T) throws -> BSONValue {
        if let native = value as? any BSONRepresentable { return native.bsonValue }
        let child = _BSONEncoder(codingPath: codingPath, userInfo: userInfoStorage)
        try value.encode(to: child)
        return child.node?.value ?? .document(BSONDocument())
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if node == nil { node = BSONNode(.document([])) }
        return KeyedEncodingContainer(KeyedContainer<Key>(encoder: self, node: node!, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if node == nil { node = BSONNode(.array([])) }
        return UnkeyedContainer(encoder: self, node: node!, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleContainer(encoder: self, codingPath: codingPath) }

    func set(_ value: BSONValue) { node = BSONNode(.value(value)) }

    static func integer<T: BinaryInteger>(_ v: T) throws -> BSONValue {
        if T.self == Int32.self || T.self == Int16.self || T.self == Int8.self || T.self == UInt16.self || T.self == UInt8.self {
            return .int32(Int32(v))
        }
        guard let wide = Int64(exactly: v) else {
            throw BSONError(.invalidValue, "\(v) does not fit a BSON int64")
        }
        return .int64(wide)
    }

    struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let encoder: _BSONEncoder
        let node: BSONNode
        var codingPath: [any CodingKey]

        private func put(_ key: Key, _ child: BSONNode) {
            guard case .document(var members) = node.content else { return }
            if let i = members.firstIndex(where: { $0.0 == key.stringValue }) {
                members[i].1 = child
            } else {
                members.append((key.stringValue, child))
            }
            node.content = .document(members)
        }

        private func put(_ key: Key, _ value: BSONValue) { put(key, BSONNode(.value(value))) }

        mutating func encodeNil(forKey key: Key) throws { put(key, .null) }
        mutating func encode(_ value: Bool, forKey key: Key) throws { put(key, .bool(value)) }
        mutating func encode(_ value: String, forKey key: Key) throws { put(key, .string(value)) }
        mutating func encode(_ value: Double, forKey key: Key) throws { put(key, .double(value)) }
        mutating func encode(_ value: Float, forKey key: Key) throws { put(key, .double(Double(value))) }
        mutating func encode(_ value: Int, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int8, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int16, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int32, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt8, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt16, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt32, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt64, forKey key: Key) throws { put(key, try _BSONEncoder.integer(value)) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            encoder.codingPath.append(key)
            defer { encoder.codingPath.removeLast() }
            put(key, try encoder.box(value))
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            let child = BSONNode(.document([]))
            put(key, child)
            return KeyedEncodingContainer(KeyedContainer<NestedKey>(encoder: encoder, node: child, codingPath: codingPath + [key]))
        }

        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            let child = BSONNode(.array([]))
            put(key, child)
            return UnkeyedContainer(encoder: encoder, node: child, codingPath: codingPath + [key])
        }

        mutating func superEncoder() -> any Encoder { superEncoder(forKey: Key(stringValue: "super")!) }

        mutating func superEncoder(forKey key: Key) -> any Encoder {
            let sub = _BSONEncoder(codingPath: codingPath + [key], userInfo: encoder.userInfoStorage)
            let child = BSONNode(.document([]))
            sub.node = child
            put(key, child)
            return sub
        }
    }

    struct UnkeyedContainer: UnkeyedEncodingContainer {
        let encoder: _BSONEncoder
        let node: BSONNode
        var codingPath: [any CodingKey]

        var count: Int {
            if case .array(let nodes) = node.content { return nodes.count }
            return 0
        }

        private func append(_ child: BSONNode) {
            guard case .array(var nodes) = node.content else { return }
            nodes.append(child)
            node.content = .array(nodes)
        }

        private func append(_ value: BSONValue) { append(BSONNode(.value(value))) }

        mutating func encodeNil() throws { append(.null) }
        mutating func encode(_ value: Bool) throws { append(.bool(value)) }
        mutating func encode(_ value: String) throws { append(.string(value)) }
        mutating func encode(_ value: Double) throws { append(.double(value)) }
        mutating func encode(_ value: Float) throws { append(.double(Double(value))) }
        mutating func encode(_ value: Int) throws { append(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int32) throws { append(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int64) throws { append(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt8) throws { append(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt64) throws { append(try _BSONEncoder.integer(value)) }
        mutating func encode<T: Encodable>(_ value: T) throws { append(try encoder.box(value)) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            let child = BSONNode(.document([]))
            append(child)
            return KeyedEncodingContainer(KeyedContainer<NestedKey>(encoder: encoder, node: child, codingPath: codingPath))
        }

        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let child = BSONNode(.array([]))
            append(child)
            return UnkeyedContainer(encoder: encoder, node: child, codingPath: codingPath)
        }

        mutating func superEncoder() -> any Encoder {
            let sub = _BSONEncoder(codingPath: codingPath, userInfo: encoder.userInfoStorage)
            let child = BSONNode(.document([]))
            sub.node = child
            append(child)
            return sub
        }
    }

    struct SingleContainer: SingleValueEncodingContainer {
        let encoder: _BSONEncoder
        var codingPath: [any CodingKey]

        mutating func encodeNil() throws { encoder.set(.null) }
        mutating func encode(_ value: Bool) throws { encoder.set(.bool(value)) }
        mutating func encode(_ value: String) throws { encoder.set(.string(value)) }
        mutating func encode(_ value: Double) throws { encoder.set(.double(value)) }
        mutating func encode(_ value: Float) throws { encoder.set(.double(Double(value))) }
        mutating func encode(_ value: Int) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int8) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int16) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int32) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: Int64) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt8) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt16) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt32) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode(_ value: UInt64) throws { encoder.set(try _BSONEncoder.integer(value)) }
        mutating func encode<T: Encodable>(_ value: T) throws { encoder.set(try encoder.box(value)) }
    }
}
