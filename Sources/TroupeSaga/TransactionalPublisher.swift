import Foundation
import TroupeCore
public import TroupeBus
public import TroupeStore
import TroupeBSON

/// Transactional messages for producers that are not actors (a service writing its own tables): the
/// bus's half message, a local transaction in the DocumentStore that also records the message id, and a
/// checker answering from that record — so "local change happened" and "message delivered" agree even
/// if the process dies between them.
public struct TransactionalPublisher: Sendable {
    /// The store whose transaction records the local change and the message id.
    public let store: DocumentStore
    /// The producer the half message and its commit go through.
    public let producer: BusProducer
    /// The collection of message records the checker answers from.
    public let collectionName: String

    struct Record: Codable, Sendable {
        var _id: String
        var topic: String
        var at: Date
    }

    /// Registers the checker on `producer` (do this in every member of the producer group).
    public init(store: DocumentStore, producer: BusProducer, collection: String = "tx_messages") async throws {
        self.store = store
        self.producer = producer
        self.collectionName = collection
        let records = try await store.collection(collection, of: Record.self, indexes: [.ttl("at", after: 7 * 24 * 3600)])
        producer.setTransactionChecker { message in
            // Committed locally ⇔ the record exists. No record: the local transaction never committed.
            try await records.get(.string(message.id)) != nil ? .commit : .rollback
        }
    }

    /// Sends `message` if, and only if, `local` commits; `local` writes through the transaction it receives.
    @discardableResult
    public func send(_ message: OutgoingMessage, local: @escaping @Sendable (DocumentTransaction) async throws -> Void) async throws -> String {
        let store = self.store, name = collectionName
        let failure = Locked<(any Error)?>(nil)
        let (id, _) = try await producer.sendTransactional(message) { half in
            do {
                try await store.transaction { tx in
                    try await DocumentCollection<Record>.bound(store: store, name: name, transaction: tx)
                        .insert(Record(_id: half.id, topic: half.topic, at: Date()))
                    try await local(tx)
                }
            } catch {
                // The store rolled the local transaction back: roll the half message back too.
                failure.withLock { $0 = error }
                return .rollback
            }
            return .commit
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return id
    }
}
