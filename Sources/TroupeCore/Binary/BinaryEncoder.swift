public import Foundation
/// Encodes `Encodable` values in Troupe's compact binary format (see ``BinaryValue``).
///
/// Used for remote-call arguments and replies and for persisted actor state. Primitive values
/// take a fast path that skips the `Encoder` machinery entirely.
public struct BinaryEncoder: Sendable {
    /// An encoder (stateless; share one freely).
    public init() {}

    /// The bytes of `value` in the binary format.
    /// - Throws: ``BinaryCodingError`` with reason `unsupported` for a value the format cannot hold.
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var writer = BinaryWriter()
        try Self.encode(value, into: &writer)
        return writer.bytes
    }

    /// Appends the encoding of `value` to `writer`.
    public static func encode<T: Encodable>(_ value: T, into writer: inout BinaryWriter) throws {
        if let primitive = primitiveValue(value) {
            writer.write(primitive)
            return
        }
        writer.write(try encodeValue(value))
    }

    /// The value tree of `value`.
    public static func encodeValue<T: Encodable>(_ value: T, codingPath: [any CodingKey] = []) throws -> BinaryValue {
        try encodeValue(value, style: nil, codingPath: codingPath)
    }

    /// The value tree of `value`, with `Date`s and `Data` as `style` says (a text format's tree: JSON's dates are
    /// strings), not as their own `Codable` forms.
    public static func encodeValue<T: Encodable>(_ value: T, style: ValueTreeStyle?, codingPath: [any CodingKey] = []) throws -> BinaryValue {
        if let primitive = primitiveValue(value) { return primitive }
        if let styled = style?.value(of: value) { return styled }
        let box = EncodingBox()
        try value.encode(to: TreeEncoder(box: box, codingPath: codingPath, style: style))
        return box.finish()
    }

    /// The value of `value` when `T` is exactly a primitive type. Compares types rather than casting,
    /// because collection casts convert element-wise (an empty `[Int]` casts to `[UInt8]`).
    @inline(__always)
    static func primitiveValue<T>(_ value: T) -> BinaryValue? {
        if T.self == Int.self, let v = value as? Int { return .int(Int64(v)) }
        if T.self == String.self, let v = value as? String { return .string(v) }
        if T.self == Bool.self, let v = value as? Bool { return .bool(v) }
        if T.self == Double.self, let v = value as? Double { return .double(v) }
        if T.self == Int64.self, let v = value as? Int64 { return .int(v) }
        if T.self == UInt64.self, let v = value as? UInt64 { return .uint(v) }
        if T.self == [UInt8].self, let v = value as? [UInt8] { return .bytes(v) }
        if T.self == Int32.self, let v = value as? Int32 { return .int(Int64(v)) }
        if T.self == UInt32.self, let v = value as? UInt32 { return .uint(UInt64(v)) }
        if T.self == UInt.self, let v = value as? UInt { return .uint(UInt64(v)) }
        if T.self == Int16.self, let v = value as? Int16 { return .int(Int64(v)) }
        if T.self == Int8.self, let v = value as? Int8 { return .int(Int64(v)) }
        if T.self == UInt16.self, let v = value as? UInt16 { return .uint(UInt64(v)) }
        if T.self == UInt8.self, let v = value as? UInt8 { return .uint(UInt64(v)) }
        if T.self == Float.self, let v = value as? Float { return .float(v) }
        if T.self == BinaryValue.self, let v = value as? BinaryValue { return v }
        return nil
    }
}

/// How a value tree holds Foundation's `Date` and `Data` when not in their own `Codable` forms (which the binary
/// format keeps: a `Double` of seconds since 2001, an array of bytes).
public struct ValueTreeStyle: Sendable {
    /// The value of a date.
    public var date: @Sendable (Date) -> BinaryValue
    /// The value of data.
    public var data: @Sendable (Data) -> BinaryValue

    /// A style of `date` and `data`.
    public init(date: @escaping @Sendable (Date) -> BinaryValue, data: @escaping @Sendable (Data) -> BinaryValue) {
        self.date = date
        self.data = data
    }

    /// The styled value of `value` when it is a `Date` or `Data` (compared by type first: nothing else pays a cast).
    @inline(__always)
    func value<T>(of value: T) -> BinaryValue? {
        if T.self == Date.self, let date = value as? Date { return self.date(date) }
        if T.self == Data.self, let data = value as? Data { return self.data(data) }
        return nil
    }
}

// MARK: - Tree building

/// One node of the value tree under construction; containers append into it.
final class EncodingBox {
    enum Slot {
        case empty
        case value(BinaryValue)
        case map(MapStorage)
        case array(ArrayStorage)
    }

    /// A member of a map or array: a finished primitive (no box allocated for it) or a nested box.
    enum Child {
        case value(BinaryValue)
        case box(EncodingBox)

        func finish() -> BinaryValue {
            switch self {
            case .value(let value): value
            case .box(let box): box.finish()
            }
        }
    }

    final class MapStorage {
        var entries: [(String, Child)] = []
    }

    final class ArrayStorage {
        var items: [Child] = []
    }

    var slot: Slot = .empty

