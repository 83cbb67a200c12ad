/// Limits applied while reading BSON from a peer, checked before anything is allocated.
public struct BSONLimits: Sendable, Hashable {
    /// Maximum nesting of documents and arrays.
    public var maxDepth: Int
    /// Maximum size of one document in bytes (MongoDB's is 16 MiB plus command overhead).
    public var maxDocumentSize: Int

    /// Limits of `maxDepth` nested documents and arrays and `maxDocumentSize` bytes (defaults: 200 and 48 MiB).
    public init(maxDepth: Int = 200, maxDocumentSize: Int = 48 * 1024 * 1024) {
        self.maxDepth = maxDepth
        self.maxDocumentSize = maxDocumentSize
    }

    /// 200 levels, 48 MiB.
    public static let `default` = BSONLimits()
}

extension BSONDocument {
    /// Parses one document that must span `bytes` exactly.
    public init(bytes: some Collection<UInt8>, limits: BSONLimits = .default) throws(BSONError) {
        let array = bytes as? [UInt8] ?? Array(bytes)
        let result: Result<BSONDocument, BSONError> = array.withUnsafeBytes { raw in
            var reader = BSONReader(raw, limits: limits)
            do {
                let doc = try reader.readDocument(depth: 0)
                if reader.offset != raw.count {
                    throw BSONError(.malformedBytes, "\(raw.count - reader.offset) bytes after the document", offset: reader.offset)
                }
                return .success(doc)
            } catch let error as BSONError {
                return .failure(error)
            } catch {
                return .failure(BSONError(.malformedBytes, "\(error)"))
            }
        }
        self = try result.get()
    }

    /// Parses one document from the front of `raw`, returning it and the number of bytes it used.
    public static func read(from raw: UnsafeRawBufferPointer, limits: BSONLimits = .default) throws(BSONError) -> (BSONDocument, Int) {
        var reader = BSONReader(raw, limits: limits)
        let doc = try reader.readDocument(depth: 0)
        return (doc, reader.offset)
    }

    /// The canonical BSON bytes of the document.
    public var bytes: [UInt8] {
        var writer = BSONWriter()
        writer.reserve(64)
        writer.writeDocument(self)
        return writer.bytes
    }

    /// Appends the document's bytes to `out`.
    public func write(to out: inout [UInt8]) {
        var writer = BSONWriter(bytes: out)
        out = []
        writer.writeDocument(self)
        out = writer.bytes
    }

    /// The encoded size in bytes.
    public var encodedSize: Int {
        var size = 5
        for (key, value) in elements { size += 2 + key.utf8.count + value.encodedSize }
        return size
    }
}

extension BSONValue {
    /// The number of bytes the value takes after its type byte and key.
    var encodedSize: Int {
        switch self {
        case .double, .datetime, .int64, .timestamp: 8
        case .int32: 4
        case .bool: 1
        case .undefined, .null, .minKey, .maxKey: 0
        case .objectID: 12
        case .decimal128: 16
        case .string(let s), .code(let s), .symbol(let s): 5 + s.utf8.count
        case .document(let d): d.encodedSize
        case .array(let a):
            a.enumerated().reduce(5) { $0 + 2 + decimalDigitCount($1.offset) + $1.element.encodedSize }
        case .binary(let b): 5 + b.data.count + (b.subtype == BSONBinary.binaryOld ? 4 : 0)
        case .regex(let r): r.pattern.utf8.count + r.options.utf8.count + 2
        case .dbPointer(let c, _): 5 + c.utf8.count + 12
        case .codeWithScope(let code, let scope): 4 + 5 + code.utf8.count + scope.encodedSize
        }
    }
}

private func decimalDigitCount(_ n: Int) -> Int {
    var count = 1
    var v = n
    while v >= 10 { v /= 10; count += 1 }
    return count
}

// MARK: - Writer

/// Appends canonical BSON to a byte array. Lengths are reserved and patched.
struct BSONWriter {
    var bytes: [UInt8]

    init(bytes: [UInt8] = []) { self.bytes = bytes }

