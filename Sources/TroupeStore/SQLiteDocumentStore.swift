import Foundation
public import Logging
import Synchronization
public import TroupeBSON
import TroupeCore

/// The embedded engine: documents as JSON rows in SQLite (one table per collection), unique indexes on
/// JSON paths, TTL by an expiry column and ``sweepExpired()``, transactions with `BEGIN IMMEDIATE`.
/// Filters are pushed into SQL where that is exact and always re-checked in process, so every filter
/// of the vocabulary works; sorting and paging happen in process (this engine serves embedded sizes).
public final class SQLiteDocumentStore: DocumentStoreEngine {
    public let engineName = "sqlite"
    let handle: SQLiteHandle
    /// Single-statement operations (reads, compare-and-set writes) share the connection; transactions
    /// and multi-statement writes hold it alone, so no statement lands inside someone else's transaction.
    private let lock = AsyncSharedLock()
    private let state = Guarded(State())

    private struct State {
        var ttl: [String: (field: String, seconds: Int)] = [:]
        var prepared: Set<String> = []
        var activeTransaction: UInt64?
        var nextTransaction: UInt64 = 1
    }

    private struct TransactionToken: Sendable { let id: UInt64 }

    private init(handle: SQLiteHandle) {
        self.handle = handle
    }

    /// Opens (or creates) the database at `path`; `nil` keeps it in memory.
    public static func open(path: String? = nil, logger: Logger = Logger(label: "troupe.store.sqlite")) async throws(DocumentStoreError) -> SQLiteDocumentStore {
        do {
            let handle = try SQLiteHandle.open(path: path)
            try handle.query("PRAGMA journal_mode=WAL")
            try handle.query("PRAGMA synchronous=NORMAL")
            return SQLiteDocumentStore(handle: handle)
        } catch {
            throw DocumentStoreError(.engine, "cannot open SQLite database \(path ?? ":memory:"): \(error.message)", underlying: error)
        }
    }

    /// Closes the database (dropping the store closes it too).
    public func close() async {
        handle.close()
    }

    static func table(_ collection: String) -> String { "\"d_\(collection)\"" }

