import Foundation
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization
import TroupeBSON
import TroupeCore

/// A MongoDB client: monitors the deployment (`hello` per server every heartbeat), selects servers by
/// read preference (writes to the primary), pools connections per server, retries writes and reads once
/// on retryable errors, and runs sessions and transactions. A `Service`: `run()` hosts the monitors
/// until shutdown; operations wait (up to the server-selection timeout) for the first topology.
public final class MongoClient: Service, Sendable {
    /// The settings the client was made with (validated).
    public let settings: MongoClientSettings
    let group: any EventLoopGroup
    let logger: Logger
    /// Warnings about unreachable servers: one a 10 s while they stay so.
    let unreachableLog = SharedLogThrottle(interval: .seconds(10))
    private let state: Guarded<State>
    private let runStarted = Atomic<Bool>(false)
    /// Clean-up sent after the fact (killing the server cursor of a cursor dropped before its end): it belongs to
    /// the client and ends with its ``run()``.
    let background = BackgroundTasks()
    let sessionPool = MongoSessionPool()
    /// Moves on with every topology change and every request for an immediate check.
    let changes = ChangeSignal()

    struct State {
        var topology: MongoTopologyDescription
        var pools: [MongoServerAddress: MongoConnectionPool] = [:]
        var monitored: Set<MongoServerAddress> = []
        var shutdown = false
        /// Bumped on every topology change; waiters poll it.
        var version = 0
        /// A monitor should check now (server selection is waiting or an error was seen).
        var checkRequested = false
        var clusterTime: BSONValue?
    }

