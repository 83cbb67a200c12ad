public import TroupeBSON
public import TroupeCore

/// The one error type of TroupeStore.
public struct DocumentStoreError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure a ``DocumentStoreError`` is.
    public enum Kind: Sendable, Hashable {
        /// A unique index (or the `_id`) already holds the value.
        case duplicateKey
        /// Optimistic concurrency: the stored version is not the expected one.
        case versionConflict
        /// The document or collection name is not usable.
        case invalidOperation
        /// The value could not be encoded or decoded.
        case codec
        /// The engine failed (I/O, server error, closed store).
        case engine
    }

    /// What kind of failure this is.
    public var kind: Kind
    /// What happened, in one line.
    public var message: String
    /// The engine's error underneath, if any.
    public var underlying: (any Error)?

    /// An error of `kind` saying `message`, with its `underlying` cause.
    public init(_ kind: Kind, _ message: String, underlying: (any Error)? = nil) {
        self.kind = kind
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        "DocumentStoreError.\(kind): \(message)\(underlying.map { " — \($0)" } ?? "")"
    }
}

/// An open transaction of an engine; pass it to collections with ``DocumentStore/transaction(_:)``.
public final class DocumentTransaction: Sendable {
    let context: any Sendable
    init(context: any Sendable) { self.context = context }
}

