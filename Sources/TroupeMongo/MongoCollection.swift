public import TroupeBSON

/// Options of `find`.
public struct MongoFindOptions: Sendable {
    /// The fields to return (nil: all).
    public var projection: BSONDocument?
    /// The order of the results.
    public var sort: BSONDocument?
    /// Documents to skip first.
    public var skip: Int?
    /// Documents to return at most.
    public var limit: Int?
    /// Documents per batch the server returns.
    public var batchSize: Int?
    /// The index to use.
    public var hint: BSONValue?
    /// The server's time limit for the query (`maxTimeMS`).
    public var maxTime: Duration?
    /// Where the query may go (nil: the client's default).
    public var readPreference: MongoReadPreference?

    /// Options of a `find`; see each property.
    public init(projection: BSONDocument? = nil, sort: BSONDocument? = nil, skip: Int? = nil, limit: Int? = nil,
                batchSize: Int? = nil, hint: BSONValue? = nil, maxTime: Duration? = nil, readPreference: MongoReadPreference? = nil) {
        self.projection = projection
        self.sort = sort
        self.skip = skip
        self.limit = limit
        self.batchSize = batchSize
        self.hint = hint
        self.maxTime = maxTime
        self.readPreference = readPreference
    }
}

/// The ids of the documents an `insertMany` inserted.
public struct MongoInsertManyResult: Sendable { public var insertedIDs: [BSONValue] }
/// What an update matched, changed and upserted.
public struct MongoUpdateResult: Sendable, Equatable {
    /// Documents the filter matched.
    public var matchedCount: Int
    /// Documents the update changed.
    public var modifiedCount: Int
    /// The id of the document inserted by an upsert, if one was.
    public var upsertedID: BSONValue?

    /// A result with the counts and id given.
    public init(matchedCount: Int, modifiedCount: Int, upsertedID: BSONValue?) {
        self.matchedCount = matchedCount
        self.modifiedCount = modifiedCount
        self.upsertedID = upsertedID
    }
}
/// How many documents a delete removed.
public struct MongoDeleteResult: Sendable, Equatable { public var deletedCount: Int }

/// An index to create.
public struct MongoIndexModel: Sendable {
    /// The indexed fields and their directions (`["user": 1, "time": -1]`).
    public var keys: BSONDocument
    /// The index's name (nil: made from the keys, as the server does).
    public var name: String?
    /// Refuse two documents with the same keys.
    public var unique: Bool
    /// TTL: documents expire this many seconds after the date in the (single) indexed field.
    public var expireAfterSeconds: Int?
    /// Index only the documents matching this filter.
    public var partialFilter: BSONDocument?
    /// Leave out documents without the indexed field.
    public var sparse: Bool

    /// An index on `keys`; see each property.
    public init(keys: BSONDocument, name: String? = nil, unique: Bool = false, expireAfterSeconds: Int? = nil,
                partialFilter: BSONDocument? = nil, sparse: Bool = false) {
        self.keys = keys
        self.name = name
        self.unique = unique
        self.expireAfterSeconds = expireAfterSeconds
        self.partialFilter = partialFilter
        self.sparse = sparse
    }

    var document: BSONDocument {
        var doc: BSONDocument = ["key": .document(keys)]
        doc["name"] = .string(name ?? keys.elements.map { "\($0.key)_\($0.value.intValue.map(String.init) ?? $0.value.stringValue ?? "x")" }.joined(separator: "_"))
        if unique { doc["unique"] = true }
        if sparse { doc["sparse"] = true }
        if let expireAfterSeconds { doc["expireAfterSeconds"] = .int32(Int32(clamping: expireAfterSeconds)) }
        if let partialFilter { doc["partialFilterExpression"] = .document(partialFilter) }
        return doc
    }
}

/// One operation of a bulk write.
public enum MongoWriteModel: Sendable {
    case insertOne(BSONDocument)
    case updateOne(filter: BSONDocument, update: BSONDocument, upsert: Bool = false)
    case updateMany(filter: BSONDocument, update: BSONDocument, upsert: Bool = false)
    case replaceOne(filter: BSONDocument, replacement: BSONDocument, upsert: Bool = false)
    case deleteOne(BSONDocument)
    case deleteMany(BSONDocument)
}

enum MongoBulkKind: Equatable { case insert, update, delete }