    static func jsonPath(_ field: String) throws(DocumentStoreError) -> String {
        guard !field.isEmpty, field.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ".") }) else {
            throw DocumentStoreError(.invalidOperation, "field path \"\(field)\" must be ASCII letters, digits, _ and .")
        }
        return "'$.\(field)'"
    }

    static func idKey(_ id: BSONValue) -> String { ExtendedJSON.json(id, mode: .canonical).text }

    // MARK: Locking and queries

    /// Runs `body` under the connection lock unless it belongs to the active transaction.
    private func locked<T: Sendable>(_ transaction: DocumentTransaction?, shared: Bool = false,
                                     _ body: () async throws(DocumentStoreError) -> T) async throws(DocumentStoreError) -> T {
        if let token = transaction?.context as? TransactionToken {
            guard state.withLock({ $0.activeTransaction == token.id }) else {
                throw DocumentStoreError(.invalidOperation, "the transaction has already finished")
            }
            return try await body()
        }
        await lock.lock(exclusive: !shared)
        defer { lock.unlock(exclusive: !shared) }
        return try await body()
    }

    private func query(_ sql: String, _ binds: [SQLiteValue] = []) throws(DocumentStoreError) -> [[SQLiteValue]] {
        do {
            return try handle.query(sql, binds)
        } catch {
            if error.isConstraint { throw DocumentStoreError(.duplicateKey, "duplicate key: \(error.message)", underlying: error) }
            throw DocumentStoreError(.engine, "SQLite: \(error.message)", underlying: error)
        }
    }

    /// Runs one statement outside any document transaction (shared: next to other single statements;
    /// exclusive: alone), for tables of this database that are not collections (`SQLiteActorStateStore`).
    @discardableResult
    package func execute(exclusive: Bool = false, _ sql: String, _ binds: [SQLiteValue] = []) async throws(DocumentStoreError) -> [[SQLiteValue]] {
        try await locked(nil, shared: !exclusive) { () async throws(DocumentStoreError) in try query(sql, binds) }
    }

    // MARK: Engine

    public func prepare(collection: String, indexes: [DocumentIndex]) async throws(DocumentStoreError) {
        let table = Self.table(collection)
        try await locked(nil) { () async throws(DocumentStoreError) in
            _ = try query("CREATE TABLE IF NOT EXISTS \(table) (id TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL, expires_at INTEGER, doc TEXT NOT NULL)")
            _ = try query("CREATE INDEX IF NOT EXISTS \"d_\(collection)_expiry\" ON \(table)(expires_at) WHERE expires_at IS NOT NULL")
            for index in indexes {
                var columns = [String]()
                for field in index.fields { columns.append("json_extract(doc, \(try Self.jsonPath(field)))") }
                let unique = index.unique ? "UNIQUE " : ""
                _ = try query("CREATE \(unique)INDEX IF NOT EXISTS \"d_\(collection)_\(index.name)\" ON \(table)(\(columns.joined(separator: ", ")))")
                if let seconds = index.expireAfterSeconds, let field = index.fields.first {
                    state.withLock { $0.ttl[collection] = (field, seconds) }
                }
            }
            state.withLock { _ = $0.prepared.insert(collection) }
        }
    }

    private func expiry(_ collection: String, _ doc: BSONDocument) -> SQLiteValue {
        guard let (field, seconds) = state.withLock({ $0.ttl[collection] }), case .datetime(let ms)? = doc.value(atPath: field) else { return .null }
        return .integer(Int(ms / 1000) + seconds)
    }

    private func ensurePrepared(_ collection: String) throws(DocumentStoreError) {
        guard state.withLock({ $0.prepared.contains(collection) }) else {
            throw DocumentStoreError(.invalidOperation, "collection \(collection) was not opened through DocumentStore.collection(_:of:)")
        }
    }

    private func writeRow(_ collection: String, _ doc: BSONDocument, version: Int64, insert: Bool) async throws(DocumentStoreError) {
        var stored = doc
        stored["_version"] = .int64(version)
        let json = ExtendedJSON.encode(stored, mode: .relaxed)
        let id = Self.idKey(doc["_id"]!)
        if insert {
            _ = try query("INSERT INTO \(Self.table(collection)) (id, version, expires_at, doc) VALUES (?, ?, ?, ?)",
                                [.text(id), .integer(Int(version)), expiry(collection, doc), .text(json)])
        } else {
            _ = try query("UPDATE \(Self.table(collection)) SET version = ?, expires_at = ?, doc = ? WHERE id = ?",
                                [.integer(Int(version)), expiry(collection, doc), .text(json), .text(id)])
        }
    }

    public func insert(_ collection: String, _ documents: [BSONDocument], in transaction: DocumentTransaction?) async throws(DocumentStoreError) {
        try ensurePrepared(collection)
        try await locked(transaction) { () async throws(DocumentStoreError) in
            // Several documents: all or none.
            let wrap = transaction == nil && documents.count > 1
            if wrap { _ = try query("SAVEPOINT bulk_insert") }
            do throws(DocumentStoreError) {
                for doc in documents {
                    guard doc["_id"] != nil else { throw DocumentStoreError(.invalidOperation, "document without _id") }
                    try await writeRow(collection, doc, version: 1, insert: true)
                }
                if wrap { _ = try query("RELEASE bulk_insert") }
            } catch {
                if wrap { _ = try? query("ROLLBACK TO bulk_insert"); _ = try? query("RELEASE bulk_insert") }
                throw error
            }
        }
    }

    /// Candidate rows from SQL (a superset of the matches), then the exact filter in process.
    private func matching(_ collection: String, _ filter: DocumentFilter) async throws(DocumentStoreError) -> [BSONDocument] {
        try ensurePrepared(collection)
        var binds = [SQLiteValue]()
        let condition = Self.sql(filter, &binds) ?? "1"
        let now = Int(Date().timeIntervalSince1970)
        binds.append(.integer(now))
        let rows = try query("SELECT doc FROM \(Self.table(collection)) WHERE (\(condition)) AND (expires_at IS NULL OR expires_at > ?) ORDER BY rowid", binds)
        var out = [BSONDocument]()
        out.reserveCapacity(rows.count)
        for row in rows {
            guard case .text(let json)? = row.first else { continue }
            let doc: BSONDocument
            do {
                doc = try BSONDocument(extendedJSON: json)
            } catch {
                throw DocumentStoreError(.engine, "corrupt row in \(collection): \(error.message)", underlying: error)
            }
            if DocumentMatcher.matches(doc, filter) { out.append(doc) }
        }
        return out
    }

    /// An SQL condition that every match satisfies (nil: no useful condition).
    static func sql(_ filter: DocumentFilter, _ binds: inout [SQLiteValue]) -> String? {
        func scalar(_ v: BSONValue) -> SQLiteValue? {
            switch v {
            case .string(let s): .text(s)
            case .int32(let i): .integer(Int(i))
            case .int64(let i): .integer(Int(i))
            case .double(let d) where d.isFinite: .float(d)
            default: nil
            }
        }
        func comparison(_ path: String, _ op: String, _ v: BSONValue, numericOnly: Bool) -> String? {
            if path == "_id", op == "=" {
                binds.append(.text(idKey(v)))
                return "id = ?"
            }
            guard let jsonPath = try? jsonPath(path), let s = scalar(v) else { return nil }
            if numericOnly, case .text = s { return nil }
            binds.append(s)
            // An array field matches element-wise in process: never exclude it here.
            return "(json_extract(doc, \(jsonPath)) \(op) ? OR json_type(doc, \(jsonPath)) = 'array')"
        }
        switch filter {
        case .all: return nil
        case .eq(let p, let v): return comparison(p, "=", v, numericOnly: false)
        case .gt(let p, let v): return comparison(p, ">", v, numericOnly: true)
        case .gte(let p, let v): return comparison(p, ">=", v, numericOnly: true)
        case .lt(let p, let v): return comparison(p, "<", v, numericOnly: true)
        case .lte(let p, let v): return comparison(p, "<=", v, numericOnly: true)
        case .in(let p, let vs):
            if p == "_id" {
                guard !vs.isEmpty else { return "0" }
                for v in vs { binds.append(.text(idKey(v))) }
                return "id IN (\(Array(repeating: "?", count: vs.count).joined(separator: ", ")))"
            }
            return nil
        case .and(let fs):
            let parts = fs.compactMap { sql($0, &binds) }
            return parts.isEmpty ? nil : parts.map { "(\($0))" }.joined(separator: " AND ")
        case .or(let fs):
            var local = [SQLiteValue]()
            var parts = [String]()
            for f in fs {
                guard let part = sql(f, &local) else { return nil }
                parts.append("(\(part))")
            }
            binds.append(contentsOf: local)
            return parts.joined(separator: " OR ")
        case .ne, .nin, .exists, .not:
            return nil
        }
    }

    public func find(_ collection: String, _ filter: DocumentFilter, sort: [DocumentSort], skip: Int, limit: Int?,
                     in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> [BSONDocument] {
        try await locked(transaction, shared: true) { () async throws(DocumentStoreError) in  // one SELECT
            var docs = try await matching(collection, filter)
            DocumentMatcher.sort(&docs, sort)
            let start = min(skip, docs.count)
            let end = limit.map { min(start + $0, docs.count) } ?? docs.count
            return Array(docs[start..<end])
        }
    }

    public func count(_ collection: String, _ filter: DocumentFilter, in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int {
        try await locked(transaction) { () async throws(DocumentStoreError) in try await matching(collection, filter).count }
    }

    public func update(_ collection: String, _ filter: DocumentFilter, _ updates: [DocumentUpdate], many: Bool, upsert: Bool,
                       in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int {
        try await locked(transaction) { () async throws(DocumentStoreError) in
            var targets = try await matching(collection, filter)
            if !many { targets = Array(targets.prefix(1)) }
            if targets.isEmpty, upsert {
                var seed = BSONDocument()
                for case .eq(let path, let value) in Self.equalities(filter) { seed = DocumentMatcher.set(seed, path: path[...], value: value) }
                if seed["_id"] == nil { seed = BSONDocument([("_id", .objectID(BSONObjectID()))] + seed.elements.map { ($0.key, $0.value) }) }
                try await writeRow(collection, try DocumentMatcher.apply(updates, to: seed), version: 1, insert: true)
                return 0
            }
            for doc in targets {
                let updated = try DocumentMatcher.apply(updates, to: doc)
                try await writeRow(collection, updated, version: Int64(doc["_version"]?.intValue ?? 0) + 1, insert: false)
            }
            return targets.count
        }
    }

    static func equalities(_ filter: DocumentFilter) -> [DocumentFilter] {
        switch filter {
        case .eq: [filter]
        case .and(let fs): fs.flatMap(equalities)
        default: []
        }
    }

    public func replace(_ collection: String, _ document: BSONDocument, expectedVersion: Int64,
                        in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int64 {
        try ensurePrepared(collection)
        guard let id = document["_id"] else { throw DocumentStoreError(.invalidOperation, "document without _id") }
        // One INSERT or one conditional UPDATE: safe next to other single statements.
        return try await locked(transaction, shared: true) { () async throws(DocumentStoreError) in
            if expectedVersion == 0 {
                do throws(DocumentStoreError) {
                    try await writeRow(collection, document, version: 1, insert: true)
                    return 1
                } catch {
                    guard error.kind == .duplicateKey else { throw error }
                    throw DocumentStoreError(.versionConflict, "\(collection)/\(ExtendedJSON.json(id, mode: .relaxed).text) already exists (expected version 0)")
                }
            }
            // One statement: the row changes only if it is at the expected version.
            var stored = document
            stored["_version"] = .int64(expectedVersion + 1)
            let rows = try query(
                "UPDATE \(Self.table(collection)) SET version = ?, expires_at = ?, doc = ? WHERE id = ? AND version = ? RETURNING version",
                [.integer(Int(expectedVersion + 1)), expiry(collection, document), .text(ExtendedJSON.encode(stored, mode: .relaxed)),
                 .text(Self.idKey(id)), .integer(Int(expectedVersion))])
            guard !rows.isEmpty else {
                throw DocumentStoreError(.versionConflict, "\(collection)/\(ExtendedJSON.json(id, mode: .relaxed).text) is not at version \(expectedVersion)")
            }
            return expectedVersion + 1
        }
    }

    public func delete(_ collection: String, _ filter: DocumentFilter, many: Bool, in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int {
        try await locked(transaction) { () async throws(DocumentStoreError) in
            var targets = try await matching(collection, filter)
            if !many { targets = Array(targets.prefix(1)) }
            for doc in targets {
                _ = try query("DELETE FROM \(Self.table(collection)) WHERE id = ?", [.text(Self.idKey(doc["_id"]!))])
            }
            return targets.count
        }
    }

    public func transaction<T: Sendable>(_ body: @Sendable (DocumentTransaction) async throws -> T) async throws -> T {
        await lock.lock(exclusive: true)
        defer { lock.unlock(exclusive: true) }
        let token = state.withLock { state -> TransactionToken in
            defer { state.nextTransaction += 1 }
            state.activeTransaction = state.nextTransaction
            return TransactionToken(id: state.nextTransaction)
        }
        defer { state.withLock { $0.activeTransaction = nil } }
        _ = try query("BEGIN IMMEDIATE")
        do {
            let result = try await body(DocumentTransaction(context: token))
            _ = try query("COMMIT")
            return result
        } catch {
            _ = try? query("ROLLBACK")
            throw error
        }
    }

    public func sweepExpired() async throws(DocumentStoreError) -> Int {
        let collections = state.withLock { Array($0.ttl.keys) }
        let now = Int(Date().timeIntervalSince1970)
        var removed = 0
        for collection in collections {
            removed += try await locked(nil) { () async throws(DocumentStoreError) in
                let rows = try query("DELETE FROM \(Self.table(collection)) WHERE expires_at IS NOT NULL AND expires_at <= ? RETURNING id", [.integer(now)])
                return rows.count
            }
        }
        return removed
    }
}
