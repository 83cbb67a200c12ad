public import TroupeBSON

/// A database of a ``MongoClient``.
public struct MongoDatabase: Sendable {
    /// The client it belongs to.
    public let client: MongoClient
    /// Its name.
    public let name: String

    /// The collection `name`, as documents.
    public func collection(_ name: String) -> MongoCollection<BSONDocument> {
        MongoCollection(database: self, name: name)
    }

    /// The collection `name`, as `T` values (Codable through BSON).
    public func collection<T: Codable & Sendable>(_ name: String, as type: T.Type) -> MongoCollection<T> {
        MongoCollection(database: self, name: name)
    }

    /// Runs `command` on this database and returns the reply (`ok: 0` replies throw).
    @discardableResult
    public func runCommand(_ command: BSONDocument, session: MongoSession? = nil) async throws(MongoError) -> BSONDocument {
        try await client.execute(command, database: name, kind: .other, session: session).0
    }

    /// Drops the database.
    public func drop() async throws(MongoError) {
        try await runCommand(["dropDatabase": 1])
    }

    /// The names of the database's collections.
    public func listCollectionNames() async throws(MongoError) -> [String] {
        let reply = try await runCommand(["listCollections": 1, "nameOnly": true])
        let batch = reply["cursor"]?.documentValue?["firstBatch"]?.arrayValue ?? []
        return batch.compactMap { $0.documentValue?["name"]?.stringValue }
    }

    /// Creates a collection explicitly (collections are otherwise created on first insert).
    public func createCollection(_ name: String, options: BSONDocument = [:]) async throws(MongoError) {
        var command: BSONDocument = ["create": .string(name)]
        for (key, value) in options.elements { command[key] = value }
        try await runCommand(command)
    }
}
