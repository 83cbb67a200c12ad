import Foundation
import Testing
import TroupeActors
import TroupeBSON
import TroupeMongo
import TroupeStore
import TroupeTestSupport

@Suite("DocumentStore on SQLite")
struct SQLiteDocumentStoreTests {
    @Test("conformance")
    func conformance() async throws {
        let engine = try await SQLiteDocumentStore.open()
        try await DocumentStoreConformance.run(DocumentStore(engine: engine), prefix: "c")
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
}
