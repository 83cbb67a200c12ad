import Foundation
import Testing
import TroupeBSON
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

/// The server-selection and max-staleness vectors: suitable servers and the latency window for a
/// topology description, read preference and operation.
@Suite("MongoDB spec vectors: server selection and max staleness")
struct MongoServerSelectionVectorTests {
    static func server(_ json: [String: Any]) -> MongoServerDescription {
        let address = MongoServerAddress(parsing: json["address"] as! String)!
        var server = MongoServerDescription(address: address, type: MongoServerDescription.ServerType(rawValue: json["type"] as! String) ?? .unknown,
                                            lastUpdateTimeMS: Int64((json["lastUpdateTime"] as? NSNumber)?.int64Value ?? 0))
        server.roundTripTimeMS = (json["avg_rtt_ms"] as? NSNumber)?.doubleValue
        server.tags = json["tags"] as? [String: String] ?? [:]
        server.maxWireVersion = (json["maxWireVersion"] as? NSNumber)?.intValue ?? 21
        if let lastWrite = json["lastWrite"] as? [String: Any], let date = lastWrite["lastWriteDate"] as? [String: Any],
            let ms = (date["$numberLong"] as? String).flatMap(Int64.init) {
            server.lastWriteDateMS = ms
        }
        return server
    }

    static func addresses(_ list: Any?) -> Set<String> {
        Set((list as? [[String: Any]] ?? []).compactMap { $0["address"] as? String }.compactMap { MongoServerAddress(parsing: $0)?.description })
    }

    static func check(_ test: [String: Any]) -> String? {
        let topologyJSON = test["topology_description"] as! [String: Any]
        let servers = (topologyJSON["servers"] as? [[String: Any]] ?? []).map(server)
        let topology = MongoTopologyDescription(
            type: MongoTopologyDescription.TopologyType(rawValue: topologyJSON["type"] as! String) ?? .unknown, servers: servers,
            heartbeatFrequencyMS: (test["heartbeatFrequencyMS"] as? NSNumber)?.intValue ?? 10_000)
        let preferenceJSON = test["read_preference"] as? [String: Any] ?? [:]
        let modeText = (preferenceJSON["mode"] as? String) ?? "Primary"
        let mode = MongoReadPreference.Mode(rawValue: modeText.prefix(1).lowercased() + modeText.dropFirst()) ?? .primary
        let tagSets = preferenceJSON["tag_sets"] as? [[String: String]] ?? []
        let staleness = (preferenceJSON["maxStalenessSeconds"] as? NSNumber)?.intValue
        let preference = MongoReadPreference(mode, tagSets: tagSets, maxStalenessSeconds: staleness == -1 ? nil : staleness)
        let operation: MongoServerSelector.Operation = (test["operation"] as? String) == "write" ? .write : .read(preference)
        let deprioritized = (test["deprioritized_servers"] as? [[String: Any]] ?? []).compactMap { ($0["address"] as? String).flatMap(MongoServerAddress.init(parsing:)) }
        do {
            let suitable = try MongoServerSelector.suitable(topology, for: operation, deprioritized: deprioritized)
            let window = try MongoServerSelector.select(topology, for: operation, deprioritized: deprioritized)
            if test["error"] as? Bool == true { return "expected an error" }
            if let expected = test["suitable_servers"], Set(suitable.map(\.address.description)) != addresses(expected) {
                return "suitable \(suitable.map(\.address.description)) ≠ \(addresses(expected))"
            }
            if let expected = test["in_latency_window"], Set(window.map(\.address.description)) != addresses(expected) {
                return "window \(window.map(\.address.description)) ≠ \(addresses(expected))"
            }
            return nil
        } catch {
            return test["error"] as? Bool == true ? nil : "unexpected error \(error)"
        }
    }

    static func run(_ spec: String, _ subdirectory: String) throws -> (Int, [String]) {
        var passed = 0
        var failures = [String]()
        for file in try SpecVectors.files(spec, subdirectory) {
            let test = try SpecVectors.load(file)
            if let failure = check(test) {
                failures.append("\(file.deletingLastPathComponent().lastPathComponent)/\(file.lastPathComponent): \(failure)")
            } else {
                passed += 1
            }
        }
        return (passed, failures)
    }

    @Test("server-selection vectors")
    func serverSelection() throws {
        let (passed, failures) = try Self.run("server-selection", "server_selection")
        print("server-selection vectors: \(passed) passed, \(failures.count) failed")
        for f in failures { print("  ✗ \(f)") }
        #expect(failures.isEmpty)
        #expect(passed >= 80)
    }

    @Test("max-staleness vectors")
    func maxStaleness() throws {
        let (passed, failures) = try Self.run("max-staleness", "")
        print("max-staleness vectors: \(passed) passed, \(failures.count) failed")
        for f in failures { print("  ✗ \(f)") }
        #expect(failures.isEmpty)
        #expect(passed >= 30)
    }

    @Test("round-trip-time averaging vectors")
    func rtt() throws {
        var passed = 0
        for file in try SpecVectors.files("server-selection", "rtt") {
            let test = try SpecVectors.load(file)
            let previous = test["avg_rtt_ms"] as? NSNumber
            let sample = (test["new_rtt_ms"] as! NSNumber).doubleValue
            let expected = (test["new_avg_rtt"] as! NSNumber).doubleValue
            let actual = MongoServerSelector.averageRTT(previous: previous.map(\.doubleValue), sample: sample)
            #expect(abs(actual - expected) < 1e-9, "\(file.lastPathComponent): \(actual) ≠ \(expected)")
            passed += 1
        }
        #expect(passed == 7)
    }
}