    mutating func reserve(_ n: Int) { bytes.reserveCapacity(bytes.count + n) }

    @inline(__always) mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inline(__always) mutating func patchInt32(at index: Int) {
        let length = Int32(truncatingIfNeeded: bytes.count - index)
        withUnsafeBytes(of: length.littleEndian) { raw in
            for i in 0..<4 { bytes[index + i] = raw[i] }
        }
    }

    mutating func writeCString(_ s: String) {
        var s = s
        s.withUTF8 { bytes.append(contentsOf: $0) }
        bytes.append(0)
    }

    mutating func writeString(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            writeInteger(Int32(truncatingIfNeeded: utf8.count + 1))
            bytes.append(contentsOf: utf8)
        }
        bytes.append(0)
    }

    mutating func writeDocument(_ doc: BSONDocument) {
        let start = bytes.count
        writeInteger(Int32(0))
        for (key, value) in doc.elements {
            bytes.append(value.typeByte)
            writeCString(key)
            writeValue(value)
        }
        bytes.append(0)
        patchInt32(at: start)
    }

    mutating func writeArray(_ array: [BSONValue]) {
        let start = bytes.count
        writeInteger(Int32(0))
        for (index, value) in array.enumerated() {
            bytes.append(value.typeByte)
            writeArrayIndex(index)
            writeValue(value)
        }
        bytes.append(0)
        patchInt32(at: start)
    }

    private mutating func writeArrayIndex(_ index: Int) {
        if index < 10 {
            bytes.append(UInt8(ascii: "0") + UInt8(index))
        } else {
            writeCString(String(index))
            return
        }
        bytes.append(0)
    }

    mutating func writeValue(_ value: BSONValue) {
        switch value {
        case .double(let d): writeInteger(d.bitPattern)
        case .string(let s), .code(let s), .symbol(let s): writeString(s)
        case .document(let d): writeDocument(d)
        case .array(let a): writeArray(a)
        case .binary(let b):
            if b.subtype == BSONBinary.binaryOld {
                writeInteger(Int32(truncatingIfNeeded: b.data.count + 4))
                bytes.append(b.subtype)
                writeInteger(Int32(truncatingIfNeeded: b.data.count))
            } else {
                writeInteger(Int32(truncatingIfNeeded: b.data.count))
                bytes.append(b.subtype)
            }
            bytes.append(contentsOf: b.data)
        case .undefined, .null, .minKey, .maxKey: break
        case .objectID(let oid):
            withUnsafeBytes(of: oid.high.bigEndian) { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: oid.low.bigEndian) { bytes.append(contentsOf: $0) }
        case .bool(let b): bytes.append(b ? 1 : 0)
        case .datetime(let ms): writeInteger(ms)
        case .regex(let r):
            writeCString(r.pattern)
            writeCString(r.options)
        case .dbPointer(let collection, let id):
            writeString(collection)
            writeValue(.objectID(id))
        case .codeWithScope(let code, let scope):
            let start = bytes.count
            writeInteger(Int32(0))
            writeString(code)
            writeDocument(scope)
            patchInt32(at: start)
        case .int32(let v): writeInteger(v)
        case .timestamp(let t):
            writeInteger(t.increment)
            writeInteger(t.seconds)
        case .int64(let v): writeInteger(v)
        case .decimal128(let d):
            writeInteger(d.low)
            writeInteger(d.high)
        }
    }
}

// MARK: - Reader

/// Reads BSON from untrusted bytes: every length is checked against what is left before it is used.
struct BSONReader {
    let raw: UnsafeRawBufferPointer
    let limits: BSONLimits
    var offset = 0

    init(_ raw: UnsafeRawBufferPointer, limits: BSONLimits) {
        self.raw = raw
        self.limits = limits
    }

    private func fail(_ message: String) -> BSONError {
        BSONError(.malformedBytes, message, offset: offset)
    }

