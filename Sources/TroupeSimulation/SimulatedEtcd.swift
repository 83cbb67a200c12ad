import TroupeActors
import TroupeCore

/// The membership service of a simulation, with etcd's semantics: a member is a key under a lease with a
/// TTL, kept alive by its node; a node that dies or is cut off from the service stops renewing and drops
/// out of everyone's view when the lease expires; watchers see changes after a delay, and a watcher cut
/// off sees none until it reconnects (then it gets the current list). A node whose lease expired while it
/// was cut off learns it on its next renewal (its membership lapsed) and joins again.
///
/// Invariant (why `@unchecked Sendable`): touched only from the simulation thread.
final class SimulatedEtcd: @unchecked Sendable {
    let world: SimulationWorld
    let ttl: Duration = .seconds(3)
    private var leases: [String: (member: ClusterMember, id: UInt64, expires: Int64)] = [:]
    private var nextLease: UInt64 = 0
    private var views: [String: NodeMembership] = [:]
    /// Hosts that cannot reach the service.
    private var cutOff: Set<String> = []

    init(world: SimulationWorld) { self.world = world }

    var members: [ClusterMember] { leases.values.map(\.member).sorted { $0.node.name < $1.node.name } }

    func reachable(_ host: String) -> Bool { !cutOff.contains(host) }

    /// A new incarnation's view of the membership (the previous one of the same host stops).
    func view(host: String) -> NodeMembership {
        views[host]?.kill()
        let view = NodeMembership(etcd: self, host: host)
        views[host] = view
        return view
    }

    /// The process at `host` died.
    func kill(host: String) { views[host]?.kill() }

    func cut(_ host: String) {
        cutOff.insert(host)
        world.trace("etcd cut off \(host)")
    }

    func reconnect(_ host: String) {
        guard cutOff.remove(host) != nil else { return }
        world.trace("etcd reconnected \(host)")
        views[host]?.deliver(members, after: world.latency())
    }

    func reconnectAll() { for host in cutOff { reconnect(host) } }

    func grant(_ member: ClusterMember) -> UInt64 {
        nextLease += 1
        let id = nextLease
        leases[member.node.name] = (member, id, world.scheduler.now + ttl.nanoseconds)
        scheduleExpiry(name: member.node.name, id: id)
        world.trace("lease \(id) granted to \(member.node.name)")
        publish()
        return id
    }

    /// Renews lease `id`; false when it expired or was revoked.
    func keepAlive(name: String, id: UInt64) -> Bool {
        guard let lease = leases[name], lease.id == id else { return false }
        leases[name]?.expires = world.scheduler.now + ttl.nanoseconds
        scheduleExpiry(name: name, id: id)
        return true
    }

    func revoke(name: String, id: UInt64) {
        guard leases[name]?.id == id else { return }
        leases[name] = nil
        world.trace("lease \(id) of \(name) revoked")
        publish()
    }

    private func scheduleExpiry(name: String, id: UInt64) {
        guard let expires = leases[name]?.expires else { return }
        world.scheduler.schedule(atNanoseconds: expires) { [self] in
            guard let lease = leases[name], lease.id == id, lease.expires <= world.scheduler.now else { return }
            leases[name] = nil
            world.trace("lease \(id) of \(name) expired")
            publish()
        }
    }

    private func publish() {
        let list = members
        for (host, view) in views.sorted(by: { $0.key < $1.key }) where reachable(host) {
            view.deliver(list, after: world.nanoseconds(between: .milliseconds(1), and: .milliseconds(50)))
        }
    }
}

/// One node incarnation's membership provider on the ``SimulatedEtcd``.
final class NodeMembership: MembershipProvider, @unchecked Sendable {
    // @unchecked: touched only from the simulation thread (see SimulatedEtcd).
    private let etcd: SimulatedEtcd
    private let host: String
    private let view = Broadcaster<[ClusterMember]>([])
    private var handlers: [@Sendable () async -> Void] = []
    private var lease: (name: String, id: UInt64, member: ClusterMember)?
    private var dead = false
    private var delivered: Int64 = 0

    init(etcd: SimulatedEtcd, host: String) {
        self.etcd = etcd
        self.host = host
    }

    private var world: SimulationWorld { etcd.world }

    func join(_ member: ClusterMember) async throws {
        try await roundTrip()
        let id = etcd.grant(member)
        lease = (member.node.name, id, member)
        scheduleKeepAlive(id: id)
    }

    func leave(_ member: ClusterMember) async throws {
        try await roundTrip()
        if let lease { etcd.revoke(name: lease.name, id: lease.id) }
        lease = nil
    }

    func currentMembers() -> [ClusterMember] { view.value }
    func memberUpdates() -> AsyncStream<[ClusterMember]> { view.subscribe() }
    func whenLapsed(_ handler: @escaping @Sendable () async -> Void) { handlers.append(handler) }

    /// The process died: no more renewals or updates.
    func kill() {
        dead = true
        view.finish()
    }

    /// A watch event reaches this node `delay` from now (in the order sent).
    func deliver(_ members: [ClusterMember], after delay: Int64) {
        let at = max(world.scheduler.now + delay, delivered + 1)
        delivered = at
        world.scheduler.schedule(atNanoseconds: at) { [self] in
            guard !dead, etcd.reachable(host) else { return }
            view.set(members)
        }
    }

    private func roundTrip() async throws {
        guard !dead else { throw SimulationError("\(host) is dead") }
        guard etcd.reachable(host) else {
            try await world.clock.sleep(for: .seconds(1))
            throw SimulationError("etcd unreachable from \(host)")
        }
        try await world.clock.sleep(for: .nanoseconds(2 * world.latency()))
    }

    private func scheduleKeepAlive(id: UInt64) {
        world.scheduler.schedule(atNanoseconds: world.scheduler.now + etcd.ttl.nanoseconds / 3) { [self] in
            guard !dead, let lease, lease.id == id else { return }
            guard etcd.reachable(host) else { return scheduleKeepAlive(id: id) }
            if etcd.keepAlive(name: lease.name, id: id) { return scheduleKeepAlive(id: id) }
            // The lease expired while this node could not renew it: the others may have taken its keys.
            world.trace("membership of \(host) lapsed")
            self.lease = nil
            let handlers = handlers
            // Unowned on purpose: this is the simulated etcd client's own reaction, as the real registry's run
            // loop would do it; it ends once rejoined or when the process (`dead`) ends, and every job of it
            // runs on the simulation's one queue, which the seed's process exits with.
            Task {
                for handler in handlers { await handler() }
                while !self.dead {
                    do { return try await self.join(lease.member) } catch { try? await self.world.clock.sleep(for: .seconds(1)) }
                }
            }
        }
    }
}
