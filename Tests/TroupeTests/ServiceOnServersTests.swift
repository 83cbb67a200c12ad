import Foundation
import HTTPTypes
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Testing
import Troupe
import TroupeActors
import TroupeBSON
import TroupeBus
import TroupeCore
import TroupeDemo
import TroupeGateway
import TroupeMongo
import TroupeTestSupport

/// A service of one's own (``TroupeService``) on real servers, as `--config` runs it: two nodes found through
/// etcd, actor state in MongoDB, the bus on Redis Streams, each node serving the service's HTTP routes.
@Suite("A TroupeService on etcd, MongoDB and Redis", .serialized,
       .enabled(if: ServerProcess.shouldRun("etcd") && ServerProcess.shouldRunMongo && ServerProcess.shouldRun("redis-server")))
struct ServiceOnServersTests {
    /// The service: accounts (the bank's actor), a route that deposits and announces it on the bus, a route that
    /// reads a balance, and a consumer group that records every announcement it is given.
    static func service(recorded: Locked<[String: Int]>) -> TroupeService {
        var service = TroupeService(name: "bank")
        service.host(Account.self)
        service.consume(topic: "deposits", group: "audit", orderly: false) { message, _ in
            recorded.withLock { $0[message.id, default: 0] += 1 }
        }
        service.routes { context in
            let system = context.system
            let producer = context.bus.producer(group: "bank")
            return [
                GatewayRoute(.post, "/deposit/:user", summary: "Deposits 1 and announces it", requiresAuth: false) { _, request in
                    let user = try request.parameter("user")
                    let balance = try await system.reference(Account.self, key: user).deposit(1)
                    _ = try await producer.send(OutgoingMessage(topic: "deposits", keys: [user], body: Array("\(user) \(balance)".utf8)))
                    return Gateway.json(["balance": balance])
                },
                GatewayRoute(.get, "/balance/:user", summary: "A balance", requiresAuth: false) { _, request in
                    Gateway.json(["balance": try await system.reference(Account.self, key: try request.parameter("user")).balance()])
                },
            ]
        }
        return service
    }

    @Test("two nodes share the actors, their state is in MongoDB as documents, each event reaches the consumer group once")
    func twoNodes() async throws {
        let etcd = try await ServerProcess.etcd()
        defer { etcd.terminate() }
        let mongo = try await ServerProcess.mongo()
        defer { mongo.terminate() }
        let redis = try await ServerProcess.redis()
        defer { redis.terminate() }
        let environment = ["CLUSTER_SECRET": "0123456789abcdef0123", "JWT_SECRET": "0123456789abcdef0123456789abcdef",
                           "MONGO_URI": mongo.mongoURL, "REDIS_URL": redis.redisURL]
        var paths: [String] = []
        var httpPorts: [Int] = []
        defer { for path in paths { try? FileManager.default.removeItem(atPath: path) } }
        for index in 1...2 {
            let httpPort = try await ServerProcess.freePort()
            let json = """
                {"cluster": "bank", "node": "bank-\(index)", "host": "127.0.0.1", "port": \(try await ServerProcess.freePort()),
                 "secretEnv": "CLUSTER_SECRET", "etcd": {"endpoints": ["\(etcd.endpoint)"], "ttlSeconds": 5},
                 "mongo": {"uriEnv": "MONGO_URI", "database": "bank"}, "redis": {"urlEnv": "REDIS_URL"},
                 "gateway": {"port": \(httpPort), "jwtSecretEnv": "JWT_SECRET"}}
                """
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-service-\(UUID().uuidString).json").path
            try json.write(toFile: path, atomically: true, encoding: .utf8)
            paths.append(path)
            httpPorts.append(httpPort)
        }
        let recorded = Locked<[String: Int]>([:])
        var logger = Logger(label: "service-test")
        logger.logLevel = .warning
        let first = try await Self.service(recorded: recorded).start(.init(configurationFile: paths[0]), environment: environment, logger: logger)
        let second = try await Self.service(recorded: recorded).start(.init(configurationFile: paths[1]), environment: environment, logger: logger)
        let ports = httpPorts
        try await withDeadline(.seconds(120)) {
            try await first.run {
                try await second.run {
                    for running in [first, second] {
                        #expect(try await ports.contains(running.httpPort(timeout: .seconds(30))), "the gateway section's port")
                        try await Self.waitUntil("both members are seen") { running.context.system.members.count == 2 }
                    }
                    let users = (0..<4).map { "user-\($0)" }
                    for round in 0..<5 {
                        for (index, user) in users.enumerated() {
                            let balance = try await Self.call("POST", port: ports[(round + index) % 2], "/deposit/\(user)")
                            #expect(balance == round + 1, "\(user) in round \(round): one account whichever node is asked")
                        }
                    }
                    for user in users {
                        for port in ports { #expect(try await Self.call("GET", port: port, "/balance/\(user)") == 5) }
                    }
                    try await Self.waitUntil("20 distinct events recorded") { recorded.withLock { $0.count } == 20 }
                    try await Task.sleep(for: .milliseconds(500))  // a duplicate, were there one, would arrive by now
                    #expect(recorded.withLock { $0.values.allSatisfy { $0 == 1 } }, "every event once: \(recorded.withLock { $0 })")
                }
            }
            try await withMongoClient(try MongoClientSettings(mongo.mongoURL)) { client in
                let documents = try await client.database("bank").collection("actor_state").find(["type": "Account"]).toArray()
                #expect(documents.count == 4)
                for document in documents {
                    guard case .document(let state) = document["state"] else { Issue.record("not a document: \(document)"); continue }
                    #expect(state["balance"]?.intValue == 5, "\(document)")
                }
            }
        }
    }

    static func waitUntil(_ what: String, timeout: Duration = .seconds(30), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    struct TimedOut: Error, CustomStringConvertible {
        var what: String
        var description: String { "timed out waiting until \(what)" }
    }

    static func call(_ method: String, port: Int, _ path: String) async throws -> Int {
        var request = URLRequest(url: try #require(URL(string: "http://127.0.0.1:\(port)\(path)")), timeoutInterval: 10)
        request.httpMethod = method
        let (data, response) = try await URLSession.shared.data(for: request)
        try #require((response as? HTTPURLResponse)?.statusCode == 200, "\(method) \(path): \(String(decoding: data, as: UTF8.self))")
        let body = try JSONDecoder().decode([String: Int].self, from: data)
        return try #require(body["balance"])
    }
}
