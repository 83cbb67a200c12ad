import TroupeCore

/// A live member of the cluster as seen by placement.
public struct ClusterMember: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The member's identity.
    public var node: NodeID
    /// Virtual actor types this member hosts; `nil` hosts every registered type.
    public var actorTypes: Set<String>?

    /// A member hosting `actorTypes` (nil: every type).
    public init(node: NodeID, actorTypes: Set<String>? = nil) {
        self.node = node
        self.actorTypes = actorTypes
    }

    /// Whether the member hosts the virtual actor type named `type`.
    public func hosts(_ type: String) -> Bool { actorTypes?.contains(type) ?? true }

    public var description: String { node.description }
}

/// The source of truth for which nodes are alive.
///
/// An embedded engine (``InMemoryMembership``) and a fixed list (``StaticMembership``) live here;
/// the etcd engine (lease + watch) lives in TroupeDiscovery.
public protocol MembershipProvider: Sendable {
    /// Announces `member` as alive.
    func join(_ member: ClusterMember) async throws
    /// Removes `member` (graceful leave).
    func leave(_ member: ClusterMember) async throws
    /// The current member list.
    func currentMembers() -> [ClusterMember]
    /// Full member lists, starting with the current one, until the task is cancelled.
    func memberUpdates() -> AsyncStream<[ClusterMember]>
    /// Registers `handler`, awaited whenever this node's membership lapsed — its registration expired
    /// while it could not renew it (a partition, a long pause), so the others may have taken its keys — and
    /// before it joins again. The system drops its activations there: their state may be stale.
    func whenLapsed(_ handler: @escaping @Sendable () async -> Void)
}

extension MembershipProvider {
    /// Engines whose membership cannot lapse (in-process, fixed lists) never call the handler.
    public func whenLapsed(_ handler: @escaping @Sendable () async -> Void) {}
}

/// Membership shared by the nodes of one process: joins and leaves are seen by every subscriber.
///
/// Tests give different nodes different instances to simulate a membership disagreement.
public final class InMemoryMembership: MembershipProvider {
    private let members: Broadcaster<[ClusterMember]>
    private let lapseHandlers = Locked<[@Sendable () async -> Void]>([])

    /// A membership of `members` to start with.
    public init(members: [ClusterMember] = []) {
        self.members = Broadcaster(members)
    }

    public func join(_ member: ClusterMember) async throws {
        members.update { members in
            members.removeAll { $0.node.name == member.node.name }
            members.append(member)
        }
    }

    public func leave(_ member: ClusterMember) async throws {
        members.update { members in members.removeAll { $0.node == member.node } }
    }

    /// Removes a node without its cooperation, as a failure detector would after it died.
    public func remove(nodeNamed name: String) {
        members.update { members in members.removeAll { $0.node.name == name } }
    }

    public func currentMembers() -> [ClusterMember] { members.value }

    public func memberUpdates() -> AsyncStream<[ClusterMember]> { members.subscribe() }

    public func whenLapsed(_ handler: @escaping @Sendable () async -> Void) {
        lapseHandlers.withLock { $0.append(handler) }
    }

    /// Tells every system on this membership that its membership lapsed (as the etcd engine does when its
    /// lease expired during a partition), and waits until they have handled it.
    public func lapse() async {
        for handler in lapseHandlers.withLock({ $0 }) { await handler() }
    }
}

/// A fixed member list from configuration (no failure detection: for development clusters
/// until the etcd provider is configured).
public struct StaticMembership: MembershipProvider {
    /// The members, fixed.
    public let members: [ClusterMember]

    /// A membership of exactly `members`.
    public init(members: [ClusterMember]) { self.members = members }

    public func join(_ member: ClusterMember) async throws {}
    public func leave(_ member: ClusterMember) async throws {}
    public func currentMembers() -> [ClusterMember] { members }

    public func memberUpdates() -> AsyncStream<[ClusterMember]> {
        let (stream, continuation) = AsyncStream.makeStream(of: [ClusterMember].self)
        continuation.yield(members)
        return stream
    }
}
