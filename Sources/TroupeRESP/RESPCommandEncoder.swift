import NIOCore

/// One argument of a Redis command; anything with a canonical byte form.
public protocol RESPArgument: Sendable {
    /// Appends the argument as a RESP bulk string (`$len\r\nbytes\r\n`).
    func writeBulk(into buffer: inout ByteBuffer)
}

extension String: RESPArgument {
    @inlinable
    public func writeBulk(into buffer: inout ByteBuffer) {
        buffer.writeBulkHeader(utf8.count)
        buffer.writeString(self)
        buffer.writeCRLF()
    }
}

extension Substring: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }
}

extension ByteBuffer: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) {
        buffer.writeBulkHeader(readableBytes)
        buffer.writeImmutableBuffer(self)
        buffer.writeCRLF()
    }
}

extension Array: RESPArgument where Element == UInt8 {
    public func writeBulk(into buffer: inout ByteBuffer) {
        buffer.writeBulkHeader(count)
        buffer.writeBytes(self)
        buffer.writeCRLF()
    }
}

extension Int: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }
}

extension Int64: RESPArgument {
    public func writeBulk(into buffer: inout ByteBuffer) { String(self).writeBulk(into: &buffer) }
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
    public static func encode(_ arguments: [any RESPArgument], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "*"))
        buffer.writeDecimal(arguments.count)
        buffer.writeCRLF()
        for argument in arguments { argument.writeBulk(into: &buffer) }
    }
}
