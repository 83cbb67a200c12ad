import Foundation
import TroupeBSON

/// Idempotent consumption: records processed message ids per consumer group, in the same transaction as
/// the handler's own writes, so a redelivered message is acknowledged without running the handler again.
/// Entries expire after `retention` (a TTL index; the SQLite engine's sweeper, MongoDB's TTL monitor).
public struct Inbox: Sendable {
    /// The store the processed ids live in.
    public let store: DocumentStore
    /// The collection holding them.
    public let collectionName: String

    struct Entry: Codable, Sendable {
        var _id: String
        var group: String
        var messageID: String
        var processedAt: Date
    }

    /// An inbox in `collection` of `store`, keeping ids for `retention` (7 days by default); creates the
    /// collection and its TTL index if missing.
    public init(store: DocumentStore, collection: String = "inbox", retention: Duration = .seconds(7 * 24 * 3600)) async throws(DocumentStoreError) {
        self.store = store
        self.collectionName = collection
        _ = try await store.collection(collection, of: Entry.self, indexes: [.ttl("processedAt", after: Int(retention.components.seconds))])
    }

    private var entries: DocumentCollection<Entry> { DocumentCollection(engine: store.engine, name: collectionName, transaction: nil) }

    /// Whether `messageID` was already processed by `group`.
    public func contains(group: String, messageID: String) async throws(DocumentStoreError) -> Bool {
        try await entries.get(.string("\(group)/\(messageID)")) != nil
    }

    /// Runs `handler` unless `group` already processed `messageID`; the record and the handler's writes
    /// (made through the transaction it receives) commit together. Returns false for a duplicate.
    @discardableResult
    public func process(group: String, messageID: String, _ handler: @Sendable (DocumentTransaction) async throws -> Void) async throws -> Bool {
        let entries = self.entries
        do {
            return try await store.transaction { tx in
                try await entries.in(tx).insert(Entry(_id: "\(group)/\(messageID)", group: group, messageID: messageID, processedAt: Date()))
                try await handler(tx)
                return true
            }
        } catch {
            if let storeError = error as? DocumentStoreError, storeError.kind == .duplicateKey { return false }
            throw error
        }
    }
}
