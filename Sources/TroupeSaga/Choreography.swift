import Distributed
import TroupeActors
import TroupeBus

/// The ids of messages an actor already applied, kept in its own state (bounded: the most recent
/// `capacity`), so that a redelivered event changes the state once — in the same write as the change.
public struct ProcessedMessages: Codable, Sendable, Hashable {
    public private(set) var ids: [String] = []
    public var capacity: Int

    public init(capacity: Int = 1_000) {
        self.capacity = capacity
    }

    public func contains(_ id: String) -> Bool { ids.contains(id) }

    mutating func insert(_ id: String) {
        ids.append(id)
        if ids.count > capacity { ids.removeFirst(ids.count - capacity) }
    }
}

/// State that remembers which messages it applied.
public protocol InboxCarrying: Codable & Sendable {
    var processed: ProcessedMessages { get set }
}

extension PersistentVirtualActor where State: InboxCarrying {
    /// Applies `body` for `message` unless this actor already applied it; the change and the record of
    /// the message id are one write. Returns false for a duplicate.
    @discardableResult
    public func applyOnce(_ message: BusMessage, _ body: (inout State) throws -> Void) async throws -> Bool {
        guard !state.processed.contains(message.id) else { return false }
        return try await update { state in
            guard !state.processed.contains(message.id) else { return false }
            try body(&state)
            state.processed.insert(message.id)
            return true
        }
    }
}

/// Choreography: a consumer that routes each message of `topic` to the virtual actor its key names
/// (for instance the SKU of an "order paid" event to that SKU's inventory actor). Orderly by default:
/// give producers the same sharding key as the actor key and each actor sees its events in order.
public func routeEvents<A: VirtualActor>(
    bus: Bus, group: String, topic: String, tags: TagExpression = .all, orderly: Bool = true,
    system: ClusterActorSystem, to type: A.Type,
    key: @escaping @Sendable (BusMessage) -> String?,
    deliver: @escaping @Sendable (A, BusMessage) async throws -> Void
) -> BusConsumer where A.ActorSystem == ClusterActorSystem {
    let handler: @Sendable (BusMessage) async throws -> ConsumeResult = { message in
        guard let actorKey = key(message) else { return .success }  // not for an actor of this type
        try await deliver(try system.reference(A.self, key: actorKey), message)
        return .success
    }
    return BusConsumer(bus: bus, group: group, topic: topic, tags: tags, listener: orderly ? .orderly(handler) : .concurrent(handler))
}
