import Foundation
public import TroupeActors
import TroupeBSON

/// The actor-state store of the runtime on a ``DocumentStore``: one document per actor
/// (`_id` = "type/key", `state` = the encoded bytes), compare-and-set on the document version. The
/// consistency toolkit's outbox lives in the same document, so state and events commit together.
public struct DocumentActorStateStore: ScannableActorStateStore {
    public let store: DocumentStore
    public let collectionName: String

    struct Record: Codable, Sendable {
        var _id: String
        var type: String
        var key: String
        var state: Data
    }

    public init(store: DocumentStore, collection: String = "actor_state") async throws(DocumentStoreError) {
        self.store = store
        self.collectionName = collection
        _ = try await store.collection(collection, of: Record.self)
    }

    private var collection: DocumentCollection<Record> {
        DocumentCollection(engine: store.engine, name: collectionName, transaction: nil)
    }

    public func load(type: String, key: String) async throws -> VersionedState? {
        guard let found = try await collection.get(.string("\(type)/\(key)")) else { return nil }
        return VersionedState(bytes: [UInt8](found.value.state), version: found.version)
    }

    public func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
        let record = Record(_id: "\(type)/\(key)", type: type, key: key, state: Data(bytes))
        let result: Result<Int64, DocumentStoreError>
        do throws(DocumentStoreError) {
            result = .success(try await collection.save(record, expectedVersion: expectedVersion))
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
        _ = try await collection.delete(id: .string("\(type)/\(key)"))
    }

    public func states(ofType type: String) async throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for record in try await collection.find(.eq("type", .string(type))) { out[record.key] = [UInt8](record.state) }
        return out
    }
}
