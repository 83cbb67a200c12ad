import Foundation
import Testing
import TroupeBSON
import TroupeMongo
import TroupeTestSupport

/// The driver against a real MongoDB-compatible server (SecantusDB) that the suite launches.
@Suite("MongoDB driver against SecantusDB", .serialized, .enabled(if: ServerProcess.shouldRunMongo))
struct MongoServerTests {
    struct Item: Codable, Equatable, Sendable {
        var _id: Int
        var name: String
        var qty: Int
        var tags: [String]
    }

    static func settings(_ server: ServerProcess, _ extra: String = "") throws -> MongoClientSettings {
        var settings = try MongoClientSettings(server.mongoURL + "?serverSelectionTimeoutMS=15000" + extra)
        settings.socketTimeout = .seconds(20)
        return settings
    }

    @Test("CRUD, typed documents, update operators, findAndModify, bulk, distinct and count")
    func crud() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try Self.settings(server)) { client in
                let items = client.database("shop").collection("items", as: Item.self)
                try await items.drop()
                let id = try await items.insertOne(Item(_id: 1, name: "apple", qty: 5, tags: ["fruit"]))
                #expect(id == .int64(1))
                try await items.insertMany([Item(_id: 2, name: "pear", qty: 0, tags: ["fruit"]), Item(_id: 3, name: "leek", qty: 9, tags: ["veg"])])
                #expect(try await items.countDocuments() == 3)
                #expect(try await items.findOne(["_id": 2])?.name == "pear")
                let updated = try await items.updateOne(["_id": 1], ["$inc": ["qty": 2], "$push": ["tags": "red"]])
                #expect(updated == MongoUpdateResult(matchedCount: 1, modifiedCount: 1, upsertedID: nil))
                #expect(try await items.findOne(["_id": 1]) == Item(_id: 1, name: "apple", qty: 7, tags: ["fruit", "red"]))
                let upsert = try await items.updateOne(["_id": 4], ["$set": ["name": "kiwi", "qty": 1, "tags": ["fruit"]]], upsert: true)
                #expect(upsert.upsertedID == .int32(4) || upsert.upsertedID == .int64(4))
                let many = try await items.updateMany(["tags": "fruit"], ["$set": ["checked": true]])
                #expect(many.matchedCount == 3)
                let before = try await items.findOneAndUpdate(["_id": 3], ["$inc": ["qty": -1]], returnDocument: .after)
                #expect(before?.qty == 8)
                try await items.replaceOne(["_id": 2], Item(_id: 2, name: "pear", qty: 10, tags: []))
                #expect(try await items.findOne(["_id": 2])?.qty == 10)
                let fruit = try await items.find(["tags": "fruit"], options: MongoFindOptions(sort: ["_id": -1])).toArray()
                #expect(fruit.map(\._id) == [4, 1])
                let names = try await items.distinct("name").compactMap(\.stringValue).sorted()
                #expect(names == ["apple", "kiwi", "leek", "pear"])
                let bulk = try await items.bulkWrite([
                    .insertOne(["_id": 5, "name": "fig", "qty": 1, "tags": []]),
                    .updateOne(filter: ["_id": 5], update: ["$set": ["qty": 3]]),
                    .deleteOne(["_id": 4]),
                ])
                #expect(bulk.insertedCount == 1 && bulk.modifiedCount == 1 && bulk.deletedCount == 1)
                #expect(try await items.deleteMany(["qty": ["$gte": 8]]).deletedCount == 2)
                #expect(try await items.estimatedDocumentCount() == 2)
                let grouped = try await client.database("shop").collection("items")
                    .aggregate([["$group": ["_id": .null, "total": ["$sum": "$qty"]]]]).toArray()
                #expect(grouped.first?["total"]?.intValue == 10)
            }
        }
    }

    @Test("a cursor over 1,000 documents with batch size 50 returns them all, in order")
    func cursor() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try Self.settings(server)) { client in
                let docs = client.database("t").collection("docs")
                try await docs.insertMany((0..<1000).map { ["_id": .int32(Int32($0)), "v": .string("v\($0)")] })
                let cursor = try await docs.find([:], options: MongoFindOptions(sort: ["_id": 1], batchSize: 50))
                #expect(cursor.id != 0)
                var seen = [Int]()
                for try await doc in cursor { seen.append(doc["_id"]?.intValue ?? -1) }
                #expect(seen == Array(0..<1000))
                #expect(cursor.id == 0)
                // A cursor closed early is killed on the server.
                let early = try await docs.find([:], options: MongoFindOptions(batchSize: 10))
                _ = try await early.nextDocument()
                await early.close()
                #expect(early.id == 0)
            }
        }
    }

    @Test("a unique index violation surfaces code 11000; indexes are listed and dropped")
    func uniqueIndex() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try Self.settings(server)) { client in
                let users = client.database("t").collection("users")
                let name = try await users.createIndex(MongoIndexModel(keys: ["email": 1], unique: true))
                #expect(name == "email_1")
                try await users.insertOne(["email": "a@x"])
                let error = await #expect(throws: MongoError.self) { try await users.insertOne(["email": "a@x"]) }
                #expect(error?.code == 11000)
                #expect(error?.isDuplicateKey == true)
                let names = try await users.listIndexes().compactMap { $0["name"]?.stringValue }
                #expect(names.contains("email_1"))
                try await users.dropIndex("email_1")
                try await users.insertOne(["email": "a@x"])
                #expect(try await users.countDocuments(["email": "a@x"]) == 2)
            }
        }
    }

    @Test("a TTL index removes expired documents")
    func ttlIndex() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(180)) {
            try await withMongoClient(try Self.settings(server)) { client in
                let sessions = client.database("t").collection("sessions")
                try await sessions.createIndex(MongoIndexModel(keys: ["at": 1], expireAfterSeconds: 1))
                let past = Int64(Date().timeIntervalSince1970 * 1000) - 60_000
                try await sessions.insertMany([["_id": 1, "at": .datetime(past)], ["_id": 2, "at": .datetime(past + 3_600_000_000)]])
                var remaining = try await sessions.countDocuments()
                let deadline = ContinuousClock.now + .seconds(150)
                while remaining > 1, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .seconds(1))
                    remaining = try await sessions.countDocuments()
                }
                #expect(remaining == 1)
                #expect(try await sessions.findOne()?["_id"]?.intValue == 2)
            }
        }
    }

    @Test("a transaction commits; an aborted one leaves nothing")
    func transactions() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try Self.settings(server)) { client in
                let accounts = client.database("bank").collection("accounts")
                try await accounts.insertMany([["_id": "a", "balance": 100], ["_id": "b", "balance": 0]])
                try await client.withSession { session in
                    try await session.withTransaction {
                        try await accounts.updateOne(["_id": "a"], ["$inc": ["balance": -30]], session: session)
                        try await accounts.updateOne(["_id": "b"], ["$inc": ["balance": 30]], session: session)
                    }
                }
                #expect(try await accounts.findOne(["_id": "a"])?["balance"]?.intValue == 70)
                #expect(try await accounts.findOne(["_id": "b"])?["balance"]?.intValue == 30)

                let session = client.startSession()
                try session.startTransaction()
                try await accounts.updateOne(["_id": "a"], ["$inc": ["balance": -70]], session: session)
                try await accounts.insertOne(["_id": "c", "balance": 70], session: session)
                try await session.abortTransaction()
                await session.end()
                #expect(try await accounts.findOne(["_id": "a"])?["balance"]?.intValue == 70)
                #expect(try await accounts.findOne(["_id": "c"]) == nil)
            }
        }
    }
}
