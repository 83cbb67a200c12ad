import NIOCore

/// Splits the inbound byte stream into length-prefixed frames and decodes each into a ``WireEnvelope``.
///
/// The length is checked against ``maxFrameSize`` before any body byte is buffered for it, so an
/// oversized or hostile length closes the connection without allocating.
struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    typealias InboundOut = WireEnvelope

    let maxFrameSize: Int

    mutating func decode(buffer: inout ByteBuffer) throws -> WireEnvelope? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length > 0 else { throw WireDecodingError(reason: "empty frame") }
        guard Int(length) <= maxFrameSize else {
            throw WireDecodingError(reason: "frame of \(length) bytes exceeds the limit of \(maxFrameSize)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        guard var body = buffer.readSlice(length: Int(length)) else { return nil }  // checked just above
        return try WireEnvelope.decode(body: &body)
    }

    mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> WireEnvelope? {
        try decode(buffer: &buffer)
    }
}