    func finish() -> BinaryValue {
        switch slot {
        case .empty: return .map([])  // an Encodable that encoded nothing, like an empty struct
        case .value(let v): return v
        case .map(let storage): return .map(storage.entries.map { ($0.0, $0.1.finish()) })
        case .array(let storage): return .array(storage.items.map { $0.finish() })
        }
    }

    func mapStorage() -> MapStorage {
        if case .map(let storage) = slot { return storage }
        let storage = MapStorage()
        slot = .map(storage)
        return storage
    }

    func arrayStorage() -> ArrayStorage {
        if case .array(let storage) = slot { return storage }
        let storage = ArrayStorage()
        slot = .array(storage)
        return storage
    }
}

struct TreeEncoder: Encoder {
    let box: EncodingBox
    let codingPath: [any CodingKey]
    var style: ValueTreeStyle? = nil
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedContainer<Key>(storage: box.mapStorage(), codingPath: codingPath, style: style))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        UnkeyedContainer(storage: box.arrayStorage(), codingPath: codingPath, style: style)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleContainer(box: box, codingPath: codingPath, style: style)
    }
}

/// A primitive directly; anything else through a nested box. `codingPath` is built only when needed.
private func encodeChild<T: Encodable>(_ value: T, style: ValueTreeStyle?, codingPath: @autoclosure () -> [any CodingKey]) throws -> EncodingBox.Child {
    if let primitive = BinaryEncoder.primitiveValue(value) { return .value(primitive) }
    if let style, let styled = style.value(of: value) { return .value(styled) }
    let child = EncodingBox()
    try value.encode(to: TreeEncoder(box: child, codingPath: codingPath(), style: style))
    return .box(child)
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let storage: EncodingBox.MapStorage
    let codingPath: [any CodingKey]
    let style: ValueTreeStyle?

    private func put(_ value: BinaryValue, _ key: Key) {
        storage.entries.append((key.stringValue, .value(value)))
    }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(.double(value), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(.float(value), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(.int(value), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(.uint(value), key) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        storage.entries.append((key.stringValue, try encodeChild(value, style: style, codingPath: codingPath + [key])))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type,
        forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingBox()
        storage.entries.append((key.stringValue, .box(child)))
        return KeyedEncodingContainer(
            KeyedContainer<NestedKey>(storage: child.mapStorage(), codingPath: codingPath + [key], style: style)
        )
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = EncodingBox()
        storage.entries.append((key.stringValue, .box(child)))
        return UnkeyedContainer(storage: child.arrayStorage(), codingPath: codingPath + [key], style: style)
    }

    mutating func superEncoder() -> any Encoder {
        let child = EncodingBox()
        storage.entries.append(("super", .box(child)))
        return TreeEncoder(box: child, codingPath: codingPath, style: style)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let child = EncodingBox()
        storage.entries.append((key.stringValue, .box(child)))
        return TreeEncoder(box: child, codingPath: codingPath + [key], style: style)
    }
}

private struct IndexKey: CodingKey {
    var stringValue: String { String(intValue ?? 0) }
    var intValue: Int?
    init(_ index: Int) { self.intValue = index }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let storage: EncodingBox.ArrayStorage
    let codingPath: [any CodingKey]
    let style: ValueTreeStyle?
    var count: Int { storage.items.count }

    private func put(_ value: BinaryValue) {
        storage.items.append(.value(value))
    }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(.double(value)) }
    mutating func encode(_ value: Int) throws { put(.int(Int64(value))) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        storage.items.append(try encodeChild(value, style: style, codingPath: codingPath + [IndexKey(count)]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingBox()
        storage.items.append(.box(child))
        return KeyedEncodingContainer(
            KeyedContainer<NestedKey>(storage: child.mapStorage(), codingPath: codingPath + [IndexKey(count - 1)], style: style)
        )
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = EncodingBox()
        storage.items.append(.box(child))
        return UnkeyedContainer(storage: child.arrayStorage(), codingPath: codingPath + [IndexKey(count - 1)], style: style)
    }

    mutating func superEncoder() -> any Encoder {
        let child = EncodingBox()
        storage.items.append(.box(child))
        return TreeEncoder(box: child, codingPath: codingPath + [IndexKey(count - 1)], style: style)
    }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let box: EncodingBox
    let codingPath: [any CodingKey]
    let style: ValueTreeStyle?

    mutating func encodeNil() throws { box.slot = .value(.null) }
    mutating func encode(_ value: Bool) throws { box.slot = .value(.bool(value)) }
    mutating func encode(_ value: String) throws { box.slot = .value(.string(value)) }
    mutating func encode(_ value: Double) throws { box.slot = .value(.double(value)) }
    mutating func encode(_ value: Float) throws { box.slot = .value(.float(value)) }
    mutating func encode(_ value: Int) throws { box.slot = .value(.int(Int64(value))) }
    mutating func encode(_ value: Int64) throws { box.slot = .value(.int(value)) }
    mutating func encode(_ value: UInt64) throws { box.slot = .value(.uint(value)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        if let primitive = BinaryEncoder.primitiveValue(value) {
            box.slot = .value(primitive)
        } else if let style, let styled = style.value(of: value) {
            box.slot = .value(styled)
        } else {
            try value.encode(to: TreeEncoder(box: box, codingPath: codingPath, style: style))
        }
    }
}
