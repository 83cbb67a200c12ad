import Foundation
import Testing
import TroupeActors
import TroupeBSON
import TroupeCore
import TroupeMongo
@testable import TroupeStore
import TroupeTestSupport
import TroupeActorsStore

@Suite("DocumentStore on SQLite")
struct SQLiteDocumentStoreTests {
    @Test("conformance")
    func conformance() async throws {
        let engine = try await SQLiteDocumentStore.open()
        try await DocumentStoreConformance.run(DocumentStore(engine: engine), prefix: "c")
        await engine.close()
    }

    @Test("50 concurrent compare-and-set saves at one version: exactly one wins; a transaction running meanwhile is not disturbed")
    func concurrentCompareAndSet() async throws {
        let engine = try await SQLiteDocumentStore.open()
        let store = DocumentStore(engine: engine)
        let items = try await store.collection("cas", of: Product.self)
        let first = DocumentStoreConformance.products[0]
        try await items.insert(first)
        let version = try #require(try await items.get(.string(first._id))?.version)
        let ledger = try await store.collection("ledger", of: Product.self)
        async let transaction: Void = store.transaction { tx in
            // Two writes with a pause between them: single statements from other tasks must not land inside.
            try await ledger.in(tx).insert(DocumentStoreConformance.products[1])
            try await Task.sleep(for: .milliseconds(50))
            try await ledger.in(tx).insert(DocumentStoreConformance.products[2])
            throw CancellationError()  // roll back
        }
        let outcomes = await withTaskGroup(of: Bool.self) { group -> [Bool] in
            for index in 0..<50 {
                group.addTask {
                    var changed = first
                    changed.price = 1_000 + index
                    return (try? await items.save(changed, expectedVersion: version)) != nil
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        _ = try? await transaction
        #expect(outcomes.filter { $0 }.count == 1)
        let stored = try #require(try await items.get(.string(first._id)))
        #expect(stored.version == version + 1)
        #expect(try await ledger.count() == 0, "the rolled-back transaction left nothing, and nothing else joined it")
        await engine.close()
    }

    @Test("TTL: expired documents are hidden at once and removed by the sweeper")
    func ttl() async throws {
        let engine = try await SQLiteDocumentStore.open()
        let store = DocumentStore(engine: engine)
        let sessions = try await store.collection("sessions", of: Session.self, indexes: [.ttl("lastSeen", after: 60)])
        try await sessions.insert([
            Session(_id: "old", user: "a", lastSeen: Date().addingTimeInterval(-120)),
            Session(_id: "new", user: "b", lastSeen: Date()),
        ])
        #expect(try await sessions.find().map(\._id) == ["new"])
        #expect(try await engine.sweepExpired() == 1)
        #expect(try await engine.sweepExpired() == 0)
        await engine.close()
    }

    @Test("a file database keeps its documents across reopen")
    func persistence() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-store-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let first = try await SQLiteDocumentStore.open(path: path)
        try await DocumentStore(engine: first).collection("p", of: Product.self).insert(DocumentStoreConformance.products)
        await first.close()
        let second = try await SQLiteDocumentStore.open(path: path)
        #expect(try await DocumentStore(engine: second).collection("p", of: Product.self).count() == 4)
        await second.close()
    }

    @Test("actor fencing on the SQLite state store")
    func fencing() async throws {
        let engine = try await SQLiteDocumentStore.open()
        let state = try await DocumentActorStateStore(store: DocumentStore(engine: engine))
        try await ActorFencingCheck.run(state)
        await engine.close()
    }

    @Test("actor fencing on the SQLite actor-state table; its writes never join a document transaction; it survives reopening")
    func actorStateTable() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-state-\(UInt32.random(in: 0 ... .max)).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let engine = try await SQLiteDocumentStore.open(path: path)
        let state = try await SQLiteActorStateStore(store: engine)
        try await ActorFencingCheck.run(state)
        // A state write while a document transaction is open waits for it and survives its rollback.
        let ledger = try await DocumentStore(engine: engine).collection("ledger", of: Product.self)
        async let transaction: Void = DocumentStore(engine: engine).transaction { tx in
            try await ledger.in(tx).insert(DocumentStoreConformance.products[1])
            try await Task.sleep(for: .milliseconds(50))
            throw CancellationError()  // roll back
        }
        try await Task.sleep(for: .milliseconds(10))
        #expect(try await state.compareAndSet(type: "T", key: "k", expectedVersion: 0, bytes: [1, 2, 3]))
        _ = try? await transaction
        #expect(try await state.compareAndSet(type: "T", key: "k", expectedVersion: 0, bytes: [9]) == false, "already created")
        #expect(try await state.compareAndSet(type: "T", key: "k", expectedVersion: 1, bytes: [4, 5]))
        await engine.close()
        let reopened = try await SQLiteActorStateStore(store: try await SQLiteDocumentStore.open(path: path))
        let stored = try #require(try await reopened.load(type: "T", key: "k"))
        #expect(stored.version == 2 && stored.bytes == [4, 5])
        try await reopened.delete(type: "T", key: "k")
        #expect(try await reopened.load(type: "T", key: "k") == nil)
        await reopened.store.close()
        await #expect(throws: DocumentStoreError.self) { try await SQLiteActorStateStore(store: engine, table: "bad name") }
    }

    struct Ticket: Codable, Equatable {
        var status: String
        var seats: [Int]
        var at: Date
    }

    @Test("actor states in SQLite are JSON that SQL can query; rows in the older binary form are still read")
    func actorStateJSON() async throws {
        let engine = try await SQLiteDocumentStore.open(path: ":memory:")
        let store = try await SQLiteActorStateStore(store: engine)
        let at = Date(timeIntervalSince1970: 1_733_300_000.125)
        let paid = Ticket(status: "paid", seats: [3, 4], at: at)
        #expect(try await store.compareAndSet(type: "Ticket", key: "a", expectedVersion: 0, bytes: try store.codec.encode(paid)))
        #expect(try await store.compareAndSet(type: "Ticket", key: "b", expectedVersion: 0,
                                              bytes: try store.codec.encode(Ticket(status: "open", seats: [], at: at))))
        let rows = try await engine.execute(
            "SELECT key, json_extract(state, '$.at'), json_extract(state, '$.seats[1]') FROM \(store.table) WHERE type = 'Ticket' AND json_extract(state, '$.status') = 'paid'")
        #expect(rows == [[.text("a"), .text("2024-12-04T08:13:20.125Z"), .integer(4)]])
        let loaded = try #require(try await store.load(type: "Ticket", key: "a"))
        #expect(loaded.encoding == .json && loaded.version == 1)
        #expect(try store.codec.decode(Ticket.self, from: loaded) == paid)
        // A row an earlier version wrote in the binary form: read, and JSON after the next write.
        try await engine.execute("INSERT INTO \(store.table) (type, key, version, state) VALUES ('Ticket', 'old', 4, ?)",
                                 [.blob(try BinaryEncoder().encode(paid))])
        let old = try #require(try await store.load(type: "Ticket", key: "old"))
        #expect(old.encoding == .binary && old.version == 4)
        #expect(try store.codec.decode(Ticket.self, from: old) == paid)
        #expect(try await store.compareAndSet(type: "Ticket", key: "old", expectedVersion: 4, bytes: try store.codec.encode(paid)))
        #expect(try await store.load(type: "Ticket", key: "old")?.encoding == .json)
        let all = try await store.states(ofType: "Ticket", as: Ticket.self)
        #expect(all.keys.sorted() == ["a", "b", "old"] && all["old"] == paid)
        await engine.close()
    }

    @Test("indexes on state fields: a query on a field uses its index; rows in the old binary form neither break it nor match")
    func actorStateIndexes() async throws {
        let engine = try await SQLiteDocumentStore.open(path: ":memory:")
        let plain = try await SQLiteActorStateStore(store: engine)
        let at = Date(timeIntervalSince1970: 1_733_300_000)
        // A legacy BLOB row exists before the index is made.
        try await engine.execute("INSERT INTO \(plain.table) (type, key, version, state) VALUES ('Ticket', 'old', 1, ?)",
                                 [.blob(try BinaryEncoder().encode(Ticket(status: "paid", seats: [], at: at)))])
        let store = try await SQLiteActorStateStore(store: engine, indexes: ["status", "info.kind"])
        for (key, status) in [("a", "paid"), ("b", "open"), ("c", "paid")] {
            #expect(try await store.compareAndSet(type: "Ticket", key: key, expectedVersion: 0,
                                                  bytes: try store.codec.encode(Ticket(status: status, seats: [], at: at))))
        }
        let query = "SELECT key FROM \(store.table) WHERE type = 'Ticket' AND typeof(state) = 'text' AND json_extract(state, '$.status') = 'paid' ORDER BY key"
        #expect(try await engine.execute(query) == [[.text("a")], [.text("c")]])
        let plan = try await engine.execute("EXPLAIN QUERY PLAN " + query).map { $0.map { "\($0)" }.joined(separator: " ") }.joined(separator: "\n")
        #expect(plan.contains("a_actor_state__status"), "\(plan)")
        // Opening again is harmless; a path that is not plain is refused.
        _ = try await SQLiteActorStateStore(store: engine, indexes: ["status"])
        await #expect(throws: DocumentStoreError.self) { _ = try await SQLiteActorStateStore(store: engine, indexes: ["status') --"]) }
        await #expect(throws: DocumentStoreError.self) { _ = try await SQLiteActorStateStore(store: engine, indexes: ["a..b"]) }
        await engine.close()
    }
}

