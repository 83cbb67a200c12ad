public import Logging
public import TroupeActors
public import TroupeTLS
public import TroupeCore

/// Several ``ClusterActorSystem`` nodes in one process over loopback TCP, for tests and the demo.
public struct LocalCluster: Sendable {
    public var clusterName: String
    public var secret: [UInt8]
    public var idleTimeout: Duration
    public var callTimeout: Duration
    public var logger: Logger
    /// Each node's TLS settings (mutual TLS on the cluster transport), by node name; `nil`: plaintext.
    public var tls: (@Sendable (_ node: String) -> TLSSettings?)?
    /// Every node's runtime clock (a ``ManualClock`` to move idleness and call deadlines by hand).
    public var clock: any RuntimeClock = SystemRuntimeClock()

    public init(
        clusterName: String = "test",
        secret: [UInt8] = Array("local-cluster-secret-0123456789".utf8),
        idleTimeout: Duration = .seconds(300),
        callTimeout: Duration = .seconds(10),
        logger: Logger = Logger(label: "troupe.test", factory: { _ in SwiftLogNoOpLogHandler() }),
        tls: (@Sendable (_ node: String) -> TLSSettings?)? = nil
    ) {
        self.tls = tls
        self.clusterName = clusterName
        self.secret = secret
        self.idleTimeout = idleTimeout
        self.callTimeout = callTimeout
        self.logger = logger
    }

    public func configuration(node name: String) -> ClusterConfiguration {
        var configuration = ClusterConfiguration(
            clusterName: clusterName, nodeName: name, host: "127.0.0.1", port: 0, secret: secret,
            defaultCallTimeout: callTimeout, idleTimeout: idleTimeout, logger: logger
        )
        configuration.tls = tls?(name)
        configuration.clock = clock
        return configuration
    }

    /// Starts one node (not yet running).
    public func start(
        node name: String,
        membership: any MembershipProvider,
        stateStore: any ActorStateStore,
        register: (ClusterActorSystem) -> Void
    ) async throws -> ClusterActorSystem {
        let system = try await ClusterActorSystem.start(configuration(node: name), membership: membership, stateStore: stateStore)
        register(system)
        return system
    }

    /// Starts `count` nodes sharing `membership` and `stateStore`, runs them, waits until every node
    /// sees all of them, calls `body`, then shuts every node down and waits for them to stop.
    public func run<Result: Sendable>(
        nodes count: Int,
        membership: InMemoryMembership = InMemoryMembership(),
        stateStore: any ActorStateStore = InMemoryActorStateStore(),
        register: @Sendable (ClusterActorSystem) -> Void,
        body: @Sendable ([ClusterActorSystem]) async throws -> Result
    ) async throws -> Result {
        var systems: [ClusterActorSystem] = []
        for index in 0..<count {
            systems.append(try await start(node: "node-\(index + 1)", membership: membership, stateStore: stateStore, register: register))
        }
        let started = systems
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            for system in started {
                group.addTask {
                    try await system.run()
                    return nil
                }
            }
            defer { for system in started { system.shutdown() } }
            try await Self.waitForMembers(started, count: count)
            let result = try await body(started)
            for system in started { system.shutdown() }
            try await group.waitForAll()
            return result
        }
    }

    /// Waits (at most 5 s) until every system sees `count` members.
    public static func waitForMembers(_ systems: [ClusterActorSystem], count: Int, timeout: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + timeout
        while systems.contains(where: { $0.members.count != count }) {
            guard ContinuousClock.now < deadline else {
                throw ActorSystemError(.timeout, "members did not converge to \(count) within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

extension ClusterActorSystem {
    /// The first key `"\(prefix)-N"` of virtual actor `type` that this node owns under its current view.
    public func firstKeyOwned(type: String, prefix: String = "k") -> String {
        var index = 0
        while true {
            let key = "\(prefix)-\(index)"
            if owner(of: .virtual(type: type, key: key))?.node.name == node.name { return key }
            index += 1
        }
    }
}