    @inline(__always) mutating func readInteger<T: FixedWidthInteger>(_: T.Type, end: Int) throws(BSONError) -> T {
        let size = MemoryLayout<T>.size
        guard end - offset >= size else { throw fail("truncated \(T.self)") }
        let value = raw.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(littleEndian: value)
    }

    @inline(__always) mutating func readByte(end: Int) throws(BSONError) -> UInt8 {
        guard offset < end else { throw fail("truncated") }
        defer { offset += 1 }
        return raw[offset]
    }

    /// A NUL-terminated UTF-8 string that must end before `end`.
    mutating func readCString(end: Int) throws(BSONError) -> String {
        let start = offset
        var i = start
        while i < end, raw[i] != 0 { i += 1 }
        guard i < end else { throw fail("unterminated C string") }
        guard let s = utf8String(start, i) else { throw fail("invalid UTF-8 in C string") }
        offset = i + 1
        return s
    }

    mutating func readString(end: Int) throws(BSONError) -> String {
        let length = Int(try readInteger(Int32.self, end: end))
        guard length >= 1 else { throw fail("string length \(length) below 1") }
        guard length <= end - offset else { throw fail("string length \(length) exceeds the enclosing document") }
        let stop = offset + length - 1
        guard raw[stop] == 0 else { throw fail("string is not NUL-terminated") }
        guard let s = utf8String(offset, stop) else { throw fail("invalid UTF-8 in string") }
        offset = stop + 1
        return s
    }

    private func utf8String(_ start: Int, _ stop: Int) -> String? {
        let slice = UnsafeRawBufferPointer(rebasing: raw[start..<stop])
        // ASCII fast path: no validation beyond the high bit.
        var ascii = true
        for b in slice where b & 0x80 != 0 { ascii = false; break }
        if ascii { return String(decoding: slice, as: UTF8.self) }
        return String(validating: slice, as: UTF8.self)
    }

    mutating func readDocument(depth: Int) throws(BSONError) -> BSONDocument {
        let (start, end) = try readDocumentBounds(depth: depth)
        _ = start
        var doc = BSONDocument()
        while true {
            let type = try readByte(end: end)
            if type == 0 { break }
            let key = try readCString(end: end)
            let value = try readValue(type: type, end: end, depth: depth)
            doc.append(key, value)
        }
        guard offset == end else { throw fail("document ended before its stated length") }
        return doc
    }

    mutating func readArray(depth: Int) throws(BSONError) -> [BSONValue] {
        let (_, end) = try readDocumentBounds(depth: depth)
        var array = [BSONValue]()
        while true {
            let type = try readByte(end: end)
            if type == 0 { break }
            _ = try readCString(end: end)  // indices are positional; their text is not trusted
            array.append(try readValue(type: type, end: end, depth: depth))
        }
        guard offset == end else { throw fail("array ended before its stated length") }
        return array
    }

    /// Reads and validates a document length; returns the document's start and end (one past the NUL).
    private mutating func readDocumentBounds(depth: Int) throws(BSONError) -> (Int, Int) {
        guard depth < limits.maxDepth else {
            throw BSONError(.nestingTooDeep, "documents nest deeper than \(limits.maxDepth)", offset: offset)
        }
        let start = offset
        let length = Int(try readInteger(Int32.self, end: raw.count))
        guard length >= 5 else { throw fail("document length \(length) below 5") }
        guard length <= limits.maxDocumentSize else {
            throw BSONError(.documentTooLarge, "document length \(length) over the limit \(limits.maxDocumentSize)", offset: start)
        }
        guard length <= raw.count - start else { throw fail("document length \(length) exceeds the \(raw.count - start) bytes available") }
        let end = start + length
        guard raw[end - 1] == 0 else { throw fail("document does not end with NUL") }
        return (start, end)
    }