/// The counts of a bulk write.
public struct MongoBulkWriteResult: Sendable, Equatable {
    /// Documents inserted.
    public var insertedCount = 0
    /// Documents matched by updates and replacements.
    public var matchedCount = 0
    /// Documents changed by updates and replacements.
    public var modifiedCount = 0
    /// Documents deleted.
    public var deletedCount = 0
    /// Documents inserted by upserts.
    public var upsertedCount = 0
}

/// A collection of `T` documents (`BSONDocument` for untyped access).
public struct MongoCollection<T: Codable & Sendable>: Sendable {
    /// The database it belongs to.
    public let database: MongoDatabase
    /// Its name.
    public let name: String
    var client: MongoClient { database.client }

    init(database: MongoDatabase, name: String) {
        self.database = database
        self.name = name
    }

    func encode(_ value: T) throws(MongoError) -> BSONDocument {
        if let doc = value as? BSONDocument { return doc }
        do {
            return try BSONEncoder().encode(value)
        } catch {
            throw MongoError(.bson, "cannot encode \(T.self): \(error.message)", underlying: error)
        }
    }

    /// Puts an `_id` first when the document has none.
    static func withID(_ doc: BSONDocument) -> (BSONDocument, BSONValue) {
        if let id = doc["_id"] { return (doc, id) }
        let id = BSONValue.objectID(BSONObjectID())
        var out = BSONDocument()
        out.reserveCapacity(doc.count + 1)
        out.append("_id", id)
        for (k, v) in doc.elements { out.append(k, v) }
        return (out, id)
    }

    /// Throws the write errors of a write command reply.
    static func checkWriteErrors(_ reply: BSONDocument) throws(MongoError) {
        guard let errors = reply["writeErrors"]?.arrayValue, !errors.isEmpty else { return }
        let list = errors.compactMap(\.documentValue).map {
            MongoError.WriteError(index: $0["index"]?.intValue ?? 0, code: $0["code"]?.intValue ?? 0, message: $0["errmsg"]?.stringValue ?? "")
        }
        let first = list.first!
        throw MongoError(.server, first.message, code: first.code, codeName: errors.first?.documentValue?["codeName"]?.stringValue,
                         writeErrors: list, reply: reply.extendedJSON(.relaxed))
    }

    // MARK: Insert

    /// Inserts one document; returns its `_id` (generated when missing). `retry`: how a network error or a
    /// retryable server error is retried (MongoDB's retryable writes by default).
    @discardableResult
    public func insertOne(_ value: T, session: MongoSession? = nil, retry: MongoWriteRetry = .retryableWrite) async throws(MongoError) -> BSONValue {
        let (doc, id) = Self.withID(try encode(value))
        let (reply, _) = try await client.execute(["insert": .string(name), "ordered": true], database: database.name,
                                                  kind: .write(retry), session: session, sequences: [("documents", [doc])])
        try Self.checkWriteErrors(reply)
        return id
    }

    /// Inserts documents in batches bounded by the server's write batch and message sizes.
    @discardableResult
    public func insertMany(_ values: [T], ordered: Bool = true, session: MongoSession? = nil) async throws(MongoError) -> MongoInsertManyResult {
        var docs = [BSONDocument]()
        var ids = [BSONValue]()
        docs.reserveCapacity(values.count)
        ids.reserveCapacity(values.count)
        for value in values {
            let (doc, id) = Self.withID(try encode(value))
            docs.append(doc)
            ids.append(id)
        }
        var start = 0
        var firstError: MongoError?
        while start < docs.count {
            var end = start
            var bytes = 0
            while end < docs.count, end - start < 100_000, bytes < 40_000_000 {
                bytes += docs[end].encodedSize
                end += 1
            }
            let batch = Array(docs[start..<end])
            let (reply, _) = try await client.execute(["insert": .string(name), "ordered": .bool(ordered)], database: database.name,
                                                      kind: .write(.retryableWrite), session: session, sequences: [("documents", batch)])
            do {
                try Self.checkWriteErrors(reply)
            } catch {
                var shifted = error
                shifted.writeErrors = error.writeErrors.map { .init(index: $0.index + start, code: $0.code, message: $0.message) }
                if ordered { throw shifted }
                if firstError == nil { firstError = shifted } else { firstError!.writeErrors += shifted.writeErrors }
            }
            start = end
        }
        if let firstError { throw firstError }
        return MongoInsertManyResult(insertedIDs: ids)
    }

