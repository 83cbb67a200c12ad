public import NIOCore

/// One argument of a Redis command; anything with a canonical byte form.
public protocol RESPArgument: Sendable {
    /// Appends the argument as a RESP bulk string (`$len\r\nbytes\r\n`).
    func writeBulk(into buffer: inout ByteBuffer)

    /// The number of bytes ``copyRESPBytes(to:)`` writes, or nil when the argument has no such fast
    /// path (then the encoder uses ``writeBulk(into:)``). The default is nil.
    var respByteCount: Int? { get }

    /// Copies the argument's bytes (exactly ``respByteCount`` of them) to `destination`.
    func copyRESPBytes(to destination: UnsafeMutableRawPointer)
}

extension RESPArgument {
    public var respByteCount: Int? { nil }
    public func copyRESPBytes(to destination: UnsafeMutableRawPointer) {}
}

extension String: RESPArgument {
    @inlinable
    public func writeBulk(into buffer: inout ByteBuffer) {
        buffer.writeBulkHeader(utf8.count)
        buffer.writeString(self)
        buffer.writeCRLF()
    }

    public var respByteCount: Int? { utf8.count }

    public func copyRESPBytes(to destination: UnsafeMutableRawPointer) {
        var text = self
        text.withUTF8 { bytes in
            if let base = bytes.baseAddress { destination.copyMemory(from: base, byteCount: bytes.count) }
        }
    }
}

extension Substring: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }

    public var respByteCount: Int? { utf8.count }

    public func copyRESPBytes(to destination: UnsafeMutableRawPointer) {
        var text = self
        text.withUTF8 { bytes in
            if let base = bytes.baseAddress { destination.copyMemory(from: base, byteCount: bytes.count) }
        }
    }
}

extension ByteBuffer: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) {
        buffer.writeBulkHeader(readableBytes)
        buffer.writeImmutableBuffer(self)
        buffer.writeCRLF()
    }

    public var respByteCount: Int? { readableBytes }

    public func copyRESPBytes(to destination: UnsafeMutableRawPointer) {
        withUnsafeReadableBytes { bytes in
            if let base = bytes.baseAddress { destination.copyMemory(from: base, byteCount: bytes.count) }
        }
    }
}

extension Array: RESPArgument where Element == UInt8 {
    public func writeBulk(into buffer: inout ByteBuffer) {
        buffer.writeBulkHeader(count)
        buffer.writeBytes(self)
        buffer.writeCRLF()
    }

    public var respByteCount: Int? { count }

    public func copyRESPBytes(to destination: UnsafeMutableRawPointer) {
        withUnsafeBytes { bytes in
            if let base = bytes.baseAddress { destination.copyMemory(from: base, byteCount: bytes.count) }
        }
    }
}

extension Int: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }
    public var respByteCount: Int? { RESPCommandEncoder.decimalLength(self) }
    public func copyRESPBytes(to destination: UnsafeMutableRawPointer) { _ = RESPCommandEncoder.putDecimal(self, at: destination) }
}

extension Int64: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }
    public var respByteCount: Int? { RESPCommandEncoder.decimalLength(Int(self)) }
    public func copyRESPBytes(to destination: UnsafeMutableRawPointer) { _ = RESPCommandEncoder.putDecimal(Int(self), at: destination) }
}

extension UInt64: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }
}

extension Double: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) {
        let text: String
        if self == .infinity {
            text = "+inf"
        } else if self == -.infinity {
            text = "-inf"
        } else {
            text = String(self)
        }
        text.writeBulk(into: &buffer)
    }
}

extension ByteBuffer {
    @inlinable
    mutating func writeBulkHeader(_ length: Int) {
        writeInteger(UInt8(ascii: "$"))
        writeDecimal(length)
        writeCRLF()
    }

    @inlinable
    mutating func writeCRLF() {
        writeInteger(UInt16(0x0D0A))
    }

    @inlinable
    mutating func writeDecimal(_ value: Int) {
        if value < 10, value >= 0 {
            writeInteger(UInt8(48 + value))
        } else {
            writeString(String(value))
        }
    }
}

/// Encodes commands as RESP arrays of bulk strings, the form every Redis server accepts.
public enum RESPCommandEncoder {
    /// Appends `*N\r\n` followed by each argument as a bulk string.
    ///
    /// When every argument knows its byte count (strings, byte arrays and buffers, integers) the command is
    /// measured first and written with one raw copy per argument into space reserved once; otherwise
    /// argument by argument through ``RESPArgument/writeBulk(into:)``.
    public static func encode(_ arguments: [any RESPArgument], into buffer: inout ByteBuffer) {
        // Elements are used in place (by index): iterating would copy every existential out of the array.
        var total = 1 + decimalLength(arguments.count) + 2
        for index in arguments.indices {
            guard let count = arguments[index].respByteCount else { return encodeEach(arguments, into: &buffer) }
            total += 1 + decimalLength(count) + 2 + count + 2
        }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { raw in
            var cursor = raw.baseAddress!
            cursor.storeBytes(of: UInt8(ascii: "*"), as: UInt8.self)
            cursor = putCRLF(at: putDecimal(arguments.count, at: cursor + 1))
            for index in arguments.indices {
                let count = arguments[index].respByteCount ?? 0
                cursor.storeBytes(of: UInt8(ascii: "$"), as: UInt8.self)
                cursor = putCRLF(at: putDecimal(count, at: cursor + 1))
                arguments[index].copyRESPBytes(to: cursor)
                cursor = putCRLF(at: cursor + count)
            }
            return cursor - raw.baseAddress!
        }
    }

    static func encodeEach(_ arguments: [any RESPArgument], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "*"))
        buffer.writeDecimal(arguments.count)
        buffer.writeCRLF()
        for argument in arguments { argument.writeBulk(into: &buffer) }
    }

    /// Characters of `value` in decimal, sign included.
    @usableFromInline
    static func decimalLength(_ value: Int) -> Int {
        var magnitude = value.magnitude
        var digits = 1
        while magnitude >= 10 {
            magnitude /= 10
            digits += 1
        }
        return value < 0 ? digits + 1 : digits
    }

    /// Writes `value` in decimal at `destination`; returns the position after it.
    @usableFromInline
    static func putDecimal(_ value: Int, at destination: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        let length = decimalLength(value)
        var magnitude = value.magnitude
        var position = destination + length
        repeat {
            position -= 1
            position.storeBytes(of: UInt8(ascii: "0") + UInt8(magnitude % 10), as: UInt8.self)
            magnitude /= 10
        } while magnitude > 0
        if value < 0 { destination.storeBytes(of: UInt8(ascii: "-"), as: UInt8.self) }
        return destination + length
    }

    static func putCRLF(at destination: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        destination.storeBytes(of: UInt8(ascii: "\r"), as: UInt8.self)
        (destination + 1).storeBytes(of: UInt8(ascii: "\n"), as: UInt8.self)
        return destination + 2
    }
}
