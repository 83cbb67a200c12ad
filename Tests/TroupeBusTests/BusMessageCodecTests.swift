import Testing
import TroupeCore
@testable import TroupeBus

@Suite("Stored form of bus messages")
struct BusMessageCodecTests {
    static let samples: [BusMessage] = [
        BusMessage(id: "0190abcdef12345678abcdef", topic: "orders", tag: "completed", keys: ["o-1", "ünï"], properties: ["traceparent": "00-ab-cd-01", "": "empty name"],
                   body: Array("{\"order\":\"o-1\"}".utf8), shardingKey: "sku-9", queue: 7, bornAtMS: 1_800_000_000_123, reconsumeTimes: 3,
                   producerGroup: "shop", originalTopic: "orders-original"),
        BusMessage(id: "x", topic: "t", body: [], bornAtMS: -1),
        BusMessage(id: "", topic: "t", keys: [], body: Array(repeating: 0xFF, count: 5_000), queue: 0, bornAtMS: 0, reconsumeTimes: Int.max),
    ]

    @Test("messages survive the packed form exactly, and the older Codable form still decodes")
    func roundTrip() throws {
        for message in Self.samples {
            let packed = BusMessageCodec.encode(message)
            #expect(packed.first == BusMessageCodec.packedV1)
            #expect(try BusMessageCodec.decode(packed) == message)
            #expect(try BusMessageCodec.decode(BinaryEncoder().encode(message)) == message)
        }
        // Properties are written in name order: equal messages give equal bytes.
        #expect(BusMessageCodec.encode(Self.samples[0]) == BusMessageCodec.encode(Self.samples[0]))
    }

    @Test("the id is read from the packed form without decoding it, on any input")
    func idProbe() {
        for message in Self.samples {
            let packed = BusMessageCodec.encode(message)
            #expect(BusMessageCodec.hasID(Array(message.id.utf8), packed))
            #expect(!BusMessageCodec.hasID(Array((message.id + "z").utf8), packed))
            for length in 0..<min(packed.count, 40) { _ = BusMessageCodec.hasID(Array(message.id.utf8), packed.prefix(length)) }
        }
        #expect(!BusMessageCodec.hasID(Array("0190abcdef12345678abcdef".utf8), [UInt8](repeating: 0xFF, count: 64)))
        #expect(!BusMessageCodec.hasID([], [BusMessageCodec.packedV1] + [UInt8](repeating: 0x80, count: 20)), "an endless varint is refused")
    }

    @Test("truncated, extended and corrupted entries throw instead of trapping")
    func hostile() {
        let packed = BusMessageCodec.encode(Self.samples[0])
        for length in 0..<packed.count {
            #expect(throws: (any Error).self) { try BusMessageCodec.decode(Array(packed.prefix(length))) }
        }
        #expect(throws: (any Error).self) { try BusMessageCodec.decode(packed + [0]) }
        var huge = [BusMessageCodec.packedV1, 0x01, UInt8(ascii: "i"), 0x01, UInt8(ascii: "t"), 0x00]
        huge += [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]  // a key count of 2^64 - 1
        #expect(throws: (any Error).self) { try BusMessageCodec.decode(huge) }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            var bytes = packed
            for _ in 0..<3 { bytes[Int.random(in: 1..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            _ = try? BusMessageCodec.decode(bytes)  // must return or throw, never trap
        }
    }
}