    private mutating func readValue(type: UInt8, end: Int, depth: Int) throws(BSONError) -> BSONValue {
        switch type {
        case 0x01: return .double(Double(bitPattern: try readInteger(UInt64.self, end: end)))
        case 0x02: return .string(try readString(end: end))
        case 0x03: return .document(try readNested(end: end) { (r: inout BSONReader) throws(BSONError) in try r.readDocument(depth: depth + 1) })
        case 0x04: return .array(try readNested(end: end) { (r: inout BSONReader) throws(BSONError) in try r.readArray(depth: depth + 1) })
        case 0x05:
            let length = Int(try readInteger(Int32.self, end: end))
            let subtype = try readByte(end: end)
            guard length >= 0, length <= end - offset else { throw fail("binary length \(length) out of range") }
            if subtype == BSONBinary.binaryOld {
                // The old binary subtype wraps its bytes in a second length: the outer one counts those 4 bytes.
                guard length >= 4 else { throw fail("binary subtype 2 length \(length) is shorter than its inner length field") }
                let inner = Int(try readInteger(Int32.self, end: end))
                guard inner == length - 4 else { throw fail("binary subtype 2 inner length \(inner) does not match \(length - 4)") }
                let data = Array(raw[offset..<offset + inner])
                offset += inner
                return .binary(BSONBinary(subtype: subtype, data: data))
            }
            let data = Array(raw[offset..<offset + length])
            offset += length
            return .binary(BSONBinary(subtype: subtype, data: data))
        case 0x06: return .undefined
        case 0x07: return .objectID(try readObjectID(end: end))
        case 0x08:
            let b = try readByte(end: end)
            guard b <= 1 else { throw fail("boolean byte \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case 0x09: return .datetime(try readInteger(Int64.self, end: end))
        case 0x0A: return .null
        case 0x0B:
            let pattern = try readCString(end: end)
            let options = try readCString(end: end)
            return .regex(BSONRegularExpression(pattern: pattern, options: options))
        case 0x0C:
            let collection = try readString(end: end)
            return .dbPointer(collection: collection, id: try readObjectID(end: end))
        case 0x0D: return .code(try readString(end: end))
        case 0x0E: return .symbol(try readString(end: end))
        case 0x0F:
            let start = offset
            let total = Int(try readInteger(Int32.self, end: end))
            guard total >= 14, total <= end - start else { throw fail("code_w_scope length \(total) out of range") }
            let scopeEnd = start + total
            let code = try readString(end: scopeEnd)
            let scope = try readNested(end: scopeEnd) { (r: inout BSONReader) throws(BSONError) in try r.readDocument(depth: depth + 1) }
            guard offset == scopeEnd else { throw fail("code_w_scope length \(total) does not match its contents") }
            return .codeWithScope(code: code, scope: scope)
        case 0x10: return .int32(try readInteger(Int32.self, end: end))
        case 0x11:
            let increment = try readInteger(UInt32.self, end: end)
            let seconds = try readInteger(UInt32.self, end: end)
            return .timestamp(BSONTimestamp(seconds: seconds, increment: increment))
        case 0x12: return .int64(try readInteger(Int64.self, end: end))
        case 0x13:
            let low = try readInteger(UInt64.self, end: end)
            let high = try readInteger(UInt64.self, end: end)
            return .decimal128(BSONDecimal128(high: high, low: low))
        case 0xFF: return .minKey
        case 0x7F: return .maxKey
        default:
            throw fail("unknown BSON type 0x\(String(type, radix: 16))")
        }
    }

    /// Reads a nested document that must not run past the enclosing one.
    private mutating func readNested<T>(end: Int, _ body: (inout BSONReader) throws(BSONError) -> T) throws(BSONError) -> T {
        guard end - offset >= 4 else { throw fail("truncated nested document") }
        let length = Int(raw.loadUnaligned(fromByteOffset: offset, as: Int32.self).littleEndian)
        guard length >= 5, length <= end - offset else { throw fail("nested length \(length) exceeds the enclosing document") }
        return try body(&self)
    }

    private mutating func readObjectID(end: Int) throws(BSONError) -> BSONObjectID {
        guard end - offset >= 12 else { throw fail("truncated ObjectId") }
        let high = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        let low = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self))
        offset += 12
        return BSONObjectID(high: high, low: low)
    }
}
