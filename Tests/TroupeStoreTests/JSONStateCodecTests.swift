import Foundation
import Testing
import TroupeActors
@testable import TroupeActorsStore

@Suite("JSON state codec")
struct JSONStateCodecTests {
    enum Mood: String, Codable, Equatable { case calm, quoted = "in \"quotes\"" }

    struct Inner: Codable, Equatable {
        var when: Date
        var tags: Set<String>
        var ratio: Double?
    }

    struct State: Codable, Equatable {
        var name: String
        var count: Int
        var big: UInt64
        var negative: Int64
        var ratio: Double
        var small: Float
        var flag: Bool
        var nothing: Int?
        var bytes: [UInt8]
        var blob: Data
        var mood: Mood
        var byName: [String: Int]
        var byNumber: [Int: String]
        var nested: [Inner]
        var text: String
    }

    static let sample = State(
        name: "Zoë / 東京", count: -42, big: .max, negative: .min, ratio: 0.1, small: 1.5, flag: true, nothing: nil,
        bytes: [0, 7, 255], blob: Data([1, 2, 3, 250]), mood: .calm, byName: ["b": 2, "a": 1, "": 0], byNumber: [3: "three", -1: "minus"],
        nested: [Inner(when: Date(timeIntervalSince1970: 1_733_300_000.125), tags: ["x"], ratio: 1e-5),
                 Inner(when: Date(timeIntervalSince1970: -1.5), tags: [], ratio: nil)],
        text: "line\nbreak\t\"quoted\" back\\slash \u{01} end")

    /// Foundation's encoder with the codec's settings: what the codec's output must equal once parsed.
    static func foundation<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        return try encoder.encode(value)
    }

    @Test("the codec writes what JSONEncoder writes (parsed, equal), and it decodes back to the value")
    func sameAsFoundation() throws {
        let codec = JSONStateCodec()
        let ours = try codec.encode(Self.sample)
        let theirs = try Self.foundation(Self.sample)
        let parsedOurs = try JSONSerialization.jsonObject(with: Data(ours)) as? NSDictionary
        let parsedTheirs = try JSONSerialization.jsonObject(with: theirs) as? NSDictionary
        #expect(parsedOurs != nil && parsedOurs == parsedTheirs, "\(String(decoding: ours, as: UTF8.self))\n\(String(decoding: theirs, as: UTF8.self))")
        let state = VersionedState(bytes: ours, version: 1, encoding: .json)
        let decoded = try codec.decode(State.self, from: state)
        #expect(decoded == Self.sample, "\(decoded)\n\(Self.sample)")
        // Keys sorted, slashes unescaped, control characters escaped.
        let text = String(decoding: ours, as: UTF8.self)
        #expect(text.hasPrefix(#"{"big":18446744073709551615,"blob":"AQID+g==","byName":{"":0,"a":1,"b":2}"#), "\(text)")
        #expect(text.contains(#""name":"Zoë / 東京""#) && text.contains(#"\u0001"#))
    }

    @Test("dates are ISO 8601 in UTC with milliseconds as Foundation's format writes them, and read back to the millisecond")
    func dates() throws {
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var generator = SystemRandomNumberGenerator()
        // Whole milliseconds, 1583–2200: the text reads back to the same millisecond, and it is Foundation's text —
        // or one millisecond past it, where Foundation truncates a Double a hair below the millisecond (and so
        // reads back a millisecond early).
        var instants: [Int64] = [0, -1, -1_000, 951_782_400_000, 4_107_542_400_000, -12_212_553_600_000]
        for _ in 0..<2_000 { instants.append(Int64.random(in: -12_212_553_600_000...7_258_118_400_000, using: &generator)) }
        for milliseconds in instants {
            let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
            let ours = JSONText.iso8601(milliseconds: date), foundations = date.formatted(style)
            let back = try Date(ours, strategy: style), theirs = try Date(foundations, strategy: style)
            #expect(abs(back.timeIntervalSince(date)) < 0.0001, "\(milliseconds) ms → \(ours)")
            #expect(ours == foundations || abs(back.timeIntervalSince(theirs) - 0.001) < 0.0005, "\(milliseconds) ms: \(ours), Foundation \(foundations)")
        }
        // Any instant from year 1 to 9999 reads back within a millisecond (before the Gregorian calendar's
        // start in 1582 Foundation writes and reads Julian dates: the codec writes those with Foundation's format).
        for _ in 0..<2_000 {
            let date = Date(timeIntervalSince1970: Double.random(in: -62_135_596_800...253_402_300_799, using: &generator))
            let text = JSONText.iso8601(milliseconds: date)
            let back = try Date(text, strategy: style)
            #expect(abs(back.timeIntervalSince(date)) < 0.001, "\(date.timeIntervalSince1970) → \(text) → \(back.timeIntervalSince1970)")
        }
    }

    @Test("a number JSON cannot hold is refused")
    func nonFinite() {
        #expect(throws: EncodingError.self) { _ = try JSONStateCodec().encode(["x": Double.infinity]) }
        #expect(throws: EncodingError.self) { _ = try JSONStateCodec().encode([Double.nan]) }
    }
}
