import Foundation
import Testing
import TroupeBSON
import TroupeStore

struct Product: Codable, Sendable, Equatable {
    var _id: String
    var name: String
    var price: Int
    var tags: [String]
    var stock: Stock
    var discontinued: Bool?

    struct Stock: Codable, Sendable, Equatable {
        var warehouse: String
        var count: Int
    }
}

struct Session: Codable, Sendable {
    var _id: String
    var user: String
    var lastSeen: Date
}

/// The behaviour every engine must have. Each check is an `#expect`; the suite runs it per engine.
enum DocumentStoreConformance {
    static let products = [
        Product(_id: "p1", name: "apple", price: 3, tags: ["fruit", "red"], stock: .init(warehouse: "north", count: 10)),
        Product(_id: "p2", name: "pear", price: 4, tags: ["fruit"], stock: .init(warehouse: "south", count: 0)),
        Product(_id: "p3", name: "leek", price: 2, tags: ["veg"], stock: .init(warehouse: "north", count: 5), discontinued: true),
        Product(_id: "p4", name: "kiwi", price: 7, tags: ["fruit", "green"], stock: .init(warehouse: "east", count: 1)),
    ]

    static func run(_ store: DocumentStore, prefix: String) async throws {
        let items = try await store.collection("\(prefix)_products", of: Product.self, indexes: [.unique("name"), DocumentIndex(["stock.warehouse"])])
        try await items.insert(products)
        #expect(try await items.count() == 4)

        // Reads and the filter vocabulary.
        let apple = try await items.get("p1")
        #expect(apple?.value == products[0])
        #expect(apple?.version == 1)
        #expect(try await items.get("nope") == nil)
        func ids(_ filter: DocumentFilter, sort: [DocumentSort] = [.ascending("_id")], skip: Int = 0, limit: Int? = nil) async throws -> [String] {
            try await items.find(filter, sort: sort, skip: skip, limit: limit).map(\._id)
        }
        #expect(try await ids(Field("price") > 3) == ["p2", "p4"])
        #expect(try await ids(Field("price") >= 3 && Field("price") < 7) == ["p1", "p2"])
        #expect(try await ids(Field("tags") == "fruit") == ["p1", "p2", "p4"], "array fields match element-wise")
        #expect(try await ids(Field("stock.warehouse") == "north") == ["p1", "p3"])
        #expect(try await ids(Field("name").in(["kiwi", "leek"])) == ["p3", "p4"])
        #expect(try await ids(.nin("name", ["kiwi", "leek"])) == ["p1", "p2"])
        #expect(try await ids(Field("discontinued").exists) == ["p3"])
        #expect(try await ids(.exists("discontinued", false)) == ["p1", "p2", "p4"])
        #expect(try await ids(Field("price") == 2 || Field("name") == "pear") == ["p2", "p3"])
        #expect(try await ids(!(Field("stock.count") > 0)) == ["p2"])
        #expect(try await ids(Field("_id").in(["p4", "p1", "zz"])) == ["p1", "p4"])
        #expect(try await ids(Field("name") != "apple") == ["p2", "p3", "p4"])
        #expect(try await ids(.all, sort: [.descending("price")]) == ["p4", "p2", "p1", "p3"])
        #expect(try await ids(.all, sort: [.ascending("stock.warehouse"), .descending("price")]) == ["p4", "p1", "p3", "p2"])
        #expect(try await ids(.all, sort: [.ascending("price")], skip: 1, limit: 2) == ["p1", "p2"])
        #expect(try await items.count(Field("tags") == "fruit") == 3)

        // Update operators bump the version; upsert creates.
        #expect(try await items.update(Field("_id") == "p2", [.inc("stock.count", 5), .push("tags", "green"), .set("price", 5)]) == 1)
        let pear = try await items.get("p2")
        #expect(pear?.value.stock.count == 5)
        #expect(pear?.value.tags == ["fruit", "green"])
        #expect(pear?.value.price == 5)
        #expect(pear?.version == 2)
        #expect(try await items.update(Field("tags") == "fruit", [.inc("price", 1)], many: true) == 3)
        #expect(try await items.get("p4")?.value.price == 8)
        #expect(try await items.update(Field("_id") == "p5", [.set("name", "fig"), .set("price", 1), .set("tags", []), .set("stock", ["warehouse": "west", "count": 2])], upsert: true) == 0)
        #expect(try await items.get("p5")?.value.name == "fig")
        #expect(try await items.update(Field("_id") == "p5", [.addToSet("tags", "dried"), .addToSet("tags", "dried"), .unset("discontinued")]) == 1)
        #expect(try await items.get("p5")?.value.tags == ["dried"])
        #expect(try await items.update(Field("_id") == "p5", [.pull("tags", "dried"), .max("price", 9), .min("stock.count", 1)]) == 1)
        let fig = try await items.get("p5")?.value
        #expect(fig?.tags == [] && fig?.price == 9 && fig?.stock.count == 1)
        #expect(try await items.update(Field("_id") == "none", [.set("price", 1)]) == 0)

        // Unique keys: the _id and declared unique indexes.
        let duplicateID = await #expect(throws: DocumentStoreError.self) { try await items.insert(products[0]) }
        #expect(duplicateID?.kind == .duplicateKey)
        var clash = products[0]
        clash._id = "p9"
        let duplicateName = await #expect(throws: DocumentStoreError.self) { try await items.insert(clash) }
        #expect(duplicateName?.kind == .duplicateKey)
        #expect(try await items.get("p9") == nil)

        // Optimistic concurrency.
        var leek = try #require(try await items.get("p3"))
        leek.value.price = 20
        let v2 = try await items.save(leek.value, expectedVersion: leek.version)
        #expect(v2 == leek.version + 1)
        let stale = await #expect(throws: DocumentStoreError.self) { try await items.save(leek.value, expectedVersion: leek.version) }
        #expect(stale?.kind == .versionConflict)
        let fresh = Product(_id: "p6", name: "plum", price: 1, tags: [], stock: .init(warehouse: "x", count: 0))
        #expect(try await items.save(fresh, expectedVersion: 0) == 1)
        let exists = await #expect(throws: DocumentStoreError.self) { try await items.save(fresh, expectedVersion: 0) }
        #expect(exists?.kind == .versionConflict)
        #expect(try await items.upsert(fresh) == 2)

        // Delete.
        #expect(try await items.delete(id: "p6"))
        #expect(try await items.delete(id: "p6") == false)
        #expect(try await items.delete(Field("tags") == "fruit", many: true) == 3)
        #expect(try await items.count() == 2)

        // Transactions: all or nothing.
        let ledger = try await store.collection("\(prefix)_ledger", of: Product.self)
        try await store.transaction { tx in
            try await ledger.in(tx).insert(products[0])
            try await items.in(tx).update(Field("_id") == "p3", [.inc("stock.count", -1)])
        }
        #expect(try await ledger.count() == 1)
        #expect(try await items.get("p3")?.value.stock.count == 4)
        struct Abort: Error {}
        await #expect(throws: Abort.self) {
            try await store.transaction { tx in
                try await ledger.in(tx).insert(products[1])
                try await items.in(tx).update(Field("_id") == "p3", [.inc("stock.count", -1)])
                #expect(try await ledger.in(tx).count() == 2, "a transaction reads its own writes")
                throw Abort()
            }
        }
        #expect(try await ledger.count() == 1)
        #expect(try await items.get("p3")?.value.stock.count == 4)

        // Invalid names fail clearly.
        let badName = await #expect(throws: DocumentStoreError.self) { try await store.collection("bad name", of: Product.self) }
        #expect(badName?.kind == .invalidOperation)
    }
}
