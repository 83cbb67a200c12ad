import Foundation
import Testing
import TroupeBSON
import TroupeTestSupport

/// The BSON corpus of the MongoDB specifications: every valid case round-trips to the canonical bytes and the
/// canonical (and relaxed) Extended JSON; every decode error and parse error is rejected.
@Suite("BSON corpus")
struct BSONCorpusTests {
    struct Tally {
        var valid = 0
        var decodeErrors = 0
        var parseErrors = 0
        var failures: [String] = []
    }

    /// Compact form of expected Extended JSON text (key order and number text kept).
    static func normalized(_ text: String) throws -> String { try JSONValue(parsing: text).text }

    static func run(file: URL, into tally: inout Tally) throws {
        let spec = try SpecVectors.load(file)
        let name = file.lastPathComponent
        let isDecimal = (spec["bson_type"] as? String) == "0x13"
        for case let test as [String: Any] in spec["valid"] as? [Any] ?? [] {
            let description = "\(name): \(test["description"] as? String ?? "?")"
            do {
                let canonicalBytes = SpecVectors.bytes(hex: test["canonical_bson"] as! String)
                let canonicalJSON = try normalized(test["canonical_extjson"] as! String)
                let lossy = test["lossy"] as? Bool ?? false
                let doc = try BSONDocument(bytes: canonicalBytes)
                guard doc.bytes == canonicalBytes else { throw Mismatch("cB → native → bson differs") }
                guard ExtendedJSON.encode(doc, mode: .canonical) == canonicalJSON else {
                    throw Mismatch("cB → cEJ: \(ExtendedJSON.encode(doc, mode: .canonical)) ≠ \(canonicalJSON)")
                }
                if let relaxed = test["relaxed_extjson"] as? String {
                    let expected = try normalized(relaxed)
                    guard ExtendedJSON.encode(doc, mode: .relaxed) == expected else {
                        throw Mismatch("cB → rEJ: \(ExtendedJSON.encode(doc, mode: .relaxed)) ≠ \(expected)")
                    }
                    let fromRelaxed = try BSONDocument(extendedJSON: relaxed)
                    guard ExtendedJSON.encode(fromRelaxed, mode: .relaxed) == expected else { throw Mismatch("rEJ → native → rEJ differs") }
                }
                let fromJSON = try BSONDocument(extendedJSON: test["canonical_extjson"] as! String)
                if !lossy, fromJSON.bytes != canonicalBytes { throw Mismatch("cEJ → bson differs") }
                guard ExtendedJSON.encode(fromJSON, mode: .canonical) == canonicalJSON else { throw Mismatch("cEJ → cEJ differs") }
                if let degenerate = test["degenerate_bson"] as? String {
                    let fromDegenerate = try BSONDocument(bytes: SpecVectors.bytes(hex: degenerate))
                    guard fromDegenerate.bytes == canonicalBytes else { throw Mismatch("dB → bson differs") }
                    guard ExtendedJSON.encode(fromDegenerate, mode: .canonical) == canonicalJSON else { throw Mismatch("dB → cEJ differs") }
                }
                if let degenerate = test["degenerate_extjson"] as? String {
                    let fromDegenerate = try BSONDocument(extendedJSON: degenerate)
                    guard ExtendedJSON.encode(fromDegenerate, mode: .canonical) == canonicalJSON else {
                        throw Mismatch("dEJ → cEJ: \(ExtendedJSON.encode(fromDegenerate, mode: .canonical)) ≠ \(canonicalJSON)")
                    }
                    if !lossy, fromDegenerate.bytes != canonicalBytes { throw Mismatch("dEJ → bson differs") }
                }
                tally.valid += 1
            } catch {
                tally.failures.append("\(description): \(error)")
            }
        }
        for case let test as [String: Any] in spec["decodeErrors"] as? [Any] ?? [] {
            let bytes = SpecVectors.bytes(hex: test["bson"] as! String)
            if (try? BSONDocument(bytes: bytes)) == nil {
                tally.decodeErrors += 1
            } else {
                tally.failures.append("\(name): decode error accepted: \(test["description"] as? String ?? "?")")
            }
        }
        for case let test as [String: Any] in spec["parseErrors"] as? [Any] ?? [] {
            let text = test["string"] as! String
            let rejected = isDecimal ? (try? BSONDecimal128(text)) == nil : (try? BSONDocument(extendedJSON: text)) == nil
            if rejected {
                tally.parseErrors += 1
            } else {
                tally.failures.append("\(name): parse error accepted: \(test["description"] as? String ?? "?") \(text)")
            }
        }
    }

    struct Mismatch: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    @Test("every corpus case passes")
    func corpus() throws {
        let files = try SpecVectors.files("bson-corpus")
        var tally = Tally()
        for file in files { try Self.run(file: file, into: &tally) }
        print("BSON corpus: \(files.count) files, \(tally.valid) valid, \(tally.decodeErrors) decode errors, \(tally.parseErrors) parse errors passed; \(tally.failures.count) failed")
        for failure in tally.failures.prefix(40) { print("  ✗ \(failure)") }
        #expect(tally.failures.isEmpty)
        // The corpus at this revision has 728 valid cases and 255 error cases; a run that reads fewer is broken.
        #expect(tally.valid >= 728)
        #expect(tally.decodeErrors + tally.parseErrors >= 255)
    }
}
