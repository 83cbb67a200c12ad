public import TroupeBSON
public import TroupeMongo

/// The production engine: collections of a MongoDB database, `_version` kept in each document, unique and
/// TTL indexes as MongoDB indexes, transactions as MongoDB multi-document transactions.
public struct MongoDocumentStore: DocumentStoreEngine {
    public let engineName = "mongodb"
    /// The database collections live in.
    public let database: MongoDatabase

    /// An engine on `database`.
    public init(database: MongoDatabase) {
        self.database = database
    }

    private func session(_ transaction: DocumentTransaction?) -> MongoSession? {
        transaction?.context as? MongoSession
    }

    private func collection(_ name: String) -> MongoCollection<BSONDocument> { database.collection(name) }

    private func wrap<T>(_ body: () async throws(MongoError) -> T) async throws(DocumentStoreError) -> T {
        do {
            return try await body()
        } catch {
            if error.isDuplicateKey { throw DocumentStoreError(.duplicateKey, "duplicate key: \(error.message)", underlying: error) }
            throw DocumentStoreError(.engine, "MongoDB: \(error.message)", underlying: error)
        }
    }

    public func prepare(collection name: String, indexes: [DocumentIndex]) async throws(DocumentStoreError) {
        guard !indexes.isEmpty else { return }
        let models = indexes.map { index in
            MongoIndexModel(keys: BSONDocument(index.fields.map { ($0, .int32(1)) }), name: index.name, unique: index.unique,
                            expireAfterSeconds: index.expireAfterSeconds)
        }
        try await wrap { () async throws(MongoError) in _ = try await collection(name).createIndexes(models) }
    }

    public func insert(_ name: String, _ documents: [BSONDocument], in transaction: DocumentTransaction?) async throws(DocumentStoreError) {
        let docs = documents.map { doc -> BSONDocument in
            var d = doc
            d["_version"] = .int64(1)
            return d
        }
        try await wrap { () async throws(MongoError) in
            if docs.count == 1 {
                _ = try await collection(name).insertOne(docs[0], session: session(transaction))
            } else {
                _ = try await collection(name).insertMany(docs, session: session(transaction))
            }
        }
    }

    public func find(_ name: String, _ filter: DocumentFilter, sort: [DocumentSort], skip: Int, limit: Int?,
                     in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> [BSONDocument] {
        try await wrap { () async throws(MongoError) in
            let options = MongoFindOptions(sort: sort.isEmpty ? nil : DocumentSort.mongo(sort), skip: skip == 0 ? nil : skip, limit: limit)
            return try await collection(name).find(filter.mongo, options: options, session: session(transaction)).toArray()
        }
    }

    public func count(_ name: String, _ filter: DocumentFilter, in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int {
        try await wrap { () async throws(MongoError) in try await collection(name).countDocuments(filter.mongo, session: session(transaction)) }
    }

    public func update(_ name: String, _ filter: DocumentFilter, _ updates: [DocumentUpdate], many: Bool, upsert: Bool,
                       in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int {
        guard !updates.contains(where: { $0.path == "_id" }) else { throw DocumentStoreError(.invalidOperation, "the _id field cannot be updated") }
        var update = DocumentUpdate.mongo(updates)
        var inc = update["$inc"]?.documentValue ?? [:]
        inc["_version"] = .int64(1)
        update["$inc"] = .document(inc)
        return try await wrap { () async throws(MongoError) in
            let c = collection(name)
            let result = many
                ? try await c.updateMany(filter.mongo, update, upsert: upsert, session: session(transaction))
                : try await c.updateOne(filter.mongo, update, upsert: upsert, session: session(transaction))
            return result.matchedCount
        }
    }

    public func replace(_ name: String, _ document: BSONDocument, expectedVersion: Int64,
                        in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int64 {
        try await replace(name, document, expectedVersion: expectedVersion, mark: .int64(.random(in: .min ... .max)), in: transaction)
    }

    /// The compare-and-set, idempotent by itself. The document carries `_write`, a mark of this one write, and is
    /// retried after a network error without MongoDB's retryable-write record (`MongoWriteRetry.idempotent`).
    /// When the condition no longer holds (the version moved on, or the document exists), the stored document
    /// is read back: if it has this write's version and mark, an earlier attempt was applied and only its reply
    /// was lost — success, not a lost race (which would drop the actor as fenced, even after a server restart
    /// that forgot its retryable-write records). And the server keeps no record per write: MongoDB writes one to
    /// `config.transactions` with every retryable write, and a test server that keeps them in a list pays for
    /// each write with a scan of that list.
    func replace(_ name: String, _ document: BSONDocument, expectedVersion: Int64, mark: BSONValue,
                 in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int64 {
        guard let id = document["_id"] else { throw DocumentStoreError(.invalidOperation, "document without _id") }
        let version = expectedVersion + 1
        var doc = document
        doc["_version"] = .int64(version)
        doc["_write"] = mark
        let applied = try await wrap { () async throws(MongoError) -> Bool in
            let c = collection(name)
            guard expectedVersion > 0 else {
                do throws(MongoError) {
                    try await c.insertOne(doc, session: session(transaction), retry: .idempotent)
                    return true
                } catch where error.isDuplicateKey {
                    return false
                }
            }
            return try await c.replaceOne(["_id": id, "_version": .int64(expectedVersion)], doc, session: session(transaction),
                                          retry: .idempotent).matchedCount == 1
        }
        if applied { return version }
        let stored = try await find(name, .eq("_id", id), sort: [], skip: 0, limit: 1, in: transaction).first
        guard let stored, stored["_version"]?.intValue == Int(version), stored["_write"] == mark else {
            throw DocumentStoreError(.versionConflict, "\(name)/\(ExtendedJSON.json(id, mode: .relaxed).text) is not at version \(expectedVersion)")
        }
        return version
    }

    public func delete(_ name: String, _ filter: DocumentFilter, many: Bool, in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int {
        try await wrap { () async throws(MongoError) in
            let c = collection(name)
            return many
                ? try await c.deleteMany(filter.mongo, session: session(transaction)).deletedCount
                : try await c.deleteOne(filter.mongo, session: session(transaction)).deletedCount
        }
    }

    public func transaction<T: Sendable>(_ body: @Sendable (DocumentTransaction) async throws -> T) async throws -> T {
        try await database.client.withSession { session in
            try await session.withTransaction { try await body(DocumentTransaction(context: session)) }
        }
    }

    /// MongoDB's TTL monitor removes expired documents by itself.
    public func sweepExpired() async throws(DocumentStoreError) -> Int { 0 }
}
