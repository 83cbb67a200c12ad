public import Logging
public import ServiceLifecycle
import Synchronization
public import TroupeCore
public import TroupeEtcd

/// A Snowflake worker id held under a lease, so that two live nodes never share one.
public protocol WorkerIDLease: Sendable {
    /// The id held now; throws `SnowflakeError/Kind/workerLost` while none is held (lost, not yet acquired).
    func workerID() throws(SnowflakeError) -> Int
}

/// Ids for one process's nodes (tests, the embedded demo): a shared table of who holds which id.
public final class InProcessWorkerIDRegistry: Sendable {
    private let holders = Guarded<[Int: String]>([:])

    /// An empty table.
    public init() {}

    /// Takes the lowest free id for `node`.
    public func acquire(node: String) throws(SnowflakeError) -> InProcessWorkerIDLease {
        let id: Int? = holders.withLock { holders in
            guard let free = (0...SnowflakeGenerator.maxWorkerID).first(where: { holders[$0] == nil }) else { return nil }
            holders[free] = node
            return free
        }
        guard let id else { throw SnowflakeError(.workerLost, "all \(SnowflakeGenerator.maxWorkerID + 1) worker ids are taken") }
        return InProcessWorkerIDLease(registry: self, id: id)
    }

    func release(_ id: Int) { _ = holders.withLock { $0.removeValue(forKey: id) } }
    func holds(_ id: Int) -> Bool { holders.withLock { $0[id] != nil } }
}

/// A ``WorkerIDLease`` with a fixed worker id (one process, or tests): always held.
public final class InProcessWorkerIDLease: WorkerIDLease {
    let registry: InProcessWorkerIDRegistry
    let id: Int
    private let released = Atomic<Bool>(false)

    init(registry: InProcessWorkerIDRegistry, id: Int) {
        self.registry = registry
        self.id = id
    }

    public func workerID() throws(SnowflakeError) -> Int {
        guard !released.load(ordering: .relaxed) else { throw SnowflakeError(.workerLost, "worker id \(id) was released") }
        return id
    }

    /// Gives the id back to the table (once; later calls do nothing).
    public func release() {
        if !released.exchange(true, ordering: .relaxed) { registry.release(id) }
    }
}

/// Worker ids in etcd: `/troupe/snowflake/{cluster}/{id}` created with a lease (create-revision 0 check),
/// kept alive by `run()`.
///
/// The id is used only while the lease is *provably* ours: until the last renewal etcd acknowledged plus the
/// TTL it granted, minus a margin (a tenth of the TTL) for the time the acknowledgement travelled. The
/// server cannot have expired the lease before then, so nobody else can hold the id. Through an etcd outage
/// the id stays usable for that long (the default TTL, 60 s, covers outages up to 54 s) and the keep-alive
/// keeps trying; a restarted etcd extends its leases, so the same id comes back without a new acquisition.
/// When etcd says the lease expired (the process stalled past its TTL, a partition), the id is given up and
/// a free one acquired, so a node that comes back never keeps an id someone else took meanwhile. Graceful
/// shutdown revokes the lease.
public final class EtcdWorkerIDLease: WorkerIDLease, Service {
    /// The etcd the ids are held in.
    public let etcd: EtcdClient
    /// The cluster whose nodes share the id space.
    public let cluster: String
    /// This node's name (stored as the key's value).
    public let node: String
    /// The lease's time to live (60 s).
    public let ttl: Duration
    private let logger: Logger
    private let state = Guarded(State())

    private struct State {
        var id: Int?
        var lease: EtcdLease?
        /// Until when the lease is provably alive on the server.
        var validUntil: ContinuousClock.Instant?
    }

    /// A lease for `node` of `cluster` (run it to acquire an id and keep it).
    public init(etcd: EtcdClient, cluster: String, node: String, ttl: Duration = .seconds(60), logger: Logger = Logger(label: "troupe.snowflake")) {
        self.etcd = etcd
        self.cluster = cluster
        self.node = node
        self.ttl = ttl
        self.logger = logger
    }

    /// The etcd key of worker id `id`.
    public func key(_ id: Int) -> String { "/troupe/snowflake/\(cluster)/\(id)" }

    /// What a renewal's acknowledgement proves: the lease lives at least `granted` from when the server
    /// renewed it, which was before now; the margin covers the acknowledgement's travel.
    private func provenUntil(renewedAt: ContinuousClock.Instant, granted: Duration) -> ContinuousClock.Instant {
        renewedAt + granted - granted / 10
    }