    // MARK: Find

    /// The documents matching `filter`, as a cursor that fetches further batches as it is read.
    public func find(_ filter: BSONDocument = [:], options: MongoFindOptions = MongoFindOptions(),
                     session: MongoSession? = nil) async throws(MongoError) -> MongoCursor<T> {
        var command: BSONDocument = ["find": .string(name), "filter": .document(filter)]
        if let p = options.projection { command["projection"] = .document(p) }
        if let s = options.sort { command["sort"] = .document(s) }
        if let s = options.skip { command["skip"] = .int64(Int64(s)) }
        if let l = options.limit {
            if l < 0 {
                command["limit"] = .int64(Int64(-l))
                command["singleBatch"] = true
            } else if l > 0 {
                command["limit"] = .int64(Int64(l))
            }
        }
        if let b = options.batchSize { command["batchSize"] = .int32(Int32(clamping: b)) }
        if let h = options.hint { command["hint"] = h }
        if let t = options.maxTime { command["maxTimeMS"] = .int64(t.nanosecondsClamped / 1_000_000) }
        return try await openCursor(command, kind: .read(options.readPreference ?? client.settings.readPreference),
                                    session: session, batchSize: options.batchSize)
    }

    func openCursor(_ command: BSONDocument, kind: MongoClient.CommandKind, session: MongoSession?, batchSize: Int?,
                    maxAwaitTime: Duration? = nil) async throws(MongoError) -> MongoCursor<T> {
        let owned = session == nil
        let cursorSession = session ?? client.startSession()
        do {
            let (reply, pool) = try await client.execute(command, database: database.name, kind: kind, session: cursorSession)
            return try MongoCursor(client: client, pool: pool, session: cursorSession, ownsSession: owned, reply: reply,
                                   batchSize: batchSize, maxAwaitTime: maxAwaitTime)
        } catch {
            if owned { await cursorSession.end() }
            throw error
        }
    }

    /// The first document matching `filter`.
    public func findOne(_ filter: BSONDocument = [:], sort: BSONDocument? = nil, projection: BSONDocument? = nil,
                        session: MongoSession? = nil) async throws(MongoError) -> T? {
        var command: BSONDocument = ["find": .string(name), "filter": .document(filter), "limit": .int64(1), "singleBatch": true]
        if let sort { command["sort"] = .document(sort) }
        if let projection { command["projection"] = .document(projection) }
        let (reply, _) = try await client.execute(command, database: database.name, kind: .read(client.settings.readPreference), session: session)
        guard case .document(let doc)? = reply["cursor"]?.documentValue?["firstBatch"]?.arrayValue?.first else { return nil }
        if let same = doc as? T { return same }
        do {
            return try BSONDecoder().decode(T.self, from: doc)
        } catch {
            throw MongoError(.bson, "cannot decode \(T.self) from \(name): \(error.message)", underlying: error)
        }
    }

    // MARK: Update / replace / delete

    private func update(_ statement: BSONDocument, retry: MongoWriteRetry, session: MongoSession?) async throws(MongoError) -> MongoUpdateResult {
        let (reply, _) = try await client.execute(["update": .string(name), "ordered": true], database: database.name,
                                                  kind: .write(retry), session: session, sequences: [("updates", [statement])])
        try Self.checkWriteErrors(reply)
        let upserted = reply["upserted"]?.arrayValue?.first?.documentValue?["_id"]
        return MongoUpdateResult(matchedCount: reply["n"]?.intValue.map { $0 - (upserted == nil ? 0 : 1) } ?? 0,
                                 modifiedCount: reply["nModified"]?.intValue ?? 0, upsertedID: upserted)
    }

    private static func updateStatement(_ filter: BSONDocument, _ update: BSONValue, multi: Bool, upsert: Bool,
                                        arrayFilters: [BSONDocument]?) -> BSONDocument {
        var statement: BSONDocument = ["q": .document(filter), "u": update, "multi": .bool(multi), "upsert": .bool(upsert)]
        if let arrayFilters { statement["arrayFilters"] = .array(arrayFilters.map { .document($0) }) }
        return statement
    }

