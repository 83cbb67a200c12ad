/// Reads binary values from untrusted bytes, validating every length, tag and UTF-8 string.
///
/// Counts are checked against the bytes that remain *before* anything is allocated, so a
/// hostile length can never make the reader reserve more memory than the input holds.
public struct BinaryReader {
    private let bytes: [UInt8]
    public private(set) var index: Int
    private let limits: BinaryDecodingLimits

    /// A reader at the start of `bytes`, applying `limits`.
    public init(_ bytes: [UInt8], limits: BinaryDecodingLimits = .default) {
        self.bytes = bytes
        self.index = 0
        self.limits = limits
    }

    /// Bytes not read yet.
    public var remaining: Int { bytes.count - index }

    /// Reads one complete value and requires that nothing follows it.
    public static func readValue(
        from bytes: [UInt8],
        limits: BinaryDecodingLimits = .default
    ) throws(BinaryCodingError) -> BinaryValue {
        guard bytes.count <= limits.maxBytes else { throw BinaryCodingError(.tooLarge) }
        var reader = BinaryReader(bytes, limits: limits)
        let value = try reader.readValue(depth: 0)
        guard reader.remaining == 0 else { throw BinaryCodingError(.trailingBytes) }
        return value
    }

    /// The next byte. - Throws: `truncated` at the end of the input.
    public mutating func readByte() throws(BinaryCodingError) -> UInt8 {
        guard index < bytes.count else { throw BinaryCodingError(.truncated) }
        defer { index += 1 }
        return bytes[index]
    }

    /// An unsigned LEB128 varint (at most 10 bytes). - Throws: `badVarint` when longer or overflowing 64 bits.
    public mutating func readVarint() throws(BinaryCodingError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readByte()
            if shift == 63 && byte > 1 { throw BinaryCodingError(.badVarint) }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw BinaryCodingError(.badVarint) }
        }
    }

    /// A count or length, checked against the remaining bytes (each item needs ≥ `minItemBytes`).
    mutating func readCount(minItemBytes: Int) throws(BinaryCodingError) -> Int {
        let raw = try readVarint()
        guard raw <= UInt64(Int.max), Int(raw) <= remaining / max(minItemBytes, 1) else {
            throw BinaryCodingError(.tooLarge)
        }
        return Int(raw)
    }

    /// The next `count` bytes, without copying. - Throws: `truncated` when fewer remain.
    public mutating func readRawBytes(count: Int) throws(BinaryCodingError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else { throw BinaryCodingError(.truncated) }
        defer { index += count }
        return bytes[index..<(index + count)]
    }

    /// A length-prefixed UTF-8 string without a tag. - Throws: `invalidUTF8`, `truncated`, `tooLarge`.
    public mutating func readRawString() throws(BinaryCodingError) -> String {
        let count = try readCount(minItemBytes: 1)
        let slice = try readRawBytes(count: count)
        guard let string = String(validating: slice, as: UTF8.self) else {
            throw BinaryCodingError(.invalidUTF8)
        }
        return string
    }

    private mutating func readLittleEndian(byteCount: Int) throws(BinaryCodingError) -> UInt64 {
        let slice = try readRawBytes(count: byteCount)
        var value: UInt64 = 0
        for (offset, byte) in slice.enumerated() {
            value |= UInt64(byte) << (8 * UInt64(offset))
        }
        return value
    }

    /// The next tagged value, nested at most ``BinaryDecodingLimits/maxDepth`` deep below `depth`.
    public mutating func readValue(depth: Int = 0) throws(BinaryCodingError) -> BinaryValue {
        let tagByte = try readByte()
        guard let tag = BinaryTag(rawValue: tagByte) else { throw BinaryCodingError(.unknownTag(tagByte)) }
        switch tag {
        case .null: return .null
        case .false: return .bool(false)
        case .true: return .bool(true)
        case .int:
            let raw = try readVarint()
            return .int(Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1))
        case .uint: return .uint(try readVarint())
        case .double: return .double(Double(bitPattern: try readLittleEndian(byteCount: 8)))
        case .float: return .float(Float(bitPattern: UInt32(truncatingIfNeeded: try readLittleEndian(byteCount: 4))))
        case .string: return .string(try readRawString())
        case .bytes:
            let count = try readCount(minItemBytes: 1)
            return .bytes(Array(try readRawBytes(count: count)))
        case .array:
            guard depth < limits.maxDepth else { throw BinaryCodingError(.tooDeep) }
            let count = try readCount(minItemBytes: 1)
            var items: [BinaryValue] = []
            items.reserveCapacity(count)
            for _ in 0..<count { items.append(try readValue(depth: depth + 1)) }
            return .array(items)
        case .map:
            guard depth < limits.maxDepth else { throw BinaryCodingError(.tooDeep) }
            let count = try readCount(minItemBytes: 2)
            var entries: [(String, BinaryValue)] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let key = try readRawString()
                entries.append((key, try readValue(depth: depth + 1)))
            }
            return .map(entries)
        }
    }
}
