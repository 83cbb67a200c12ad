/// One incarnation of a node: its name, the address it listens on, and a number chosen at start-up.
///
/// A restarted node gets a new ``incarnation`` and is therefore a different peer: references
/// to actors of its previous life fail instead of silently reaching new instances.
public struct NodeID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The node's name, unique in the cluster.
    public var name: String
    /// The address it listens on.
    public var host: String
    /// Its cluster port.
    public var port: Int
    /// Which run of the node this is: a restarted node has a new incarnation, so stale references are told apart.
    public var incarnation: UInt64

    /// A node's identity.
    public init(name: String, host: String, port: Int, incarnation: UInt64) {
        self.name = name
        self.host = host
        self.port = port
        self.incarnation = incarnation
    }

    public var description: String { "\(name)@\(host):\(port)#\(incarnation)" }
}

/// The identity of a distributed actor in a ``ClusterActorSystem``.
///
/// - A **virtual** actor is named by its type and key only (``node`` is `nil`): the reference is
///   location-transparent and every call is routed to the key's current owner.
/// - An **instance** actor (an ordinary `distributed actor` created with `init(actorSystem:)`)
///   lives on one node incarnation; its ``key`` is a unique id chosen at creation.
public struct ActorID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The registered type name (virtual actors) or the Swift type name (instance actors).
    public var type: String
    /// The actor's key (a virtual actor's identity within its type).
    public var key: String
    /// The hosting node for instance actors; `nil` for virtual actors.
    public var node: NodeID?

    /// An actor id: a virtual actor's (no node) or a pinned one's (with the node it lives on).
    public init(type: String, key: String, node: NodeID?) {
        self.type = type
        self.key = key
        self.node = node
    }

    /// The longest key a virtual actor may have, in UTF-8 bytes (keys travel in every call and are stored).
    public static let maxKeyBytes = 1024

    /// Throws ``ActorSystemError/Code/invalidKey`` for a key longer than ``maxKeyBytes``.
    public static func validate(key: String) throws(ActorSystemError) {
        guard key.utf8.count <= maxKeyBytes else {
            throw ActorSystemError(.invalidKey, "an actor key is at most \(maxKeyBytes) bytes, got \(key.utf8.count)")
        }
    }

    /// The id of the virtual actor of `type` and `key`, wherever it is activated.
    public static func virtual(type: String, key: String) -> ActorID {
        ActorID(type: type, key: key, node: nil)
    }

    /// Whether this is a virtual actor's id (placed by the runtime, not pinned to a node).
    public var isVirtual: Bool { node == nil }

    public var description: String {
        if let node { return "\(type)/\(key)@\(node)" }
        return "\(type)/\(key)"
    }
}