@Suite("DocumentStore on MongoDB (SecantusDB)", .serialized, .enabled(if: ServerProcess.shouldRunMongo))
struct MongoDocumentStoreTests {
    @Test("conformance")
    func conformance() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                try await DocumentStoreConformance.run(DocumentStore(engine: MongoDocumentStore(database: client.database("conformance"))), prefix: "c")
            }
        }
    }

    @Test("actor fencing on the MongoDB state store")
    func fencing() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                let state = try await DocumentActorStateStore(store: DocumentStore(engine: MongoDocumentStore(database: client.database("actors"))))
                try await ActorFencingCheck.run(state)
            }
        }
    }

    @Test("a compare-and-set is idempotent by itself: a retry of an applied write succeeds; another writer's retry is a conflict")
    func idempotentCompareAndSet() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                let engine = MongoDocumentStore(database: client.database("marks"))
                let doc: BSONDocument = ["_id": "a", "n": 1]
                // Creation: the same write again (its reply was lost) is that write; a different one is a conflict.
                #expect(try await engine.replace("c", doc, expectedVersion: 0, mark: "w1", in: nil) == 1)
                #expect(try await engine.replace("c", doc, expectedVersion: 0, mark: "w1", in: nil) == 1)
                await #expect(throws: DocumentStoreError.self) { try await engine.replace("c", doc, expectedVersion: 0, mark: "w2", in: nil) }
                // An update: the same.
                var next = doc
                next["n"] = 2
                #expect(try await engine.replace("c", next, expectedVersion: 1, mark: "w3", in: nil) == 2)
                #expect(try await engine.replace("c", next, expectedVersion: 1, mark: "w3", in: nil) == 2)
                let lost = await #expect(throws: DocumentStoreError.self) { try await engine.replace("c", next, expectedVersion: 1, mark: "w4", in: nil) }
                #expect(lost?.kind == .versionConflict)
                // Once a later write landed, an old write's retry is a conflict too: the actor lost the race after all.
                #expect(try await engine.replace("c", next, expectedVersion: 2, mark: "w5", in: nil) == 3)
                await #expect(throws: DocumentStoreError.self) { try await engine.replace("c", next, expectedVersion: 1, mark: "w3", in: nil) }
                let stored = try await engine.find("c", .eq("_id", "a"), sort: [], skip: 0, limit: nil, in: nil)
                #expect(stored.count == 1)
                #expect(stored.first?["_version"]?.intValue == 3)
                #expect(stored.first?["n"]?.intValue == 2)
            }
        }
    }
}
