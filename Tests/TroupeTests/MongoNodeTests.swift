import Foundation
import Logging
import Testing
import Troupe
import TroupeActors
import TroupeBSON
import TroupeCore
import TroupeDemo
import TroupeMongo
import TroupeTestSupport

@Suite("troupe node with actor state in MongoDB", .serialized, .enabled(if: ServerProcess.shouldRunMongo))
struct MongoNodeTests {
    static func configuration(port: Int) -> String {
        """
        {"cluster": "c", "node": "n1", "host": "127.0.0.1", "port": \(port), "secretEnv": "S",
         "members": [{"node": "n1", "host": "127.0.0.1", "port": \(port)}],
         "mongo": {"uriEnv": "MONGO_URI", "database": "troupe", "stateIndexes": ["type,state.balance"]}}
        """
    }

    @Test("a node keeps actor state in MongoDB; a restarted node finds it")
    func persistence() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        let environment = ["S": "0123456789abcdef0123", "MONGO_URI": server.mongoURL]
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-mongo-node-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.configuration(port: try await ServerProcess.freePort()).write(toFile: path, atomically: true, encoding: .utf8)
        let configuration = try NodeConfiguration.load(path: path, environment: environment)
        try await withDeadline(.seconds(120)) {
            for round in 1...2 {
                let node = try await TroupeNode.start(configuration, environment: environment, logger: Logger(label: "test")) { $0.register(Account.self) }
                let balance = try await node.run {
                    try await node.system.actor(Account.self, key: "alice").deposit(10)
                }
                #expect(balance == 10 * round, "round \(round) starts from the state the previous node stored")
            }
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                let stored = try await client.database("troupe").collection("actor_state").findOne(["_id": "Account/alice"])
                #expect(stored?["_version"]?.intValue == 2)
                // The state is a document of its own fields, not an opaque blob.
                guard case .document(let state) = stored?["state"] else {
                    Issue.record("the state is not a subdocument: \(String(describing: stored?["state"]))")
                    return
                }
                #expect(state["balance"]?.intValue == 20 && state["operations"]?.intValue == 2, "\(state)")
            }
        }
    }

    @Test("MongoDB's own tools query actor states by their fields; a state in the older binary form is read and rewritten as a document")
    func documents() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        let environment = ["S": "0123456789abcdef0123", "MONGO_URI": server.mongoURL]
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-mongo-docs-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.configuration(port: try await ServerProcess.freePort()).write(toFile: path, atomically: true, encoding: .utf8)
        let configuration = try NodeConfiguration.load(path: path, environment: environment)
        try await withDeadline(.seconds(120)) {
            // bob's state as an earlier version wrote it: the binary form in a BinData field.
            struct SameShape: Codable { var balance = 5, operations = 1 }  // Account.State's fields
            let legacy = try BinaryEncoder().encode(SameShape())
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                try await client.database("troupe").collection("actor_state").insertOne([
                    "_id": "Account/bob", "type": "Account", "key": "bob", "_version": 1,
                    "state": .binary(BSONBinary(subtype: BSONBinary.generic, data: legacy)),
                ])
            }
            let node = try await TroupeNode.start(configuration, environment: environment, logger: Logger(label: "test")) { $0.register(Account.self) }
            try await node.run {
                #expect(try await node.system.actor(Account.self, key: "bob").deposit(1) == 6, "the binary form is read")
                for (user, amount) in [("ann", 30), ("cid", 3), ("dee", 50)] {
                    _ = try await node.system.actor(Account.self, key: user).deposit(amount)
                }
            }
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                let bob = try await client.database("troupe").collection("actor_state").findOne(["_id": "Account/bob"])
                guard case .document(let state) = bob?["state"] else {
                    Issue.record("bob's state was not rewritten as a document: \(String(describing: bob))")
                    return
                }
                #expect(state["balance"]?.intValue == 6 && bob?["_version"]?.intValue == 2)
            }
            // pymongo, as an operator would: the accounts holding at least 10, by a query on a state field, and the
            // index the configuration declared on it (mongo.stateIndexes).
            let query = """
                import pymongo, sys
                db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=10000)["troupe"]
                print(",".join(sorted(d["key"] for d in db.actor_state.find({"type": "Account", "state.balance": {"$gte": 10}}))))
                print(";".join(sorted(",".join(k for k, _ in i["key"].items()) for i in db.actor_state.list_indexes())))
                """
            let output = try Command.run(["python3", "-c", query, server.mongoURL], timeout: .seconds(60)).split(separator: "\n")
            #expect(output.first == "ann,dee", "\(output)")
            #expect(output.dropFirst().first?.split(separator: ";").contains("type,state.balance") == true, "\(output)")
        }
    }

    @Test("a bad mongo section fails at start-up saying what to fix")
    func invalid() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-mongo-bad-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.configuration(port: 7101).write(toFile: path, atomically: true, encoding: .utf8)
        for (environment, expected) in [
            (["S": "0123456789abcdef0123"], "MONGO_URI, which is not set"),
            (["S": "0123456789abcdef0123", "MONGO_URI": "http://x"], "must start with mongodb://"),
        ] {
            do {
                _ = try NodeConfiguration.load(path: path, environment: environment)
                Issue.record("expected a configuration error")
            } catch let error as ConfigurationError {
                #expect(error.message.contains(expected), "\(error.message)")
            }
        }
    }
}
