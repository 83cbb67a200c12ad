import Foundation
import Testing
import TroupeBSON

@Suite("BSON documents, Codable and hostile input")
struct BSONDocumentTests {
    struct Address: Codable, Equatable {
        var city: String
        var zip: String?
    }

    struct Order: Codable, Equatable {
        var _id: BSONObjectID
        var user: String
        var total: Int
        var price: Double
        var tags: [String]
        var address: Address
        var created: Date
        var ref: UUID
        var blob: Data
        var optional: Int?
        var small: Int32
        var nested: [[Int]]
        var dict: [String: Bool]
    }

    @Test("a Codable struct round-trips through bytes with native BSON types")
    func codableRoundTrip() throws {
        let order = Order(
            _id: BSONObjectID(), user: "ann", total: 1 << 40, price: 9.5, tags: ["a", "b"],
            address: Address(city: "Oslo", zip: nil), created: Date(timeIntervalSince1970: 1_700_000_000.123),
            ref: UUID(), blob: Data([1, 2, 3]), optional: nil, small: 7, nested: [[1], [2, 3]], dict: ["x": true])
        let doc = try BSONEncoder().encode(order)
        #expect(doc.keys.first == "_id")
        #expect(doc["_id"]?.objectIDValue == order._id)
        #expect(doc["total"] == .int64(1 << 40))
        #expect(doc["small"] == .int32(7))
        #expect(doc["created"] == .datetime(1_700_000_000_123))
        #expect(doc["ref"]?.binaryValue?.subtype == BSONBinary.uuid)
        #expect(doc["optional"] == nil)
        let reparsed = try BSONDocument(bytes: doc.bytes)
        #expect(reparsed == doc)
        let decoded = try BSONDecoder().decode(Order.self, from: reparsed)
        #expect(decoded == order)
    }

    @Test("numbers convert between BSON numeric types only when exact")
    func numericConversion() throws {
        struct N: Codable { var a: Int; var b: Double; var c: Int32 }
        let ok = try BSONDecoder().decode(N.self, from: ["a": .double(3), "b": .int32(2), "c": .int64(5)])
        #expect(ok.a == 3 && ok.b == 2 && ok.c == 5)
        #expect(throws: BSONError.self) { try BSONDecoder().decode(N.self, from: ["a": .double(3.5), "b": 1, "c": 1]) }
        #expect(throws: BSONError.self) { try BSONDecoder().decode(N.self, from: ["a": 1, "b": 1, "c": .int64(1 << 40)]) }
        let missing = #expect(throws: BSONError.self) { try BSONDecoder().decode(N.self, from: ["a": 1, "b": 1]) }
        #expect(missing?.kind == .keyNotFound)
        #expect(missing?.message.contains("\"c\"") == true)
    }

    @Test("documents keep key order; subscripts replace in place and remove")
    func documentOrder() {
        var doc: BSONDocument = ["insert": "c", "documents": [], "ordered": true]
        doc["ordered"] = false
        doc["$db"] = "test"
        doc["documents"] = nil
        #expect(doc.keys == ["insert", "ordered", "$db"])
        let nested: BSONDocument = ["a": ["b": [1, ["c": "x"]]]]
        #expect(nested.value(atPath: "a.b.1.c") == "x")
        #expect(nested.value(atPath: "a.z") == nil)
    }

    @Test("1,000-deep nesting is rejected with a clear error")
    func deepNesting() throws {
        var value: BSONValue = .int32(1)
        for _ in 0..<1000 { value = .document(["a": value]) }
        guard case .document(let doc) = value else { return }
        let bytes = doc.bytes
        let error = #expect(throws: BSONError.self) { try BSONDocument(bytes: bytes) }
        #expect(error?.kind == .nestingTooDeep)
        let json = String(repeating: "{\"a\":", count: 1000) + "1" + String(repeating: "}", count: 1000)
        #expect(throws: BSONError.self) { try BSONDocument(extendedJSON: json) }
    }

    @Test("binary subtype 2 with a declared length below its own inner length field is an error, not a trap",
          arguments: [-1, 0, 1, 2, 3] as [Int32])
    func oldBinaryShortLength(length: Int32) throws {
        // {"": binary(subtype 2, length L)} followed by an inner length of L - 4 (negative for L < 4): found by fuzzing.
        var element: [UInt8] = [0x05, 0x00]
        element += withUnsafeBytes(of: length.littleEndian, Array.init)
        element.append(0x02)
        element += withUnsafeBytes(of: (length &- 4).littleEndian, Array.init)
        element.append(0x00)  // the document's terminator
        let total = Int32(4 + element.count)
        let bytes = withUnsafeBytes(of: total.littleEndian, Array.init) + element
        let error = #expect(throws: BSONError.self) { try BSONDocument(bytes: bytes) }
        #expect(error != nil)
        // Through the Codable decoder as well.
        #expect(throws: BSONError.self) { try BSONDecoder().decode([String: Int].self, from: BSONDocument(bytes: bytes)) }
        // A well-formed subtype 2 value still decodes.
        let good: BSONDocument = ["b": .binary(BSONBinary(subtype: 0x02, data: [1, 2, 3]))]
        #expect(try BSONDocument(bytes: good.bytes) == good)
    }

    @Test("a document length of 2^31-1 and truncated bytes are rejected before allocation")
    func hostileLengths() throws {
        let huge: [UInt8] = [0xFF, 0xFF, 0xFF, 0x7F, 0x00]
        let error = #expect(throws: BSONError.self) { try BSONDocument(bytes: huge) }
        #expect(error?.kind == .documentTooLarge)
        let doc: BSONDocument = ["s": "hello", "n": 1]
        let bytes = doc.bytes
        for cut in 0..<bytes.count {
            #expect(throws: BSONError.self) { try BSONDocument(bytes: bytes[0..<cut]) }
        }
        // Random garbage never traps.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var garbage = bytes
            garbage[Int.random(in: 0..<garbage.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            _ = try? BSONDocument(bytes: garbage)
        }
    }

    @Test("Extended JSON: relaxed dates and numbers, ObjectId and Decimal128 text")
    func extendedJSON() throws {
        let doc = try BSONDocument(extendedJSON: #"{"n": 1, "big": 5000000000, "d": 1.5, "t": {"$date": "2024-02-29T12:00:00.250+01:00"}, "x": {"$numberDecimal": "1.10"}}"#)
        #expect(doc["n"] == .int32(1))
        #expect(doc["big"] == .int64(5_000_000_000))
        #expect(doc["d"] == .double(1.5))
        #expect(doc["t"] == .datetime(1_709_204_400_250))
        #expect(doc["x"].map { "\($0)" } != nil)
        #expect(doc.extendedJSON(.relaxed) == #"{"n":1,"big":5000000000,"d":1.5,"t":{"$date":"2024-02-29T11:00:00.250Z"},"x":{"$numberDecimal":"1.10"}}"#)
        #expect(try BSONDecimal128("-12.345E+3").description == "-12345")
        #expect(try BSONDecimal128("1.5E+40").description == "1.5E+40")
        let oid = BSONObjectID()
        #expect(BSONObjectID(hex: oid.hex) == oid)
        #expect(BSONObjectID(hex: "zz") == nil)
    }
}
