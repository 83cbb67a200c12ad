import Foundation
import Testing
@testable import TroupeMongo
import TroupeTestSupport

/// The connection-string and URI-options vectors of the MongoDB specifications.
@Suite("MongoDB spec vectors: connection strings and URI options")
struct MongoConnectionStringVectorTests {
    struct Outcome {
        var passed = 0
        var failures: [String] = []
    }

    static func value(_ option: MongoOptionValue) -> Any {
        switch option {
        case .string(let s): s
        case .int(let i): i
        case .bool(let b): b
        case .list(let l): l
        case .properties(let p): p
        case .tagSets(let t): t
        }
    }

    static func same(_ expected: Any, _ actual: Any) -> Bool {
        switch (expected, actual) {
        case (let e as NSNumber, let a as Int):
            return e.intValue == a
        case (let e as NSNumber, let a as Bool):
            return e.boolValue == a
        case (let e as String, let a as String): return e.lowercased() == a.lowercased() || e == a
        case (let e as [String], let a as [String]): return e == a
        case (let e as [[String: String]], let a as [[String: String]]): return e == a
        case (let e as [String: Any], let a as [String: String]):
            return e.count == a.count && e.allSatisfy { key, value in a[key].map { "\(value)" == $0 } ?? false }
        case (let e as [Any], let a as [[String: String]]):
            return e.count == a.count && zip(e, a).allSatisfy { (($0 as? [String: String]) ?? [:]) == $1 }
        default: return false
        }
    }

    static func check(_ test: [String: Any]) -> String? {
        let uri = test["uri"] as! String
        let valid = test["valid"] as? Bool ?? true
        let parsed: MongoConnectionString
        do {
            parsed = try MongoConnectionString(uri)
        } catch {
            return valid ? "rejected a valid URI: \(error)" : nil
        }
        guard valid else { return "accepted an invalid URI" }
        let warned = !parsed.warnings.isEmpty
        if let warning = test["warning"] as? Bool, warning != warned {
            return warning ? "expected a warning" : "unexpected warnings \(parsed.warnings)"
        }
        if let hosts = test["hosts"] as? [[String: Any]] {
            let expected = hosts.map { h in "\(h["type"] as? String ?? "")|\(h["host"] as? String ?? "")|\((h["port"] as? Int).map(String.init) ?? "-")" }
            let actual = parsed.hosts.map { "\($0.kind.rawValue)|\($0.host)|\($0.portGiven ? String($0.port) : "-")" }
            if expected != actual { return "hosts \(actual) ≠ \(expected)" }
        }
        if let auth = test["auth"] as? [String: Any] {
            if (auth["username"] as? String) != parsed.username { return "username \(parsed.username ?? "nil")" }
            if (auth["password"] as? String) != parsed.password { return "password \(parsed.password ?? "nil")" }
            if (auth["db"] as? String) != parsed.database { return "db \(parsed.database ?? "nil")" }
        }
        if let options = test["options"] as? [String: Any] {
            let actual = Dictionary(parsed.options.map { ($0.key.lowercased(), value($0.value)) }, uniquingKeysWith: { a, _ in a })
            for (key, expected) in options {
                guard let mine = actual[key.lowercased()] else { return "option \(key) missing (have \(parsed.options.keys.sorted()))" }
                if !same(expected, mine) { return "option \(key): \(mine) ≠ \(expected)" }
            }
        }
        return nil
    }

    static func run(_ spec: String) throws -> Outcome {
        var outcome = Outcome()
        for file in try SpecVectors.files(spec) {
            for case let test as [String: Any] in try SpecVectors.load(file)["tests"] as? [Any] ?? [] {
                if let failure = check(test) {
                    outcome.failures.append("\(file.lastPathComponent): \(test["description"] as? String ?? "?"): \(failure)")
                } else {
                    outcome.passed += 1
                }
            }
        }
        return outcome
    }

    @Test("connection-string vectors")
    func connectionStrings() throws {
        let outcome = try Self.run("connection-string")
        print("connection-string vectors: \(outcome.passed) passed, \(outcome.failures.count) failed")
        for f in outcome.failures { print("  ✗ \(f)") }
        #expect(outcome.failures.isEmpty)
        #expect(outcome.passed >= 98, "the vectors at this revision hold 98 cases")
    }

    @Test("uri-options vectors")
    func uriOptions() throws {
        let outcome = try Self.run("uri-options")
        print("uri-options vectors: \(outcome.passed) passed, \(outcome.failures.count) failed")
        for f in outcome.failures { print("  ✗ \(f)") }
        #expect(outcome.failures.isEmpty)
        #expect(outcome.passed >= 159, "the vectors at this revision hold 159 cases")
    }
}
