import NIOCore
import Synchronization

/// The largest frame a connection accepts now: handshake-sized until the peer authenticated, then the
/// configured maximum. Shared by a connection's decoder and its handler.
final class FrameLimit: Sendable {
    /// Hello, challenge, auth or refusal: names and host are at most 255 bytes each, so 1 KiB is ample.
    static let handshake = 1024

    private let current: Atomic<Int>
    private let authenticated: Int

    init(authenticated: Int) {
        self.current = Atomic(min(Self.handshake, authenticated))
        self.authenticated = authenticated
    }

    var value: Int { current.load(ordering: .relaxed) }

    /// The peer proved it knows the cluster's secret: full-size frames from now on.
    func raise() { current.store(authenticated, ordering: .relaxed) }

    var isRaised: Bool { value == authenticated }
}

/// Splits the inbound byte stream into length-prefixed frames and decodes each into a ``WireEnvelope``.
///
/// The length is checked against the connection's ``FrameLimit`` before any body byte is buffered for it, so
/// an oversized or hostile length closes the connection without allocating — and before the handshake only
/// handshake-sized frames are accepted, so an unauthenticated peer cannot make the node buffer megabytes.
struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    typealias InboundOut = WireEnvelope

    let limit: FrameLimit

    init(limit: FrameLimit) {
        self.limit = limit
    }

    init(maxFrameSize: Int) {
        self.limit = FrameLimit(authenticated: maxFrameSize)
        limit.raise()
    }

    mutating func decode(buffer: inout ByteBuffer) throws -> WireEnvelope? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length > 0 else { throw WireDecodingError(reason: "empty frame") }
        guard Int(length) <= limit.value else {
            throw WireDecodingError(reason: limit.isRaised
                ? "frame of \(length) bytes exceeds the limit of \(limit.value)"
                : "frame of \(length) bytes before the handshake completed (at most \(limit.value))")
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