    /// Applies update operators (`$set`, `$inc`, ...) to the first match.
    @discardableResult
    public func updateOne(_ filter: BSONDocument, _ update: BSONDocument, upsert: Bool = false, arrayFilters: [BSONDocument]? = nil,
                          session: MongoSession? = nil) async throws(MongoError) -> MongoUpdateResult {
        try Self.requireOperators(update)
        return try await self.update(Self.updateStatement(filter, .document(update), multi: false, upsert: upsert, arrayFilters: arrayFilters),
                                     retry: .retryableWrite, session: session)
    }

    /// Updates every match with the update operators of `update`; `arrayFilters` select array elements to change.
    @discardableResult
    public func updateMany(_ filter: BSONDocument, _ update: BSONDocument, upsert: Bool = false, arrayFilters: [BSONDocument]? = nil,
                           session: MongoSession? = nil) async throws(MongoError) -> MongoUpdateResult {
        try Self.requireOperators(update)
        return try await self.update(Self.updateStatement(filter, .document(update), multi: true, upsert: upsert, arrayFilters: arrayFilters),
                                     retry: .never, session: session)
    }

    /// Replaces the first match with `replacement` (which must not contain update operators). `retry`: how a
    /// network error or a retryable server error is retried (MongoDB's retryable writes by default).
    @discardableResult
    public func replaceOne(_ filter: BSONDocument, _ replacement: T, upsert: Bool = false,
                           session: MongoSession? = nil, retry: MongoWriteRetry = .retryableWrite) async throws(MongoError) -> MongoUpdateResult {
        let doc = try encode(replacement)
        guard !(doc.keys.first?.hasPrefix("$") ?? false) else { throw MongoError(.invalidUse, "a replacement document cannot start with an update operator") }
        return try await update(Self.updateStatement(filter, .document(doc), multi: false, upsert: upsert, arrayFilters: nil),
                                retry: retry, session: session)
    }

    static func requireOperators(_ update: BSONDocument) throws(MongoError) {
        guard let first = update.keys.first, first.hasPrefix("$") else {
            throw MongoError(.invalidUse, "an update document must use update operators ($set, $inc, ...); use replaceOne to replace")
        }
    }

    /// Deletes the first match.
    @discardableResult
    public func deleteOne(_ filter: BSONDocument, session: MongoSession? = nil) async throws(MongoError) -> MongoDeleteResult {
        try await delete(filter, limit: 1, session: session)
    }

    /// Deletes every match.
    @discardableResult
    public func deleteMany(_ filter: BSONDocument, session: MongoSession? = nil) async throws(MongoError) -> MongoDeleteResult {
        try await delete(filter, limit: 0, session: session)
    }

    private func delete(_ filter: BSONDocument, limit: Int, session: MongoSession?) async throws(MongoError) -> MongoDeleteResult {
        let (reply, _) = try await client.execute(["delete": .string(name), "ordered": true], database: database.name,
                                                  kind: .write(limit == 1 ? .retryableWrite : .never), session: session,
                                                  sequences: [("deletes", [["q": .document(filter), "limit": .int32(Int32(limit))]])])
        try Self.checkWriteErrors(reply)
        return MongoDeleteResult(deletedCount: reply["n"]?.intValue ?? 0)
    }

    // MARK: findAndModify

    /// Whether `findOneAndUpdate` returns the document before or after the change.
    public enum ReturnDocument: Sendable { case before, after }

    /// Atomically updates the first match and returns it (before or after the update).
    public func findOneAndUpdate(_ filter: BSONDocument, _ update: BSONDocument, sort: BSONDocument? = nil, upsert: Bool = false,
                                 returnDocument: ReturnDocument = .before, session: MongoSession? = nil) async throws(MongoError) -> T? {
        try Self.requireOperators(update)
        var command: BSONDocument = ["findAndModify": .string(name), "query": .document(filter), "update": .document(update),
                                     "new": .bool(returnDocument == .after), "upsert": .bool(upsert)]
        if let sort { command["sort"] = .document(sort) }
        return try await findAndModify(command, session: session)
    }

