/// Appends binary values to a byte array; the low-level half of ``BinaryEncoder``.
public struct BinaryWriter: Sendable {
    /// What was written so far.
    public var bytes: [UInt8]

    /// An empty writer with room for `capacity` bytes.
    public init(capacity: Int = 64) {
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
    }

    /// Appends `value` as an unsigned LEB128 varint (no tag).
    @inlinable
    public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Appends `value` with its tag (containers recursively).
    public mutating func write(_ value: BinaryValue) {
        switch value {
        case .null: bytes.append(BinaryTag.null.rawValue)
        case .bool(let b): writeBool(b)
        case .int(let i): writeInt(i)
        case .uint(let u): writeUInt(u)
        case .double(let d): writeDouble(d)
        case .float(let f):
            bytes.append(BinaryTag.float.rawValue)
            appendLittleEndian(UInt64(f.bitPattern), byteCount: 4)
        case .string(let s): writeString(s)
        case .bytes(let b): writeBytes(b)
        case .array(let items):
            bytes.append(BinaryTag.array.rawValue)
            writeVarint(UInt64(items.count))
            for item in items { write(item) }
        case .map(let entries):
            bytes.append(BinaryTag.map.rawValue)
            writeVarint(UInt64(entries.count))
            for (key, item) in entries {
                writeRawString(key)
                write(item)
            }
        }
    }

    /// Appends a null.
    public mutating func writeNil() { bytes.append(BinaryTag.null.rawValue) }

    /// Appends a boolean.
    public mutating func writeBool(_ value: Bool) {
        bytes.append(value ? BinaryTag.true.rawValue : BinaryTag.false.rawValue)
    }

    /// Appends a signed integer (zig-zag varint).
    public mutating func writeInt(_ value: Int64) {
        bytes.append(BinaryTag.int.rawValue)
        writeVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    /// Appends an unsigned integer (varint).
    public mutating func writeUInt(_ value: UInt64) {
        bytes.append(BinaryTag.uint.rawValue)
        writeVarint(value)
    }

    /// Appends a double (8 bytes, little endian).
    public mutating func writeDouble(_ value: Double) {
        bytes.append(BinaryTag.double.rawValue)
        appendLittleEndian(value.bitPattern, byteCount: 8)
    }

    /// Appends a string (length-prefixed UTF-8).
    public mutating func writeString(_ value: String) {
        bytes.append(BinaryTag.string.rawValue)
        writeRawString(value)
    }

    /// Appends bytes (length-prefixed).
    public mutating func writeBytes(_ value: [UInt8]) {
        bytes.append(BinaryTag.bytes.rawValue)
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// A string without its tag: varint length and UTF-8 (map keys use this form).
    public mutating func writeRawString(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            writeVarint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    private mutating func appendLittleEndian(_ value: UInt64, byteCount: Int) {
        for shift in 0..<byteCount {
            bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(shift))))
        }
    }
}