/// What an engine implements. Documents carry `_id`; the engine keeps `_version` (1 on insert, +1 per write).
public protocol DocumentStoreEngine: Sendable {
    /// A short name for logs ("sqlite", "mongodb").
    var engineName: String { get }
    /// Creates the collection and its indexes if missing.
    func prepare(collection: String, indexes: [DocumentIndex]) async throws(DocumentStoreError)
    /// Inserts `documents` (each with an `_id`); a duplicate `_id` or unique key fails the whole call.
    func insert(_ collection: String, _ documents: [BSONDocument], in transaction: DocumentTransaction?) async throws(DocumentStoreError)
    /// The documents matching `filter`, in `sort` order, after skipping `skip`, at most `limit`.
    func find(_ collection: String, _ filter: DocumentFilter, sort: [DocumentSort], skip: Int, limit: Int?,
              in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> [BSONDocument]
    /// The number of documents matching `filter`.
    func count(_ collection: String, _ filter: DocumentFilter, in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int
    /// Applies operators to the first (or every) match; returns how many matched. `upsert` inserts
    /// a document built from the equality parts of the filter when nothing matches.
    func update(_ collection: String, _ filter: DocumentFilter, _ updates: [DocumentUpdate], many: Bool, upsert: Bool,
                in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int
    /// Compare-and-set of a whole document by `_id`: `expectedVersion` 0 inserts (conflict if present),
    /// n replaces only version n. Returns the new version; a mismatch throws `versionConflict`.
    func replace(_ collection: String, _ document: BSONDocument, expectedVersion: Int64,
                 in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int64
    /// Deletes the first (or every) match; returns how many were deleted.
    func delete(_ collection: String, _ filter: DocumentFilter, many: Bool, in transaction: DocumentTransaction?) async throws(DocumentStoreError) -> Int
    /// Runs `body` atomically (all or nothing).
    func transaction<T: Sendable>(_ body: @Sendable (DocumentTransaction) async throws -> T) async throws -> T
    /// Removes documents past their TTL; engines that expire on their own return 0.
    func sweepExpired() async throws(DocumentStoreError) -> Int
}

/// A typed value and its stored version.
public struct Versioned<T: Sendable>: Sendable {
    /// The value.
    public var value: T
    /// Its stored version (1 after the first write).
    public var version: Int64
}

/// Collections of `Codable` documents with a MongoDB-shaped vocabulary, over an engine (SQLite embedded,
/// MongoDB in production). One conformance suite runs against both.
public struct DocumentStore: Sendable {
    /// The engine documents live in.
    public let engine: any DocumentStoreEngine

    /// A store on `engine`.
    public init(engine: any DocumentStoreEngine) {
        self.engine = engine
    }

    /// A collection of `T`, created with its indexes if missing. `T` must encode an `_id` field.
    public func collection<T: Codable & Sendable>(_ name: String, of type: T.Type, indexes: [DocumentIndex] = []) async throws(DocumentStoreError) -> DocumentCollection<T> {
        try Self.validate(name)
        try await engine.prepare(collection: name, indexes: indexes)
        return DocumentCollection(engine: engine, name: name, transaction: nil)
    }

    /// Runs `body` in a transaction; use ``DocumentCollection/in(_:)`` to bind collections to it.
    public func transaction<T: Sendable>(_ body: @Sendable (DocumentTransaction) async throws -> T) async throws -> T {
        try await engine.transaction(body)
    }

    package static func validate(_ name: String) throws(DocumentStoreError) {
        guard !name.isEmpty, name.count <= 100, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            throw DocumentStoreError(.invalidOperation, "collection name \"\(name)\" must be 1–100 ASCII letters, digits or _")
        }
    }
}

/// A typed collection.
public struct DocumentCollection<T: Codable & Sendable>: Sendable {
    let engine: any DocumentStoreEngine
    /// The collection's name.
    public let name: String
    let transaction: DocumentTransaction?

    /// A collection already opened through ``DocumentStore/collection(_:of:indexes:)``, bound to `transaction`.
    public static func bound(store: DocumentStore, name: String, transaction: DocumentTransaction) -> DocumentCollection<T> {
        DocumentCollection(engine: store.engine, name: name, transaction: transaction)
    }

    /// The same collection inside `transaction`.
    public func `in`(_ transaction: DocumentTransaction) -> DocumentCollection<T> {
        DocumentCollection(engine: engine, name: name, transaction: transaction)
    }

    func encode(_ value: T) throws(DocumentStoreError) -> BSONDocument {
        let doc: BSONDocument
        do {
            doc = try BSONEncoder().encode(value)
        } catch {
            throw DocumentStoreError(.codec, "cannot encode \(T.self): \(error.message)", underlying: error)
        }
        guard doc["_id"] != nil else { throw DocumentStoreError(.invalidOperation, "\(T.self) must encode an _id field") }
        var clean = doc
        clean["_version"] = nil
        return clean
    }

    func decode(_ doc: BSONDocument) throws(DocumentStoreError) -> T {
        do {
            return try BSONDecoder().decode(T.self, from: doc)
        } catch {
            throw DocumentStoreError(.codec, "cannot decode \(T.self) from \(name): \(error.message)", underlying: error)
        }
    }

    static func version(_ doc: BSONDocument) -> Int64 { Int64(doc["_version"]?.intValue ?? 0) }

    /// Inserts `value`. - Throws: `duplicateKey` when its `_id` or a unique key is taken.
    public func insert(_ value: T) async throws(DocumentStoreError) {
        try await engine.insert(name, [try encode(value)], in: transaction)
    }

    /// Inserts `values` in one call. - Throws: `duplicateKey` when an `_id` or a unique key is taken.
    public func insert(_ values: [T]) async throws(DocumentStoreError) {
        var docs = [BSONDocument]()
        for value in values { docs.append(try encode(value)) }
        try await engine.insert(name, docs, in: transaction)
    }

    /// The document with `_id == id`, with its version.
    public func get(_ id: BSONValue) async throws(DocumentStoreError) -> Versioned<T>? {
        guard let doc = try await engine.find(name, .eq("_id", id), sort: [], skip: 0, limit: 1, in: transaction).first else { return nil }
        return Versioned(value: try decode(doc), version: Self.version(doc))
    }

    /// The values matching `filter`, in `sort` order, after skipping `skip`, at most `limit`.
    public func find(_ filter: DocumentFilter = .all, sort: [DocumentSort] = [], skip: Int = 0, limit: Int? = nil) async throws(DocumentStoreError) -> [T] {
        var out = [T]()
        for doc in try await engine.find(name, filter, sort: sort, skip: skip, limit: limit, in: transaction) { out.append(try decode(doc)) }
        return out
    }

    /// The first value matching `filter` in `sort` order.
    public func findOne(_ filter: DocumentFilter, sort: [DocumentSort] = []) async throws(DocumentStoreError) -> T? {
        try await find(filter, sort: sort, limit: 1).first
    }

    /// The number of documents matching `filter`.
    public func count(_ filter: DocumentFilter = .all) async throws(DocumentStoreError) -> Int {
        try await engine.count(name, filter, in: transaction)
    }

    /// Applies `updates` to the first (or, with `many`, every) match; returns how many matched. With `upsert`, a
    /// document built from the equality parts of the filter is inserted when nothing matches.
    @discardableResult
    public func update(_ filter: DocumentFilter, _ updates: [DocumentUpdate], many: Bool = false, upsert: Bool = false) async throws(DocumentStoreError) -> Int {
        try await engine.update(name, filter, updates, many: many, upsert: upsert, in: transaction)
    }

    /// Optimistic concurrency: writes `value` if the stored version is `expectedVersion` (0 = must not exist).
    /// Returns the new version; throws `versionConflict` otherwise.
    @discardableResult
    public func save(_ value: T, expectedVersion: Int64) async throws(DocumentStoreError) -> Int64 {
        try await engine.replace(name, try encode(value), expectedVersion: expectedVersion, in: transaction)
    }

    /// Writes `value` whatever the stored version (read, then compare-and-set, retried on conflict).
    @discardableResult
    public func upsert(_ value: T) async throws(DocumentStoreError) -> Int64 {
        let doc = try encode(value)
        for _ in 0..<16 {
            let current = try await engine.find(name, .eq("_id", doc["_id"]!), sort: [], skip: 0, limit: 1, in: transaction).first
            do {
                return try await engine.replace(name, doc, expectedVersion: current.map(Self.version) ?? 0, in: transaction)
            } catch where error.kind == .versionConflict || error.kind == .duplicateKey {
                continue
            }
        }
        throw DocumentStoreError(.versionConflict, "upsert of \(doc["_id"]!) kept conflicting with concurrent writers")
    }

    /// Deletes the first (or, with `many`, every) match; returns how many were deleted.
    @discardableResult
    public func delete(_ filter: DocumentFilter, many: Bool = false) async throws(DocumentStoreError) -> Int {
        try await engine.delete(name, filter, many: many, in: transaction)
    }

    /// Deletes the document with `_id == id`; returns whether there was one.
    @discardableResult
    public func delete(id: BSONValue) async throws(DocumentStoreError) -> Bool {
        try await engine.delete(name, .eq("_id", id), many: false, in: transaction) == 1
    }
}

extension DocumentStoreError: TransientError {
    /// An engine failure that the engine's own error calls transient (a dropped MongoDB connection, a
    /// primary stepping down, a busy SQLite database).
    public var isTransient: Bool { kind == .engine && (underlying.map(TroupeCore.isTransient) ?? false) }
}
