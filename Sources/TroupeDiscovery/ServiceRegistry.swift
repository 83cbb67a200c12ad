import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization
import TroupeCore
public import TroupeEtcd

/// One registered instance of a service.
public struct ServiceInstance: Codable, Sendable, Hashable {
    /// The service's name (`orders`).
    public var service: String
    /// This instance's id, unique within the service.
    public var id: String
    /// The host it answers on.
    public var host: String
    /// The port it answers on.
    public var port: Int
    /// Free-form metadata (version, zone).
    public var metadata: [String: String]

    /// An instance `id` of `service` at `host:port`.
    public init(service: String, id: String, host: String, port: Int, metadata: [String: String] = [:]) {
        self.service = service
        self.id = id
        self.host = host
        self.port = port
        self.metadata = metadata
    }
}

/// Registers this process's instances under a lease and discovers other instances by watching.
///
/// Instances live at `/services/{service}/{id}` (JSON). The registry holds one lease for all its
/// registrations and keeps it alive; when the lease is lost (etcd restart, long partition, failed
/// keep-alive) it grants a new one and registers everything again, retrying with exponential
/// backoff and jitter. Run it as a `Service`; on graceful shutdown it revokes the lease, which
/// deregisters every instance at once.
public final class EtcdServiceRegistry: Service, Sendable {
    /// The etcd the registrations live in.
    public let etcd: EtcdClient
    /// The lease's time to live: a dead process's instances vanish this long after it stops renewing.
    public let ttl: Duration
    /// The key prefix (`/services/`).
    public let prefix: String
    private let logger: Logger
    private let state = Guarded(State())

    private struct State {
        var registrations: [String: ServiceInstance] = [:]
        var lease: EtcdLease?
        /// The registrations are in etcd under `lease` (it was granted and every put succeeded).
        var registered = false
        var leaseLostHandlers: [@Sendable () async -> Void] = []
        var registeredCount = 0
        var attempts: [Duration] = []
    }

