import Foundation
import Logging
public import ServiceLifecycle
import TroupeCore
public import TroupeActors
public import TroupeDiscovery
import TroupeEtcd

/// Cluster membership for `ClusterActorSystem` on etcd: each node registers itself (lease +
/// keep-alive) as an instance of `troupe-{cluster}` and watches the others. A node that dies stops
/// refreshing its lease and disappears from every member's view after the TTL.
///
/// Run it as a `Service` before the actor system in the `ServiceGroup`.
public final class EtcdMembership: MembershipProvider, Service {
    /// The registry the node registers itself in, with a lease.
    public let registry: EtcdServiceRegistry
    /// The service name the cluster's members register under (`troupe-<cluster>`).
    public let serviceName: String
    private let members = Broadcaster<[ClusterMember]>([])

    /// The membership of cluster `cluster` through `registry`.
    public init(registry: EtcdServiceRegistry, cluster: String) {
        self.registry = registry
        self.serviceName = "troupe-\(cluster)"
    }

    public func join(_ member: ClusterMember) async throws {
        try await registry.register(Self.instance(member, service: serviceName))
    }

    public func leave(_ member: ClusterMember) async throws {
        try await registry.deregister(Self.instance(member, service: serviceName))
    }

    public func currentMembers() -> [ClusterMember] { members.value }

    public func memberUpdates() -> AsyncStream<[ClusterMember]> { members.subscribe() }

    /// Called when the registry's lease was lost after it held it (it expired on the server), before it
    /// registers again.
    public func whenLapsed(_ handler: @escaping @Sendable () async -> Void) {
        registry.onLeaseLost(handler)
    }

    /// Runs the registry and the watch on the members until graceful shutdown or cancellation
    /// (the registry then revokes its lease, so this node leaves at once).
    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await self.registry.run() }
            group.addTask {
                try await cancelWhenGracefulShutdown {
                    try await self.registry.watchInstances(of: self.serviceName) { instances in
                        self.publish(instances.compactMap(Self.member))
                    }
                }
            }
        }
    }

    private func publish(_ list: [ClusterMember]) {
        members.set(list)
    }

    static func instance(_ member: ClusterMember, service: String) -> ServiceInstance {
        var metadata = ["incarnation": String(member.node.incarnation)]
        if let types = member.actorTypes { metadata["actorTypes"] = types.sorted().joined(separator: ",") }
        return ServiceInstance(service: service, id: member.node.name, host: member.node.host, port: member.node.port, metadata: metadata)
    }

    static func member(_ instance: ServiceInstance) -> ClusterMember? {
        guard let incarnation = instance.metadata["incarnation"].flatMap(UInt64.init), (1...65535).contains(instance.port) else {
            return nil
        }
        let types = instance.metadata["actorTypes"].map { Set($0.split(separator: ",").map(String.init)) }
        return ClusterMember(
            node: NodeID(name: instance.id, host: instance.host, port: instance.port, incarnation: incarnation), actorTypes: types
        )
    }
}
