import Foundation
import Logging
import Testing
import Troupe
import TroupeActors
import TroupeBSON
import TroupeDemo
import TroupeMongo
import TroupeTestSupport

@Suite("troupe node with actor state in MongoDB", .serialized, .enabled(if: ServerProcess.shouldRunMongo))
struct MongoNodeTests {
    static func configuration(port: Int) -> String {
        """
        {"cluster": "c", "node": "n1", "host": "127.0.0.1", "port": \(port), "secretEnv": "S",
         "members": [{"node": "n1", "host": "127.0.0.1", "port": \(port)}],
         "mongo": {"uriEnv": "MONGO_URI", "database": "troupe"}}
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
            }
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
            } catch let error as ActorSystemError {
                #expect(error.message.contains(expected), "\(error.message)")
            }
        }
    }
}