    /// A registry on `etcd` with a lease of `ttl` (10 s by default).
    public init(etcd: EtcdClient, ttl: Duration = .seconds(10), prefix: String = "/services/",
                logger: Logger = Logger(label: "troupe.discovery", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.etcd = etcd
        self.ttl = ttl
        self.prefix = prefix
        self.logger = logger
    }

    func key(_ instance: ServiceInstance) -> String { "\(prefix)\(instance.service)/\(instance.id)" }

    /// Registers `instance`; it is visible once the registry holds a lease (immediately if it does).
    public func register(_ instance: ServiceInstance) async throws {
        let lease = state.withLock { state -> EtcdLease? in
            state.registrations[key(instance)] = instance
            return state.lease
        }
        // Without a lease yet, run() puts it as soon as it holds one.
        if let lease {
            try await etcd.put(key(instance), try JSONEncoder().encode(instance).bytes, lease: lease.id)
        }
    }

    /// Removes `instance` from etcd and stops re-registering it (waits at most a second for etcd: the
    /// lease's expiry removes it anyway).
    public func deregister(_ instance: ServiceInstance) async throws {
        _ = state.withLock { $0.registrations.removeValue(forKey: key(instance)) }
        try await etcd.delete(key(instance), timeout: Self.shutdownTimeout)
    }

    /// How long best-effort clean-ups at shutdown wait for etcd.
    static let shutdownTimeout: Duration = .seconds(1)

    /// Registers `handler`, awaited when a lease that held the registrations is lost (expired on the server:
    /// the registrations were deleted and others may have acted on it), before registering again.
    public func onLeaseLost(_ handler: @escaping @Sendable () async -> Void) {
        state.withLock { $0.leaseLostHandlers.append(handler) }
    }

    /// How many times the registrations were (re-)established since start.
    public var registrationRounds: Int { state.withLock { $0.registeredCount } }

    /// The delays waited between failed registration attempts (tests check growth and jitter).
    public var retryDelays: [Duration] { state.withLock { $0.attempts } }

    /// Keeps the registrations alive until shutdown; re-registers after a lost lease.
    public func run() async throws {
        // Graceful shutdown cancels the keep-alive loop; then the lease is revoked.
        await cancelWhenGracefulShutdown { await self.maintain() }
        // Deregister everything at once by revoking the lease (best effort, for at most a second: it expires
        // anyway, and a shutdown must not wait out an etcd that is gone).
        if let lease = state.withLock({ $0.lease }) {
            try? await etcd.revokeLease(lease.id, timeout: Self.shutdownTimeout)
        }
    }

    private func maintain() async {
            // At most a second between attempts: when etcd returns, the registrations are back within a second
            // (a longer pause let the old lease expire first, and every member saw the others leave and return).
            var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1))
            while !Task.isCancelled {
                do {
                    let lease = try await etcd.grantLease(ttl: ttl)
                    let instances = state.withLock { state in
                        state.lease = lease
                        return Array(state.registrations.values)
                    }
                    for instance in instances {
                        try await etcd.put(key(instance), try JSONEncoder().encode(instance).bytes, lease: lease.id)
                    }
                    state.withLock {
                        $0.registeredCount += 1
                        $0.registered = true
                    }
                    backoff.reset()
                    logger.debug("services registered", metadata: ["etcd.lease.id": "\(lease.id)", "services.count": "\(instances.count)"])
                    // Through an etcd outage the same lease is kept alive until etcd itself says it expired: a
                    // restarted etcd extends its leases, so the registrations survive without a flap.
                    try await etcd.keepAlive(lease, untilRefused: true)
                    return  // cancelled
                } catch {
                    if Task.isCancelled { return }
                    let lostHandlers = state.withLock { state -> [@Sendable () async -> Void] in
                        defer {
                            state.lease = nil
                            state.registered = false
                        }
                        return state.registered ? state.leaseLostHandlers : []
                    }
                    if !lostHandlers.isEmpty {
                        logger.warning("service registrations lapsed (lease lost)", metadata: ["error": "\(String(reflecting: error))"])
                        for handler in lostHandlers { await handler() }
                    }
                    let delay = backoff.next()
                    state.withLock { $0.attempts.append(delay) }
                    logger.info("service registration lost, retrying", metadata: [
                        "retry.delay_ms": "\(Int(delay.seconds * 1000))", "error": "\(String(reflecting: error))",
                    ])
                    try? await Task.sleep(for: delay)
                }
            }
    }

    /// Watches `service`'s instances, calling `onChange` with the full list after every change, until
    /// the task is cancelled. Survives disconnects and compaction (see `EtcdClient/watch(_:prefix:fromRevision:handler:)`).
    public func watchInstances(of service: String, onChange: @escaping @Sendable ([ServiceInstance]) async -> Void) async throws {
        let directory = "\(prefix)\(service)/"
        let initial = try await etcd.range(directory, prefix: true)
        let known = Locked<[String: ServiceInstance]>(Dictionary(
            initial.kvs.compactMap { kv in (try? JSONDecoder().decode(ServiceInstance.self, from: Data(kv.value))).map { (kv.key, $0) } },
            uniquingKeysWith: { $1 }
        ))
        await onChange(Self.sorted(known.value))
        try await etcd.watch(directory, prefix: true, fromRevision: initial.revision + 1) { update in
            switch update {
            case .events(let events, _):
                known.withLock { known in
                    for event in events {
                        switch event {
                        case .put(let kv):
                            // Values that are not valid instances (foreign writers) are ignored, never trusted.
                            known[kv.key] = try? JSONDecoder().decode(ServiceInstance.self, from: Data(kv.value))
                        case .delete(let key, _):
                            known[key] = nil
                        }
                    }
                }
            case .resynced(let snapshot, _, _):
                known.withLock { known in
                    known = Dictionary(
                        snapshot.compactMap { kv in (try? JSONDecoder().decode(ServiceInstance.self, from: Data(kv.value))).map { (kv.key, $0) } },
                        uniquingKeysWith: { $1 }
                    )
                }
            }
            await onChange(Self.sorted(known.value))
        }
    }

    static func sorted(_ instances: [String: ServiceInstance]) -> [ServiceInstance] {
        instances.values.sorted { ($0.service, $0.id) < ($1.service, $1.id) }
    }
}

extension Data {
    var bytes: [UInt8] { [UInt8](self) }
}
