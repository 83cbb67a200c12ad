import TroupeCore

/// The stored form of a ``BusMessage`` in the Redis Streams engine: one version byte, then every field
/// in a fixed order (varint lengths and counts, UTF-8 strings, raw body bytes).
///
/// Encoding a message through the generic `Codable` binary encoder built a value tree per message
/// (about a sixth of the client's CPU in `troupe bench bus`). Entries written in that older form start
/// with a map tag and still decode.
enum BusMessageCodec {
    /// First byte of the packed form (version 1); the tree form starts with its map tag (0x0A).
    static let packedV1: UInt8 = 0xB1

    static func encode(_ message: BusMessage) -> [UInt8] {
        var writer = BinaryWriter(capacity: message.body.count + 96)
        writer.bytes.append(packedV1)
        writer.writeRawString(message.id)
        writer.writeRawString(message.topic)
        writeOptional(message.tag, into: &writer)
        writer.writeVarint(UInt64(message.keys.count))
        for key in message.keys { writer.writeRawString(key) }
        writer.writeVarint(UInt64(message.properties.count))
        for (name, value) in message.properties.sorted(by: { $0.key < $1.key }) {
            writer.writeRawString(name)
            writer.writeRawString(value)
        }
        writer.writeVarint(UInt64(message.body.count))
        writer.bytes.append(contentsOf: message.body)
        writeOptional(message.shardingKey, into: &writer)
        writer.writeVarint(UInt64(bitPattern: Int64(message.queue)))
        writer.writeVarint(UInt64(bitPattern: message.bornAtMS))
        writer.writeVarint(UInt64(bitPattern: Int64(message.reconsumeTimes)))
        writeOptional(message.producerGroup, into: &writer)
        writeOptional(message.originalTopic, into: &writer)
        return writer.bytes
    }

    /// Whether `bytes` hold the packed form of a message with id `id`, read without decoding the rest.
    static func hasID(_ id: [UInt8], _ bytes: some Collection<UInt8>) -> Bool {
        var iterator = bytes.makeIterator()
        guard iterator.next() == packedV1 else { return false }
        var length = 0, shift = 0
        while let byte = iterator.next() {
            guard shift < 63 else { return false }
            length |= Int(byte & 0x7F) << shift
            shift += 7
            if byte & 0x80 == 0 { break }
        }
        guard length == id.count else { return false }
        for expected in id {
            guard iterator.next() == expected else { return false }
        }
        return true
    }

    /// Decodes either form; throws on anything malformed (never traps).
    static func decode(_ bytes: [UInt8]) throws -> BusMessage {
        guard bytes.first == packedV1 else { return try BinaryDecoder().decode(BusMessage.self, from: bytes) }
        var reader = BinaryReader(bytes)
        _ = try reader.readByte()
        let id = try reader.readRawString()
        let topic = try reader.readRawString()
        let tag = try readOptional(&reader)
        var keys: [String] = []
        for _ in 0..<(try count(&reader)) { keys.append(try reader.readRawString()) }
        var properties: [String: String] = [:]
        for _ in 0..<(try count(&reader)) {
            let name = try reader.readRawString()
            properties[name] = try reader.readRawString()
        }
        let body = Array(try reader.readRawBytes(count: try count(&reader)))
        let shardingKey = try readOptional(&reader)
        let queue = try int(&reader)
        let bornAtMS = Int64(bitPattern: try reader.readVarint())
        let reconsumeTimes = try int(&reader)
        let producerGroup = try readOptional(&reader)
        let originalTopic = try readOptional(&reader)
        guard reader.remaining == 0 else { throw BinaryCodingError(.trailingBytes) }
        return BusMessage(id: id, topic: topic, tag: tag, keys: keys, properties: properties, body: body, shardingKey: shardingKey,
                          queue: queue, bornAtMS: bornAtMS, reconsumeTimes: reconsumeTimes, producerGroup: producerGroup,
                          originalTopic: originalTopic)
    }

    private static func writeOptional(_ value: String?, into writer: inout BinaryWriter) {
        guard let value else { return writer.bytes.append(0) }
        writer.bytes.append(1)
        writer.writeRawString(value)
    }

    private static func readOptional(_ reader: inout BinaryReader) throws -> String? {
        switch try reader.readByte() {
        case 0: return nil
        case 1: return try reader.readRawString()
        case let flag: throw BinaryCodingError(.unknownTag(flag), path: "optional flag")
        }
    }

    /// A count or length: never more than the bytes left (each item takes at least one).
    private static func count(_ reader: inout BinaryReader) throws -> Int {
        let raw = try reader.readVarint()
        guard raw <= UInt64(reader.remaining) else { throw BinaryCodingError(.tooLarge) }
        return Int(raw)
    }

    private static func int(_ reader: inout BinaryReader) throws -> Int {
        let value = Int64(bitPattern: try reader.readVarint())
        guard let int = Int(exactly: value) else { throw BinaryCodingError(.numberOutOfRange) }
        return int
    }
}
