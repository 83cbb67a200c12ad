import NIOCore
import TroupeBSON

/// An OP_MSG (opcode 2013): flag bits, one body section (kind 0) and any document sequences (kind 1).
struct MongoMessage: Sendable {
    static let opCode: Int32 = 2013
    static let headerSize = 16

    struct Flags: OptionSet, Sendable {
        let rawValue: UInt32
        static let checksumPresent = Flags(rawValue: 1 << 0)
        static let moreToCome = Flags(rawValue: 1 << 1)
        static let exhaustAllowed = Flags(rawValue: 1 << 16)
    }

    var requestID: Int32
    var responseTo: Int32
    var flags: Flags
    var body: BSONDocument
    /// Kind-1 sections: identifier (e.g. "documents") and its documents.
    var sequences: [(String, [BSONDocument])]

    init(requestID: Int32, responseTo: Int32 = 0, flags: Flags = [], body: BSONDocument, sequences: [(String, [BSONDocument])] = []) {
        self.requestID = requestID
        self.responseTo = responseTo
        self.flags = flags
        self.body = body
        self.sequences = sequences
    }

    /// Writes the whole message; the header length is reserved and patched.
    func write(into buffer: inout ByteBuffer) {
        let start = buffer.writerIndex
        buffer.writeInteger(Int32(0), endianness: .little)
        buffer.writeInteger(requestID, endianness: .little)
        buffer.writeInteger(responseTo, endianness: .little)
        buffer.writeInteger(Self.opCode, endianness: .little)
        buffer.writeInteger(flags.rawValue, endianness: .little)
        buffer.writeInteger(UInt8(0))
        buffer.writeBytes(body.bytes)
        for (identifier, documents) in sequences {
            buffer.writeInteger(UInt8(1))
            let sectionStart = buffer.writerIndex
            buffer.writeInteger(Int32(0), endianness: .little)
            buffer.writeBytes(identifier.utf8)
            buffer.writeInteger(UInt8(0))
            for document in documents { buffer.writeBytes(document.bytes) }
            buffer.setInteger(Int32(buffer.writerIndex - sectionStart), at: sectionStart, endianness: .little)
        }
        buffer.setInteger(Int32(buffer.writerIndex - start), at: start, endianness: .little)
    }

    /// Parses one complete message (`bytes` holds exactly the message, header included).
    static func parse(_ bytes: ByteBuffer, limits: BSONLimits) throws(MongoError) -> MongoMessage {
        func violation(_ message: String) -> MongoError { MongoError(.protocolViolation, message) }
        var buffer = bytes
        guard let length = buffer.readInteger(endianness: .little, as: Int32.self),
            let requestID = buffer.readInteger(endianness: .little, as: Int32.self),
            let responseTo = buffer.readInteger(endianness: .little, as: Int32.self),
            let opCode = buffer.readInteger(endianness: .little, as: Int32.self)
        else { throw violation("truncated message header") }
        guard Int(length) == bytes.readableBytes else { throw violation("message length \(length) does not match \(bytes.readableBytes) bytes") }
        guard opCode == Self.opCode else { throw violation("unsupported opcode \(opCode) (only OP_MSG is spoken)") }
        guard let rawFlags = buffer.readInteger(endianness: .little, as: UInt32.self) else { throw violation("truncated flag bits") }
        let flags = Flags(rawValue: rawFlags)
        // Required bits we do not understand (0-15 other than the two known) must fail the message.
        guard rawFlags & 0xFFFC & 0xFFFF == 0 else { throw violation("unknown required flag bits \(String(rawFlags, radix: 2))") }
        var end = buffer.readableBytes
        if flags.contains(.checksumPresent) {
            guard end >= 4 else { throw violation("checksum flag without a checksum") }
            end -= 4
        }
        var sectionBytes = buffer.readSlice(length: end)!
        var body: BSONDocument?
        var sequences: [(String, [BSONDocument])] = []
        while sectionBytes.readableBytes > 0 {
            let kind = sectionBytes.readInteger(as: UInt8.self)!
            switch kind {
            case 0:
                guard body == nil else { throw violation("two body sections") }
                body = try readDocument(&sectionBytes, limits: limits)
            case 1:
                guard let size = sectionBytes.readInteger(endianness: .little, as: Int32.self), size >= 5,
                    Int(size) - 4 <= sectionBytes.readableBytes, var section = sectionBytes.readSlice(length: Int(size) - 4)
                else { throw violation("document sequence length out of range") }
                guard let nul = section.readableBytesView.firstIndex(of: 0) else { throw violation("unterminated sequence identifier") }
                let identifier = section.readString(length: nul - section.readerIndex) ?? ""
                section.moveReaderIndex(forwardBy: 1)
                var documents = [BSONDocument]()
                while section.readableBytes > 0 { documents.append(try readDocument(&section, limits: limits)) }
                sequences.append((identifier, documents))
            default:
                throw violation("unknown section kind \(kind)")
            }
        }
        guard let body else { throw violation("message without a body section") }
        return MongoMessage(requestID: requestID, responseTo: responseTo, flags: flags, body: body, sequences: sequences)
    }

    private static func readDocument(_ buffer: inout ByteBuffer, limits: BSONLimits) throws(MongoError) -> BSONDocument {
        let result: Result<(BSONDocument, Int), BSONError> = buffer.withUnsafeReadableBytes { raw in
            do throws(BSONError) {
                return .success(try BSONDocument.read(from: raw, limits: limits))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let (document, used)):
            buffer.moveReaderIndex(forwardBy: used)
            return document
        case .failure(let error):
            throw MongoError(.protocolViolation, "malformed BSON from the server: \(error.message)", underlying: error)
        }
    }
}

/// Frames OP_MSG messages: the length is validated against the limit before any buffering.
struct MongoMessageDecoder: NIOSingleStepByteToMessageDecoder {
    typealias InboundOut = MongoMessage

    let maxMessageSize: Int
    let limits: BSONLimits

    init(maxMessageSize: Int = 48_000_000, limits: BSONLimits = .default) {
        self.maxMessageSize = maxMessageSize
        self.limits = limits
    }

    mutating func decode(buffer: inout ByteBuffer) throws -> MongoMessage? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: Int32.self) else { return nil }
        guard length >= Int32(MongoMessage.headerSize + 5) else {
            throw MongoError(.protocolViolation, "message length \(length) is below the minimum")
        }
        guard Int(length) <= maxMessageSize else {
            throw MongoError(.protocolViolation, "message length \(length) exceeds the limit \(maxMessageSize)")
        }
        guard let frame = buffer.readSlice(length: Int(length)) else { return nil }
        return try MongoMessage.parse(frame, limits: limits)
    }

    mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> MongoMessage? {
        if let message = try decode(buffer: &buffer) { return message }
        if buffer.readableBytes > 0 {
            throw MongoError(.protocolViolation, "connection closed inside a message (\(buffer.readableBytes) bytes of a truncated OP_MSG)")
        }
        return nil
    }
}
