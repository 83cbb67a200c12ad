import Foundation
import TroupeCore
public import TroupeActors
public import TroupeStore
import TroupeBSON

/// The actor-state store of the runtime on a `DocumentStore`: one document per actor, its state a real
/// subdocument that the database's own tools can read, query and index:
///
/// ```json
/// {"_id": "OrderActor/42", "type": "OrderActor", "key": "42", "_version": 7,
///  "state": {"info": {"status": "completed", "createdAt": 1733300000000, …}, "outbox": {…}}}
/// ```
///
/// (`Date` fields are BSON dates.) Compare-and-set on `_version`. The consistency toolkit's outbox lives in
/// the same document, so state and events commit together. States written by earlier versions as an opaque
/// binary field (`state` as BinData in Troupe's binary form) are still read, and become documents with their
/// next write.
public struct DocumentActorStateStore: ScannableActorStateStore {
    /// The document store the states live in.
    public let store: DocumentStore
    /// The collection of actor states.
    public let collectionName: String

    /// BSON subdocuments; the older binary form is read too.
    public var codec: any ActorStateCodec { DocumentStateCodec() }

    /// Opens the store's collection, creating it and its indexes when missing.
    /// - Parameter store: the document store the collection is in.
    /// - Parameter collection: the collection's name.
    /// - Parameter indexes: indexes on the states' fields, named by their path in the document
    ///   (`DocumentIndex(["state.info.status"])`), beside the store's own index on `type`.
    ///   They are created with the first read or write (a node builds its store before its database client runs).
    public init(store: DocumentStore, collection: String = "actor_state", indexes: [DocumentIndex] = []) async throws(DocumentStoreError) {
        try DocumentStore.validate(collection)
        self.store = store
        self.collectionName = collection
        self.indexes = [DocumentIndex(["type"])] + indexes
    }

    private let indexes: [DocumentIndex]
    private let prepared = Locked(false)

    /// Creates the collection and its indexes once (creating them again is harmless: two first calls may both do it).
    private func prepare() async throws(DocumentStoreError) {
        guard !prepared.withLock({ $0 }) else { return }
        try await store.engine.prepare(collection: collectionName, indexes: indexes)
        prepared.withLock { $0 = true }
    }

    public func load(type: String, key: String) async throws -> VersionedState? {
        try await prepare()
        guard let document = try await store.engine.find(collectionName, .eq("_id", .string("\(type)/\(key)")), sort: [], skip: 0, limit: 1,
                                                         in: nil).first else { return nil }
        return try Self.state(of: document, id: "\(type)/\(key)")
    }

    /// The stored state of a document: its `state` subdocument, or the older binary form.
    static func state(of document: BSONDocument, id: String) throws(DocumentStoreError) -> VersionedState {
        let version = Int64(document["_version"]?.intValue ?? 0)
        switch document["state"] {
        case .document(let state): return VersionedState(bytes: state.bytes, version: version, encoding: .bson)
        case .binary(let binary): return VersionedState(bytes: binary.data, version: version, encoding: .binary)
        default: throw DocumentStoreError(.codec, "the stored state of \(id) is neither a document nor binary")
        }
    }

    public func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
        let state: BSONDocument
        do {
            state = try BSONDocument(bytes: bytes)
        } catch {
            throw DocumentStoreError(.codec, "the state of \(type)/\(key) to store is not a BSON document (encode it with this store's codec)",
                                     underlying: error)
        }
        try await prepare()
        let document: BSONDocument = ["_id": .string("\(type)/\(key)"), "type": .string(type), "key": .string(key), "state": .document(state)]
        let result: Result<Int64, DocumentStoreError>
        do throws(DocumentStoreError) {
            result = .success(try await store.engine.replace(collectionName, document, expectedVersion: expectedVersion, in: nil))
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success: return true
        case .failure(let error) where error.kind == .versionConflict: return false
        case .failure(let error): throw error
        }
    }

    public func delete(type: String, key: String) async throws {
        try await prepare()
        _ = try await store.engine.delete(collectionName, .eq("_id", .string("\(type)/\(key)")), many: false, in: nil)
    }

    public func states(ofType type: String) async throws -> [String: VersionedState] {
        try await prepare()
        var out: [String: VersionedState] = [:]
        for document in try await store.engine.find(collectionName, .eq("type", .string(type)), sort: [], skip: 0, limit: nil, in: nil) {
            guard case .string(let key) = document["key"] else { continue }
            out[key] = try Self.state(of: document, id: "\(type)/\(key)")
        }
        return out
    }
}

extension StateEncoding {
    /// A BSON document (``DocumentActorStateStore``).
    public static let bson = StateEncoding("bson")
}

/// Actor states as BSON documents (`Date` as BSON dates); a state that is not a keyed value (a bare number,
/// a list) is kept under `_value`. Reads the binary form too.
public struct DocumentStateCodec: ActorStateCodec {
    /// The codec (stateless).
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        switch try BSONEncoder().encodeValue(value) {
        case .document(let document): return document.bytes
        case let other: return BSONDocument([("_value", other)]).bytes
        }
    }

    public func decode<T: Decodable>(_ type: T.Type, from state: VersionedState) throws -> T {
        switch state.encoding {
        case .binary:
            return try BinaryStateCodec().decode(type, from: state)
        case .bson:
            let document = try BSONDocument(bytes: state.bytes)
            if document.count == 1, let value = document["_value"] { return try BSONDecoder().decode(type, fromValue: value) }
            return try BSONDecoder().decode(type, from: document)
        default:
            throw DocumentStoreError(.codec, "actor state stored as \(state.encoding) cannot be read by the document store's codec")
        }
    }
}
