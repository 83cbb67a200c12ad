import Testing
import TroupeCore
import TroupeTestSupport

struct Address: Codable, Equatable {
    var street: String
    var zip: Int?
}

struct Person: Codable, Equatable {
    enum Role: String, Codable { case admin, member }
    var name: String
    var age: UInt8
    var balance: Int64
    var ratio: Double
    var tags: [String]
    var role: Role
    var address: Address?
    var scores: [String: Int]
    var blob: [UInt8]
    var nested: [[Int]]
}

@Suite("Binary codec")
struct BinaryCodecTests {
    let sample = Person(
        name: "Zoë", age: 42, balance: -9_000_000_000, ratio: 0.25, tags: ["a", "", "ç"], role: .admin,
        address: Address(street: "Main", zip: nil), scores: ["x": 1, "y": -1], blob: [0, 255, 7], nested: [[1], [], [2, 3]]
    )

    @Test("round-trips a nested Codable value")
    func roundTrip() throws {
        let bytes = try BinaryEncoder().encode(sample)
        #expect(try BinaryDecoder().decode(Person.self, from: bytes) == sample)
    }

    @Test("round-trips primitives and collections", arguments: [
        [1, -2, 300_000], [], [Int.min, Int.max, 0],
    ])
    func integers(values: [Int]) throws {
        let bytes = try BinaryEncoder().encode(values)
        #expect(try BinaryDecoder().decode([Int].self, from: bytes) == values)
    }

    @Test("small integers take one or two bytes")
    func compact() throws {
        #expect(try BinaryEncoder().encode(5) == [0x03, 10])
        #expect(try BinaryEncoder().encode(-1) == [0x03, 1])
        #expect(try BinaryEncoder().encode(UInt64(300)) == [0x04, 0xAC, 0x02])
        #expect(try BinaryEncoder().encode("hi") == [0x07, 2, 0x68, 0x69])
        #expect(try BinaryEncoder().encode(true) == [0x02])
    }

    @Test("optionals, missing keys and unknown keys")
    func evolution() throws {
        struct V1: Codable { var a: Int; var extra: String }
        struct V2: Codable, Equatable { var a: Int; var added: Int? }
        let bytes = try BinaryEncoder().encode(V1(a: 3, extra: "ignored"))
        #expect(try BinaryDecoder().decode(V2.self, from: bytes) == V2(a: 3, added: nil))
    }

    @Test("out-of-range numbers and type mismatches throw")
    func mismatches() throws {
        let big = try BinaryEncoder().encode(300)
        #expect(throws: BinaryCodingError.self) { try BinaryDecoder().decode(UInt8.self, from: big) }
        let text = try BinaryEncoder().encode("x")
        #expect(throws: BinaryCodingError.self) { try BinaryDecoder().decode(Int.self, from: text) }
        struct Needs: Codable { var required: Int }
        let empty = try BinaryEncoder().encode([String: Int]())
        #expect(throws: BinaryCodingError.self) { try BinaryDecoder().decode(Needs.self, from: empty) }
    }

    @Test("hostile input throws instead of trapping or allocating", arguments: [
        [UInt8](),                                    // empty
        [0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],          // array claiming 4 billion elements
        [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],  // bytes with a huge length
        [0x07, 0x02, 0xC3, 0x28],                     // invalid UTF-8
        [0x03, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],  // 11-byte varint
        [0x0B],                                       // unknown tag
        [0x02, 0x00],                                 // trailing byte
        [0x05, 0x00, 0x00],                           // truncated double
    ])
    func hostile(bytes: [UInt8]) {
        #expect(throws: BinaryCodingError.self) { try BinaryReader.readValue(from: bytes) }
    }

    @Test("nesting deeper than the limit throws")
    func depth() {
        var deep: [UInt8] = []
        for _ in 0..<200 { deep += [0x0A, 0x01, 0x01, 0x6B] }  // maps of one entry "k"
        deep.append(0x00)
        var bytes: [UInt8] = []
        for _ in 0..<100 { bytes += [0x09, 0x01] }
        bytes.append(0x00)
        #expect(throws: BinaryCodingError.self) { try BinaryReader.readValue(from: bytes, limits: BinaryDecodingLimits(maxDepth: 64)) }
        #expect(throws: BinaryCodingError.self) { try BinaryReader.readValue(from: deep) }
    }

    @Test("random bytes never trap", arguments: 0..<200)
    func fuzz(seed: Int) {
        var generator = SeededGenerator(seed: UInt64(seed))
        let bytes = generator.bytes(Int(generator.next() % 64))
        _ = try? BinaryDecoder().decode(Person.self, from: bytes)
        _ = try? BinaryReader.readValue(from: bytes)
    }
}