    /// Atomically replaces the first match and returns it (before or after the replacement).
    public func findOneAndReplace(_ filter: BSONDocument, _ replacement: T, upsert: Bool = false, returnDocument: ReturnDocument = .before,
                                  session: MongoSession? = nil) async throws(MongoError) -> T? {
        let command: BSONDocument = ["findAndModify": .string(name), "query": .document(filter), "update": .document(try encode(replacement)),
                                     "new": .bool(returnDocument == .after), "upsert": .bool(upsert)]
        return try await findAndModify(command, session: session)
    }

    /// Atomically deletes the first match (in `sort` order) and returns it.
    public func findOneAndDelete(_ filter: BSONDocument, sort: BSONDocument? = nil, session: MongoSession? = nil) async throws(MongoError) -> T? {
        var command: BSONDocument = ["findAndModify": .string(name), "query": .document(filter), "remove": true]
        if let sort { command["sort"] = .document(sort) }
        return try await findAndModify(command, session: session)
    }

    private func findAndModify(_ command: BSONDocument, session: MongoSession?) async throws(MongoError) -> T? {
        let (reply, _) = try await client.execute(command, database: database.name, kind: .write(.retryableWrite), session: session)
        guard case .document(let doc)? = reply["value"] else { return nil }
        if let same = doc as? T { return same }
        do {
            return try BSONDecoder().decode(T.self, from: doc)
        } catch {
            throw MongoError(.bson, "cannot decode \(T.self): \(error.message)", underlying: error)
        }
    }

    // MARK: Bulk

    /// Runs a mixed list of writes: ordered stops at the first error, unordered runs them all.
    @discardableResult
    public func bulkWrite(_ models: [MongoWriteModel], ordered: Bool = true, session: MongoSession? = nil) async throws(MongoError) -> MongoBulkWriteResult {
        typealias Kind = MongoBulkKind
        func kind(_ m: MongoWriteModel) -> Kind {
            switch m {
            case .insertOne: .insert
            case .updateOne, .updateMany, .replaceOne: .update
            case .deleteOne, .deleteMany: .delete
            }
        }
        var groups: [(Kind, [MongoWriteModel])] = []
        if ordered {
            for m in models {
                if let last = groups.last, last.0 == kind(m) { groups[groups.count - 1].1.append(m) } else { groups.append((kind(m), [m])) }
            }
        } else {
            for k in [Kind.insert, .update, .delete] {
                let ms = models.filter { kind($0) == k }
                if !ms.isEmpty { groups.append((k, ms)) }
            }
        }
        var result = MongoBulkWriteResult()
        var errors: [MongoError] = []
        for (k, ms) in groups {
            var statements = [BSONDocument]()
            var multi = false
            for m in ms {
                switch m {
                case .insertOne(let doc): statements.append(Self.withID(doc).0)
                case .updateOne(let f, let u, let up):
                    try Self.requireOperators(u)
                    statements.append(Self.updateStatement(f, .document(u), multi: false, upsert: up, arrayFilters: nil))
                case .updateMany(let f, let u, let up):
                    try Self.requireOperators(u)
                    multi = true
                    statements.append(Self.updateStatement(f, .document(u), multi: true, upsert: up, arrayFilters: nil))
                case .replaceOne(let f, let r, let up): statements.append(Self.updateStatement(f, .document(r), multi: false, upsert: up, arrayFilters: nil))
                case .deleteOne(let f): statements.append(["q": .document(f), "limit": .int32(1)])
                case .deleteMany(let f):
                    multi = true
                    statements.append(["q": .document(f), "limit": .int32(0)])
                }
            }
            let (command, field): (String, String) = switch k {
            case .insert: ("insert", "documents")
            case .update: ("update", "updates")
            case .delete: ("delete", "deletes")
            }
            let (reply, _) = try await client.execute(BSONDocument([(command, .string(name)), ("ordered", .bool(ordered))]),
                                                      database: database.name, kind: .write(multi ? .never : .retryableWrite), session: session,
                                                      sequences: [(field, statements)])
            let n = reply["n"]?.intValue ?? 0
            switch k {
            case .insert: result.insertedCount += n
            case .update:
                let upserts = reply["upserted"]?.arrayValue?.count ?? 0
                result.upsertedCount += upserts
                result.matchedCount += n - upserts
                result.modifiedCount += reply["nModified"]?.intValue ?? 0
            case .delete: result.deletedCount += n
            }
            do {
                try Self.checkWriteErrors(reply)
            } catch {
                if ordered { throw error }
                errors.append(error)
            }
        }
        if var first = errors.first {
            first.writeErrors = errors.flatMap(\.writeErrors)
            throw first
        }
        return result
    }