    /// A client for `settings` (nothing connects until ``run()`` starts the monitors).
    /// - Throws: ``MongoError`` with kind `invalidConfiguration` for settings that cannot work.
    public init(_ settings: MongoClientSettings, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "troupe.mongo")) throws(MongoError) {
        try settings.validate()
        self.settings = settings
        self.group = group
        self.logger = logger
        state = Guarded(State(topology: MongoTopologyDescription.initial(
            hosts: settings.hosts, directConnection: settings.directConnection, replicaSet: settings.replicaSet,
            heartbeatFrequencyMS: Int(settings.heartbeatFrequency.nanosecondsClamped / 1_000_000))))
    }

    /// A client for a `mongodb://` connection string.
    /// - Throws: ``MongoError`` with kind `invalidConfiguration` for an invalid string.
    public convenience init(_ connectionString: String, logger: Logger = Logger(label: "troupe.mongo")) throws(MongoError) {
        try self.init(MongoClientSettings(connectionString), logger: logger)
    }

    /// The current view of the deployment.
    public var topology: MongoTopologyDescription { state.withLock { $0.topology } }

    /// The database `name` (nothing is sent until it is used).
    public func database(_ name: String) -> MongoDatabase { MongoDatabase(client: self, name: name) }

    // MARK: Service

    /// Monitors every known server until graceful shutdown (or cancellation), then closes all connections.
    public func run() async throws {
        let (first, _) = runStarted.compareExchange(expected: false, desired: true, ordering: .relaxed)
        precondition(first, "MongoClient.run() may be called only once")
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.superviseMonitors() }
            await withGracefulShutdownHandler {
                await group.next()
            } onGracefulShutdown: {
                self.shutdown()
            }
            group.cancelAll()
        }
        await background.stop()
        await closePools()
    }

    /// Stops monitoring; operations in flight fail, new ones throw.
    public func shutdown() {
        state.withLock { $0.shutdown = true }
        changes.notify()
    }

    private var isShutdown: Bool { state.withLock { $0.shutdown } }

    private func closePools() async {
        let pools = state.withLock { Array($0.pools.values) }
        for pool in pools { await pool.close() }
    }

    /// Starts one monitor per known server, and more as the topology names new ones.
    private func superviseMonitors() async {
        await withTaskGroup(of: Void.self) { group in
            while !isShutdown, !Task.isCancelled {
                let fresh = state.withLock { state -> [MongoServerAddress] in
                    let addresses = state.topology.servers.map(\.address).filter { !state.monitored.contains($0) }
                    state.monitored.formUnion(addresses)
                    return addresses
                }
                for address in fresh { group.addTask { await self.monitor(address) } }
                let version = changes.version
                if state.withLock({ state in state.topology.servers.allSatisfy { state.monitored.contains($0.address) } }) {
                    await changes.wait(after: version, timeout: .seconds(1))
                }
            }
            group.cancelAll()
        }
    }

    /// Runs `hello` against one server every heartbeat (sooner when asked), on its own connection.
    private func monitor(_ address: MongoServerAddress) async {
        var connection: MongoConnection?
        var rtt: Double?
        var monitorSettings = settings
        monitorSettings.credential = nil  // monitoring needs no authentication
        monitorSettings.socketTimeout = settings.connectTimeout
        while !isShutdown, !Task.isCancelled {
            guard state.withLock({ $0.topology.servers.contains { $0.address == address } }) else { break }
            let started = ContinuousClock.now
            do {
                if connection == nil || connection?.isActive == false {
                    connection = try await MongoConnection.connect(to: address, settings: monitorSettings, group: group)
                }
                let reply = try await connection!.rawCommand(["hello": 1], database: "admin", timeout: settings.connectTimeout)
                let sample = Double((ContinuousClock.now - started).nanosecondsClamped) / 1_000_000
                rtt = MongoServerSelector.averageRTT(previous: rtt, sample: sample)
                apply(MongoServerDescription(address: address, hello: reply, roundTripTimeMS: rtt, nowMS: Self.nowMS()))
            } catch {
                await connection?.close()
                connection = nil
                rtt = nil
                var unknown = MongoServerDescription(address: address, lastUpdateTimeMS: Self.nowMS())
                unknown.error = error.message
                apply(unknown)
                pool(for: address).clear()
            }
            // Sleep until the next heartbeat; a request for an immediate check (server selection waiting,
            // an error seen) wakes the monitor, but not sooner than 500 ms after its last check.
            let next = ContinuousClock.now + settings.heartbeatFrequency
            try? await Task.sleep(for: .milliseconds(500))
            while ContinuousClock.now < next, !isShutdown, !Task.isCancelled {
                let version = changes.version
                if state.withLock({ $0.checkRequested }) { break }
                await changes.wait(after: version, timeout: next - ContinuousClock.now)
            }
            state.withLock { $0.checkRequested = false }
        }
        await connection?.close()
    }

    static func nowMS() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Folds a new server description into the topology (the SDAM update rules, simplified for
    /// single, sharded and replica-set deployments without stale-primary elections).
    func apply(_ description: MongoServerDescription) {
        let wasReachable = state.withLock { state -> Bool? in
            let before = state.topology.servers.first { $0.address == description.address }.map { $0.type != .unknown || $0.error == nil }
            state.topology = MongoTopologyUpdater.update(state.topology, with: description)
            state.version += 1
            return before
        }
        changes.notify()
        // An unreachable server is said at once, then once a 10 s while it stays so; its return once.
        if description.type == .unknown, let error = description.error, !isShutdown {
            if let held = unreachableLog.admit() {
                logger.warning("mongodb server unreachable; retrying", metadata: [
                    "mongo.server.address": "\(description.address)", "error": "\(error)", "log.suppressed": "\(held)",
                ])
            }
        } else if description.type != .unknown, wasReachable == false {
            unreachableLog.reset()
            logger.notice("mongodb server reachable again", metadata: ["mongo.server.address": "\(description.address)"])
        }
    }

    func pool(for address: MongoServerAddress) -> MongoConnectionPool {
        state.withLock { state in
            if let pool = state.pools[address] { return pool }
            let pool = MongoConnectionPool(address: address, settings: settings, group: group)
            state.pools[address] = pool
            return pool
        }
    }

    /// Picks a server for `operation`, waiting for the topology up to the server-selection timeout.
    func selectServer(_ operation: MongoServerSelector.Operation) async throws(MongoError) -> MongoConnectionPool {
        let deadline = ContinuousClock.now + settings.serverSelectionTimeout
        let threshold = Double(settings.localThreshold.nanosecondsClamped) / 1_000_000
        while true {
            if isShutdown { throw MongoError(.invalidUse, "the client is shut down") }
            // A cancelled caller (a process stopping while its server is down) stops waiting at once.
            if Task.isCancelled { throw MongoError(.serverSelection, "server selection for \(operation) was cancelled") }
            guard runStarted.load(ordering: .relaxed) else {
                guard ContinuousClock.now < deadline else {
                    throw MongoError(.invalidUse, "MongoClient.run() was never started (add the client to a ServiceGroup or use withMongoClient)")
                }
                try? await Task.sleep(for: .milliseconds(5))
                continue
            }
            let topology = state.withLock { $0.topology }
            guard topology.compatible else {
                let bad = topology.servers.filter { $0.type != .unknown }.map { "\($0.address) wire \($0.minWireVersion)...\($0.maxWireVersion)" }
                throw MongoError(.serverSelection, "incompatible server (this driver speaks wire versions \(MongoTopologyDescription.supportedWireVersions)): \(bad)")
            }
            let candidates = try MongoServerSelector.select(topology, for: operation, localThresholdMS: threshold)
            if let chosen = candidates.randomElement() { return pool(for: chosen.address) }
            guard ContinuousClock.now < deadline else {
                let servers = topology.servers.map { "\($0.address) \($0.type.rawValue)\($0.error.map { ": \($0)" } ?? "")" }
                throw MongoError(.serverSelection, "no server for \(operation) within \(settings.serverSelectionTimeout) (topology \(topology.type.rawValue): \(servers))")
            }
            let version = changes.version
            requestCheck()
            await changes.wait(after: version, timeout: .milliseconds(100))
        }
    }

    /// Marks a server unknown after a network error, so selection waits for the monitor.
    func markUnknown(_ address: MongoServerAddress, error: MongoError) {
        var unknown = MongoServerDescription(address: address, lastUpdateTimeMS: Self.nowMS())
        unknown.error = error.message
        apply(unknown)
        pool(for: address).clear()
        requestCheck()
    }

    /// Asks the monitors for an immediate check.
    func requestCheck() {
        let first = state.withLock { state -> Bool in
            defer { state.checkRequested = true }
            return !state.checkRequested
        }
        if first { changes.notify() }
    }

    func gossip(_ reply: BSONDocument) {
        guard let time = reply["$clusterTime"] else { return }
        state.withLock { state in
            if case .document(let new) = time, case .document(let old)? = state.clusterTime,
                let newTS = new["clusterTime"]?.timestampValue, let oldTS = old["clusterTime"]?.timestampValue, newTS <= oldTS {
                return
            }
            state.clusterTime = time
        }
    }

    var clusterTime: BSONValue? { state.withLock { $0.clusterTime } }

    /// Open connections per server (for tests and the dashboard).
    public var connectionCounts: [MongoServerAddress: Int] {
        state.withLock { $0.pools.mapValues(\.openCount) }
    }
}

/// Runs `body` with a started client, shutting it down afterwards.
public func withMongoClient<Result: Sendable>(
    _ settings: MongoClientSettings,
    logger: Logger = Logger(label: "troupe.mongo"),
    _ body: @Sendable (MongoClient) async throws -> Result
) async throws -> Result {
    let client = try MongoClient(settings, logger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await client.run() }
        defer {
            client.shutdown()
            group.cancelAll()
        }
        let result = try await body(client)
        client.shutdown()
        try await group.waitForAll()
        return result
    }
}
