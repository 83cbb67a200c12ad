public import Distributed
public import TroupeActors
public import TroupeBus

/// The ids of messages an actor already applied, kept in its own state (bounded: the most recent
/// `capacity`), so that a redelivered event changes the state once — in the same write as the change.
public struct ProcessedMessages: Codable, Sendable, Hashable {
    /// The remembered ids, oldest first.
    public private(set) var ids: [String] = []
    /// How many ids are remembered (the most recent).
    public var capacity: Int
    /// The same ids, for constant-time lookups (rebuilt when decoded, never stored).
    private var index: Set<String> = []
    /// How many remembered ids cannot be packed (empty, or containing a newline).
    private var unpackable = 0

    private static func packable(_ id: String) -> Bool { !id.isEmpty && !id.utf8.contains(UInt8(ascii: "\n")) }

    /// An empty set remembering at most `capacity` ids.
    public init(capacity: Int = 1_000) {
        self.capacity = capacity
    }

    /// Whether `id` is remembered.
    public func contains(_ id: String) -> Bool { index.contains(id) }

    /// Remembers `id` (forgetting the oldest past `capacity`); false when it was remembered already.
    @discardableResult
    public mutating func insert(_ id: String) -> Bool {
        guard index.insert(id).inserted else { return false }
        ids.append(id)
        if !Self.packable(id) { unpackable += 1 }
        if ids.count > max(0, capacity) {
            let dropped = ids.count - max(0, capacity)
            for old in ids[..<dropped] {
                index.remove(old)
                if !Self.packable(old) { unpackable -= 1 }
            }
            ids.removeFirst(dropped)
        }
        return true
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.ids == rhs.ids && lhs.capacity == rhs.capacity }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(ids)
        hasher.combine(capacity)
    }

    private enum CodingKeys: String, CodingKey { case ids, capacity, packed }

    /// Stored as one string (ids separated by newlines) when no id is empty or contains a newline: an actor with a large inbox
    /// writes its whole state on every change, and one string encodes far faster than thousands.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(capacity, forKey: .capacity)
        if unpackable > 0 {
            try container.encode(ids, forKey: .ids)
        } else {
            try container.encode(ids.joined(separator: "\n"), forKey: .packed)
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        capacity = try container.decode(Int.self, forKey: .capacity)
        if let packed = try container.decodeIfPresent(String.self, forKey: .packed) {
            ids = packed.isEmpty ? [] : packed.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        } else {
            ids = try container.decodeIfPresent([String].self, forKey: .ids) ?? []
        }
        index = Set(ids)
        unpackable = ids.filter { !Self.packable($0) }.count
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
