import Foundation
import Testing
import TroupeBSON
import TroupeMongo
import TroupeTestSupport

@Suite("MongoDB driver: authentication, retries, change streams, restarts", .serialized, .enabled(if: ServerProcess.shouldRunMongo))
struct MongoFaultTests {
    @Test("SCRAM-SHA-256 succeeds; a wrong password fails with a clear error; no credentials is refused")
    func scram() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                try await client.runCommand(["createUser": "alice", "pwd": "s3cret-pässword", "roles": [["role": "root", "db": "admin"]]])
            }
            await server.stop()
            server.appendArguments(["--auth"])
            try await server.start()
            let url = "mongodb://alice:s3cret-p%C3%A4ssword@127.0.0.1:\(server.port)/?authSource=admin&serverSelectionTimeoutMS=5000"
            try await withMongoClient(try MongoClientSettings(url)) { client in
                try await client.database("t").collection("c").insertOne(["x": 1])
                #expect(try await client.database("t").collection("c").countDocuments() == 1)
            }
            let wrong = "mongodb://alice:nope@127.0.0.1:\(server.port)/?serverSelectionTimeoutMS=3000"
            let error = await #expect(throws: MongoError.self) {
                try await withMongoClient(try MongoClientSettings(wrong)) { client in
                    try await client.database("t").collection("c").insertOne(["x": 2])
                }
            }
            #expect(error?.kind == .authenticationFailed)
            #expect(error?.message.contains("SCRAM-SHA-256 authentication of alice") == true)
            let anonymous = await #expect(throws: MongoError.self) {
                try await withMongoClient(try MongoClientSettings(server.mongoURL + "?serverSelectionTimeoutMS=3000")) { client in
                    try await client.database("t").collection("c").insertOne(["x": 3])
                }
            }
            #expect(anonymous?.kind == .server)
        }
    }

    @Test("a failCommand fail point makes a retryable write retry once and succeed")
    func retryableWrite() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            let failOnce: BSONDocument = [
                "configureFailPoint": "failCommand", "mode": ["times": 1],
                "data": ["failCommands": ["insert"], "errorCode": 91, "errorLabels": ["RetryableWriteError"]],
            ]
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                let c = client.database("t").collection("retry")
                try await client.runCommand(failOnce)
                try await c.insertOne(["_id": 1])
                #expect(try await c.countDocuments() == 1)
            }
            // The same fail point without retries surfaces the error: the retry above was real.
            try await withMongoClient(try MongoClientSettings(server.mongoURL + "?retryWrites=false")) { client in
                let c = client.database("t").collection("retry")
                try await client.runCommand(failOnce)
                let error = await #expect(throws: MongoError.self) { try await c.insertOne(["_id": 2]) }
                #expect(error?.code == 91)
                #expect(try await c.countDocuments() == 1)
            }
        }
    }

    @Test("an idempotent write is retried once without a transaction number; a write that must not be retried is not")
    func idempotentWrite() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            let failOnce: BSONDocument = [
                "configureFailPoint": "failCommand", "mode": ["times": 1],
                "data": ["failCommands": ["update"], "errorCode": 91, "errorLabels": ["RetryableWriteError"]],
            ]
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                let c = client.database("t").collection("idempotent")
                try await c.insertOne(["_id": 1, "v": 0])
                try await client.runCommand(failOnce)
                let replaced = try await c.replaceOne(["_id": 1, "v": 0], ["_id": 1, "v": 1], retry: .idempotent)
                #expect(replaced.matchedCount == 1)
                try await client.runCommand(failOnce)
                let error = await #expect(throws: MongoError.self) { try await c.replaceOne(["_id": 1, "v": 1], ["_id": 1, "v": 2], retry: .never) }
                #expect(error?.code == 91)
                #expect(try await c.findOne(["_id": 1])?["v"]?.intValue == 1)
            }
        }
    }

    @Test("a change stream delivers an insert and an update")
    func changeStream() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                let c = client.database("t").collection("events")
                try await c.insertOne(["_id": 0])
                let stream = try await c.watch(fullDocument: "updateLookup")
                try await c.insertOne(["_id": 1, "v": "a"])
                try await c.updateOne(["_id": 1], ["$set": ["v": "b"]])
                let insert = try await stream.next()
                #expect(insert?["operationType"] == "insert")
                #expect(insert?["fullDocument"]?.documentValue?["v"] == "a")
                let update = try await stream.next()
                #expect(update?["operationType"] == "update")
                #expect(update?["fullDocument"]?.documentValue?["v"] == "b")
                #expect(stream.resumeToken != nil)
                await stream.close()
            }
        }
    }

    @Test("the server restarted mid-traffic: the client reconnects and goes on")
    func restart() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(180)) {
            try await withMongoClient(try MongoClientSettings(server.mongoURL + "?serverSelectionTimeoutMS=30000&heartbeatFrequencyMS=500")) { client in
                let c = client.database("t").collection("restart")
                for i in 0..<20 { try await c.insertOne(["_id": .int32(Int32(i))]) }
                await server.stop()
                let restarter = Task { try await Task.sleep(for: .seconds(1)); try await server.start() }
                // Writes during the outage wait for the server (selection timeout) and then succeed.
                var written = 20
                for i in 20..<40 {
                    do {
                        try await c.insertOne(["_id": .int32(Int32(i))])
                        written += 1
                    } catch let error as MongoError where error.kind == .connectionClosed {
                        // The one write in flight when the connection broke may fail; it is retried once,
                        // and a second failure is reported rather than hidden.
                        continue
                    }
                }
                try await restarter.value
                #expect(written >= 39)
                #expect(try await c.countDocuments() == written)
            }
        }
    }
}