    // MARK: Counting, distinct, aggregation

    /// The number of documents matching `filter` (an aggregation; exact).
    public func countDocuments(_ filter: BSONDocument = [:], session: MongoSession? = nil) async throws(MongoError) -> Int {
        let pipeline: [BSONDocument] = [["$match": .document(filter)], ["$group": ["_id": 1, "n": ["$sum": 1]]]]
        let (reply, _) = try await client.execute(["aggregate": .string(name), "pipeline": .array(pipeline.map { .document($0) }), "cursor": [:]],
                                                  database: database.name, kind: .read(client.settings.readPreference), session: session)
        return reply["cursor"]?.documentValue?["firstBatch"]?.arrayValue?.first?.documentValue?["n"]?.intValue ?? 0
    }

    /// The number of documents from the collection's metadata (fast; may be off after an unclean shutdown).
    public func estimatedDocumentCount() async throws(MongoError) -> Int {
        let (reply, _) = try await client.execute(["count": .string(name)], database: database.name,
                                                  kind: .read(client.settings.readPreference), session: nil)
        return reply["n"]?.intValue ?? 0
    }

    /// The distinct values of `field` among the documents matching `filter`.
    public func distinct(_ field: String, filter: BSONDocument = [:], session: MongoSession? = nil) async throws(MongoError) -> [BSONValue] {
        let (reply, _) = try await client.execute(["distinct": .string(name), "key": .string(field), "query": .document(filter)],
                                                  database: database.name, kind: .read(client.settings.readPreference), session: session)
        return reply["values"]?.arrayValue ?? []
    }

    /// Runs an aggregation pipeline; results come back as documents.
    public func aggregate(_ pipeline: [BSONDocument], batchSize: Int? = nil, session: MongoSession? = nil) async throws(MongoError) -> MongoCursor<BSONDocument> {
        var cursor: BSONDocument = [:]
        if let batchSize { cursor["batchSize"] = .int32(Int32(clamping: batchSize)) }
        let command: BSONDocument = ["aggregate": .string(name), "pipeline": .array(pipeline.map { .document($0) }), "cursor": .document(cursor)]
        let writes = pipeline.contains { $0.keys.first == "$out" || $0.keys.first == "$merge" }
        return try await database.collection(name).openCursor(command, kind: writes ? .write(.never) : .read(client.settings.readPreference),
                                                             session: session, batchSize: batchSize)
    }

    // MARK: Indexes

    /// Creates indexes; returns their names.
    @discardableResult
    public func createIndexes(_ models: [MongoIndexModel], session: MongoSession? = nil) async throws(MongoError) -> [String] {
        let docs = models.map(\.document)
        _ = try await client.execute(["createIndexes": .string(name), "indexes": .array(docs.map { .document($0) })],
                                     database: database.name, kind: .write(.never), session: session)
        return docs.compactMap { $0["name"]?.stringValue }
    }

    /// Creates one index; returns its name.
    @discardableResult
    public func createIndex(_ model: MongoIndexModel) async throws(MongoError) -> String {
        try await createIndexes([model]).first ?? ""
    }

    /// The collection's indexes, as the server describes them.
    public func listIndexes() async throws(MongoError) -> [BSONDocument] {
        try await database.collection(name).openCursor(["listIndexes": .string(name)], kind: .read(.primary), session: nil, batchSize: nil).toArray()
    }

    /// Drops the index `name`.
    public func dropIndex(_ name: String) async throws(MongoError) {
        _ = try await client.execute(["dropIndexes": .string(self.name), "index": .string(name)], database: database.name, kind: .other, session: nil)
    }

    /// Drops every index except `_id`'s.
    public func dropIndexes() async throws(MongoError) {
        _ = try await client.execute(["dropIndexes": .string(name), "index": "*"], database: database.name, kind: .other, session: nil)
    }

    /// Drops the collection (no error when it does not exist).
    public func drop() async throws(MongoError) {
        do {
            _ = try await client.execute(["drop": .string(name)], database: database.name, kind: .other, session: nil)
        } catch {
            if error.code == 26 { return }  // NamespaceNotFound
            throw error
        }
    }
}