    public func workerID() throws(SnowflakeError) -> Int {
        let (id, validUntil) = state.withLock { ($0.id, $0.validUntil) }
        guard let id else {
            throw SnowflakeError(.workerLost, "node \(node) holds no worker id (not acquired yet, or its lease was lost)")
        }
        guard let validUntil, ContinuousClock.now < validUntil else {
            throw SnowflakeError(.workerLost, "node \(node) cannot prove it still holds worker id \(id): etcd has not renewed its lease for too long")
        }
        return id
    }

    /// Acquires a free id under a new lease (the lowest free one).
    @discardableResult
    public func acquire() async throws -> Int {
        if let id = state.withLock({ $0.id }) { return id }
        let requested = ContinuousClock.now
        let lease = try await etcd.grantLease(ttl: ttl)
        for id in 0...SnowflakeGenerator.maxWorkerID {
            let result = try await etcd.transaction(if: [EtcdCompare(key: key(id), .createRevision(0))],
                                                    then: [.put(key(id), Array(node.utf8), lease: lease.id)])
            if result.succeeded {
                let validUntil = provenUntil(renewedAt: requested, granted: lease.ttl)
                state.withLock { $0 = State(id: id, lease: lease, validUntil: validUntil) }
                logger.info("worker id acquired", metadata: ["snowflake.worker": "\(id)", "snowflake.node": "\(node)"])
                return id
            }
        }
        try? await etcd.revokeLease(lease.id)
        throw SnowflakeError(.workerLost, "all \(SnowflakeGenerator.maxWorkerID + 1) worker ids are taken in cluster \(cluster)")
    }

    /// Keeps the id alive; reacquires after a loss; revokes on graceful shutdown.
    public func run() async throws {
        // The keep-alive stream does not end by itself: graceful shutdown cancels the loop, then the lease is revoked.
        await cancelWhenGracefulShutdown { [self] in
            var failures = LogThrottle()
            while !Task.isCancelled {
                do {
                    // A lease from before a stall may be gone: check before trusting the id.
                    if let lease = state.withLock({ $0.lease }), try await etcd.timeToLive(ofLease: lease.id) == nil {
                        lose("its lease expired while the node was away")
                    }
                    try await acquire()
                    guard let lease = state.withLock({ $0.lease }) else { continue }
                    // Kept through outages until etcd itself refuses the lease; the id is usable meanwhile only
                    // as long as the renewals prove it (see `workerID()`).
                    try await etcd.keepAlive(lease, untilRefused: true) { [self] granted in
                        let now = ContinuousClock.now
                        state.withLock { state in
                            guard state.lease?.id == lease.id else { return }
                            state.validUntil = provenUntil(renewedAt: now, granted: granted)
                        }
                    }
                } catch let error as EtcdError where error.code == .leaseExpired {
                    lose("its lease expired")
                } catch {
                    if Task.isCancelled { break }
                    if let held = failures.admit(now: .now) {
                        logger.warning("worker id lease failed; retrying every 500 ms", metadata: ["snowflake.error": "\(error)", "log.suppressed": "\(held)"])
                    }
                    try? await Task.sleep(for: .milliseconds(500))
                }
            }
        }
        if Task.isShuttingDownGracefully { await release() }
    }

    private func lose(_ why: String) {
        let lost = state.withLock { state -> Int? in
            defer { state = State() }
            return state.id
        }
        if let lost { logger.warning("worker id lost: \(why)", metadata: ["snowflake.worker": "\(lost)"]) }
    }

    /// Gives the id back at once (revokes the lease; waits at most a second for etcd, the lease expires anyway).
    public func release() async {
        let lease = state.withLock { state -> EtcdLease? in
            defer { state = State() }
            return state.lease
        }
        if let lease { try? await etcd.revokeLease(lease.id, timeout: EtcdServiceRegistry.shutdownTimeout) }
    }
}

/// Snowflake ids from whatever worker id a lease holds now; refuses ids while none is held.
public final class LeasedSnowflake: Sendable {
    /// The lease whose id the ids carry.
    public let lease: any WorkerIDLease
    private let epochMS: Int64
    private let clock: any MillisecondClock
    private let generator = Guarded<SnowflakeGenerator?>(nil)

    /// Ids with the lease's worker id, counted from `epochMS` on `clock`.
    public init(lease: any WorkerIDLease, epochMS: Int64 = SnowflakeGenerator.defaultEpochMS, clock: any MillisecondClock = SystemMillisecondClock()) {
        self.lease = lease
        self.epochMS = epochMS
        self.clock = clock
    }

    public func next() throws(SnowflakeError) -> Int64 {
        let id = try lease.workerID()
        let current: SnowflakeGenerator
        if let existing = generator.withLock({ $0 }), existing.workerID == id {
            current = existing
        } else {
            current = try SnowflakeGenerator(workerID: id, epochMS: epochMS, clock: clock)
            generator.withLock { $0 = current }
        }
        return try current.next()
    }
}
