import Foundation
import Testing
import TroupeBSON
import TroupeMongo
import TroupeStore
import TroupeTestSupport

/// Segment ids and the inbox, on one engine.
enum ConsistencyToolChecks {
    static func segments(_ store: DocumentStore) async throws {
        let allocators = try await (0..<4).asyncMap { _ in try await SegmentIDAllocator(store: store, name: "orders", step: 100) }
        let batches = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for allocator in allocators {
                group.addTask {
                    var ids = [Int64]()
                    for _ in 0..<1_000 { ids.append(try await allocator.next()) }
                    return ids
                }
            }
            return try await group.reduce(into: [[Int64]]()) { $0.append($1) }
        }
        var all = Set<Int64>()
        for ids in batches {
            #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 }, "ids of one allocator increase")
            all.formUnion(ids)
        }
        #expect(all.count == 4_000, "ids are unique across allocators")
        #expect(all.min()! >= 1)
    }

    struct Counter: Codable, Sendable {
        var _id: String
        var value: Int
    }

    static func inbox(_ store: DocumentStore) async throws {
        let inbox = try await Inbox(store: store)
        let counters = try await store.collection("counters", of: Counter.self)
        try await counters.insert(Counter(_id: "c", value: 0))
        var ran = 0
        for _ in 0..<3 {
            let processed = try await inbox.process(group: "billing", messageID: "m-1") { tx in
                try await counters.in(tx).update(Field("_id") == "c", [.inc("value", 1)])
            }
            if processed { ran += 1 }
        }
        #expect(ran == 1, "the same message delivered 3 times runs once")
        #expect(try await counters.get("c")?.value.value == 1, "and changes state once")
        #expect(try await inbox.contains(group: "billing", messageID: "m-1"))
        #expect(try await !inbox.contains(group: "other", messageID: "m-1"), "groups are independent")
        // A handler that fails leaves no record: the redelivery runs it again.
        struct Failure: Error {}
        await #expect(throws: Failure.self) {
            try await inbox.process(group: "billing", messageID: "m-2") { tx in
                try await counters.in(tx).update(Field("_id") == "c", [.inc("value", 10)])
                throw Failure()
            }
        }
        #expect(try await counters.get("c")?.value.value == 1)
        #expect(try await inbox.process(group: "billing", messageID: "m-2") { tx in try await counters.in(tx).update(Field("_id") == "c", [.inc("value", 10)]) })
        #expect(try await counters.get("c")?.value.value == 11)
    }
}


@Suite("Segment ids and inbox on SQLite")
struct SQLiteConsistencyToolTests {
    @Test("segment ids: 4 allocators, 4,000 ids, unique and increasing per allocator")
    func segments() async throws {
        let engine = try await SQLiteDocumentStore.open()
        try await ConsistencyToolChecks.segments(DocumentStore(engine: engine))
        await engine.close()
    }

    @Test("inbox: the same message delivered 3 times changes state once")
    func inbox() async throws {
        let engine = try await SQLiteDocumentStore.open()
        try await ConsistencyToolChecks.inbox(DocumentStore(engine: engine))
        await engine.close()
    }
}

@Suite("Segment ids and inbox on MongoDB (SecantusDB)", .serialized, .enabled(if: ServerProcess.shouldRunMongo))
struct MongoConsistencyToolTests {
    @Test("segment ids and inbox")
    func both() async throws {
        let server = try await ServerProcess.mongo()
        defer { server.terminate() }
        try await withDeadline(.seconds(120)) {
            try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                let store = DocumentStore(engine: MongoDocumentStore(database: client.database("tools")))
                try await ConsistencyToolChecks.segments(store)
                try await ConsistencyToolChecks.inbox(store)
            }
        }
    }
}