/// The SDAM vectors that need no server (single, rs, sharded): hello replies fed to the topology
/// updater, phase by phase, against the expected topology.
@Suite("MongoDB spec vectors: server discovery and monitoring")
struct MongoSDAMVectorTests {
    static func bson(_ object: Any) throws -> BSONDocument {
        let data = try JSONSerialization.data(withJSONObject: object)
        return try BSONDocument(extendedJSON: String(decoding: data, as: UTF8.self))
    }

    static func check(_ spec: [String: Any]) throws -> String? {
        let uri = try MongoConnectionString(spec["uri"] as! String)
        func bool(_ key: String) -> Bool? { if case .bool(let b)? = uri.options[key] { return b }; return nil }
        var replicaSet: String?
        if case .string(let name)? = uri.options["replicaSet"] { replicaSet = name }
        var topology = MongoTopologyDescription.initial(hosts: uri.hosts, directConnection: bool("directConnection"), replicaSet: replicaSet,
                                                        loadBalanced: bool("loadBalanced") ?? false)
        for (number, phase) in (spec["phases"] as? [[String: Any]] ?? []).enumerated() {
            if phase["applicationErrors"] != nil { return nil }
            for case let response as [Any] in phase["responses"] as? [Any] ?? [] {
                let address = MongoServerAddress(parsing: response[0] as! String)!
                let hello = try bson(response[1])
                let description = hello.isEmpty
                    ? MongoServerDescription(address: address)
                    : MongoServerDescription(address: address, hello: hello, roundTripTimeMS: 1, nowMS: 0)
                topology = MongoTopologyUpdater.update(topology, with: description)
            }
            guard let outcome = phase["outcome"] as? [String: Any] else { continue }
            let where_ = "phase \(number + 1)"
            if let type = outcome["topologyType"] as? String, type != topology.type.rawValue {
                return "\(where_): topology \(topology.type.rawValue) ≠ \(type)"
            }
            if outcome.keys.contains("setName"), (outcome["setName"] as? String) != topology.setName {
                return "\(where_): setName \(topology.setName ?? "nil") ≠ \(outcome["setName"] ?? "nil")"
            }
            if let compatible = outcome["compatible"] as? Bool, compatible != topology.compatible {
                return "\(where_): compatible \(topology.compatible) ≠ \(compatible)"
            }
            if outcome.keys.contains("logicalSessionTimeoutMinutes"),
                (outcome["logicalSessionTimeoutMinutes"] as? NSNumber)?.intValue != topology.logicalSessionTimeoutMinutes {
                return "\(where_): logicalSessionTimeoutMinutes \(topology.logicalSessionTimeoutMinutes.map(String.init) ?? "nil")"
            }
            if let maxSetVersion = outcome["maxSetVersion"] as? NSNumber, maxSetVersion.intValue != topology.maxSetVersion {
                return "\(where_): maxSetVersion \(topology.maxSetVersion.map(String.init) ?? "nil") ≠ \(maxSetVersion)"
            }
            if let maxElection = outcome["maxElectionId"] as? [String: Any], let hex = maxElection["$oid"] as? String,
                topology.maxElectionID?.hex != hex {
                return "\(where_): maxElectionId \(topology.maxElectionID?.hex ?? "nil") ≠ \(hex)"
            }
            let servers = outcome["servers"] as? [String: [String: Any]] ?? [:]
            let expected = Set(servers.keys.compactMap { MongoServerAddress(parsing: $0)?.description })
            let actual = Set(topology.servers.map(\.address.description))
            if expected != actual { return "\(where_): servers \(actual.sorted()) ≠ \(expected.sorted())" }
            for (addressText, server) in servers {
                let address = MongoServerAddress(parsing: addressText)!
                let mine = topology.servers.first { $0.address == address }!
                if let type = server["type"] as? String, type != mine.type.rawValue { return "\(where_): \(addressText) type \(mine.type.rawValue) ≠ \(type)" }
                if server.keys.contains("setName"), (server["setName"] as? String) != mine.setName {
                    return "\(where_): \(addressText) setName \(mine.setName ?? "nil")"
                }
                if server.keys.contains("setVersion"), (server["setVersion"] as? NSNumber)?.intValue != mine.setVersion {
                    return "\(where_): \(addressText) setVersion \(mine.setVersion.map(String.init) ?? "nil")"
                }
                if server.keys.contains("electionId"), ((server["electionId"] as? [String: Any])?["$oid"] as? String) != mine.electionID?.hex {
                    return "\(where_): \(addressText) electionId \(mine.electionID?.hex ?? "nil")"
                }
            }
        }
        return nil
    }

    @Test("SDAM vectors (single, rs, sharded)")
    func sdam() throws {
        var passed = 0
        var failures = [String]()
        for directory in ["single", "rs", "sharded"] {
            for file in try SpecVectors.files("server-discovery-and-monitoring", directory) {
                if let failure = try Self.check(SpecVectors.load(file)) {
                    failures.append("\(directory)/\(file.lastPathComponent): \(failure)")
                } else {
                    passed += 1
                }
            }
        }
        print("SDAM vectors: \(passed) passed, \(failures.count) failed")
        for f in failures { print("  ✗ \(f)") }
        #expect(failures.isEmpty)
        #expect(passed >= 100)
    }
}
