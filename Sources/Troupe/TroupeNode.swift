import Foundation
import TroupeCore
import TroupeSaga
public import Logging
public import ServiceLifecycle
public import TroupeActors
import TroupeDiscovery
public import TroupeEtcd
public import TroupeMongo
public import TroupeRedis
import TroupeStore
import UnixSignals
import TroupeBSON
import TroupeActorsEtcd
import TroupeActorsStore

/// A Troupe node assembled from its configuration: the etcd client and membership (when configured)
/// and the actor system, run as one `ServiceGroup` in dependency order (shut down in reverse).
public struct TroupeNode: Sendable {
    /// The node's actor system.
    public let system: ClusterActorSystem
    /// The clients the configuration asked for (run as services of the node).
    public let etcd: EtcdClient?
    /// The MongoDB client, with a `mongo` section.
    public let mongo: MongoClient?
    /// The Redis client, with a `redis` section.
    public let redis: RedisClient?
    /// The live configuration (with `etcd.config`): the node's own tunables (`callTimeoutMs`, `idleTimeoutSeconds`);
    /// add the settings of what the process builds later (``LiveConfiguration/add(_:)``).
    public let live: LiveConfiguration?
    private var services: [any Service]
    private let logger: Logger

    /// Runs `more` after the node's own services (started after them, shut down before them):
    /// the gateway, bus consumers, leases.
    public func adding(_ more: [any Service]) -> TroupeNode {
        var node = self
        node.services += more
        return node
    }

    /// Runs `more` before the node's own services (started before them, shut down after them).
    func prepending(_ more: [any Service]) -> TroupeNode {
        var node = self
        node.services = more + node.services
        return node
    }

    /// A node of an actor system started elsewhere (the embedded engines): its only service is the system.
    init(system: ClusterActorSystem, logger: Logger) {
        self.init(system: system, etcd: nil, mongo: nil, redis: nil, live: nil, services: [system], logger: logger)
    }

    private init(system: ClusterActorSystem, etcd: EtcdClient?, mongo: MongoClient?, redis: RedisClient?, live: LiveConfiguration?,
                 services: [any Service], logger: Logger) {
        self.system = system
        self.etcd = etcd
        self.mongo = mongo
        self.redis = redis
        self.live = live
        self.services = services
        self.logger = logger
    }

    /// The node's own live settings: the call deadline, the idle time before passivation, and the timeouts of
    /// saga steps (`sagas/<saga>/<step>/timeoutMs`).
    static func liveSettings(of system: ClusterActorSystem) -> [LiveSetting] {
        [
            LiveSetting(key: "sagas/", expected: "sagas/<saga>/<step>/timeoutMs: a whole number of milliseconds 1…600000, for a registered saga's step") { name, value in
                let parts = name.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 3, parts[2] == "timeoutMs" else { throw LiveSetting.Refused() }
                let timeout = try value.map { Duration.milliseconds(try LiveSetting.integer($0, in: 1...600_000)) }
                try system.sagas.setTimeout(timeout, saga: String(parts[0]), step: String(parts[1]))
            },
            LiveSetting.integer("callTimeoutMs", in: 1...600_000, fallback: nil) { milliseconds in
                try system.tune(callTimeout: milliseconds.map { .milliseconds($0) } ?? system.configuration.defaultCallTimeout)
            },
            LiveSetting.integer("idleTimeoutSeconds", in: 1...604_800, fallback: nil) { seconds in
                try system.tune(idleTimeout: seconds.map { .seconds($0) } ?? system.configuration.idleTimeout)
            },
        ]
    }

    /// Starts the node's actor system and registers the virtual actor types it hosts.
    public static func start(
        _ configuration: NodeConfiguration,
        environment: [String: String],
        logger: Logger,
        stateStore: any ActorStateStore = InMemoryActorStateStore(),
        register: (ClusterActorSystem) -> Void
    ) async throws -> TroupeNode {
        try await start(
            configuration, cluster: configuration.clusterConfiguration(environment: environment, logger: logger),
            environment: environment, logger: logger, stateStore: stateStore, register: register
        )
    }

    /// A client-only node of the cluster `configuration` describes: it hosts no actor type, listens
    /// on an ephemeral port, and learns the members from etcd or the static list.
    public static func startClient(
        _ configuration: NodeConfiguration, name: String, environment: [String: String], logger: Logger
    ) async throws -> TroupeNode {
        try await start(
            configuration, cluster: configuration.clientConfiguration(name: name, environment: environment, logger: logger),
            environment: environment, logger: logger, stateStore: InMemoryActorStateStore(), register: { _ in }
        )
    }

    private static func start(
        _ configuration: NodeConfiguration,
        cluster: ClusterConfiguration,
        environment: [String: String],
        logger: Logger,
        stateStore: any ActorStateStore,
        register: (ClusterActorSystem) -> Void
    ) async throws -> TroupeNode {
        var services: [any Service] = []
        var etcdClient: EtcdClient?
        var mongoClient: MongoClient?
        var redisClient: RedisClient?
        let membership: any MembershipProvider
        var stateStore = stateStore
        if let etcd = configuration.etcd {
            let password = try etcd.passwordEnv.map { name -> String in
                guard let value = environment[name] else {
                    throw ConfigurationError("etcd.passwordEnv names \(name), which is not set")
                }
                return value
            }
            let client = try EtcdClient(configuration: EtcdConfiguration(
                endpoints: etcd.endpoints, username: etcd.username, password: password, logger: logger,
                tls: try configuration.etcdTLS(etcd)
            ))
            let etcdMembership = EtcdMembership(
                registry: EtcdServiceRegistry(etcd: client, ttl: .seconds(etcd.ttlSeconds ?? 10), logger: logger),
                cluster: configuration.cluster
            )
            services = [client, etcdMembership]
            etcdClient = client
            membership = etcdMembership
            if etcd.actorState == true { stateStore = EtcdActorStateStore(etcd: client) }
        } else {
            // The static list does not know incarnations; placement uses names, handshakes learn the rest.
            membership = configuration.membership
        }
        if let mongo = configuration.mongo {
            var settings = try mongo.settings(environment: environment, nodeTLS: configuration.tls)
            // An acknowledged write of actor state must survive a crash of the server: without a journaled
            // write concern a server may acknowledge a write it has not made durable, and a killed server then
            // brings back an older state (an order "paid" again after its charge was captured — seen in the
            // fault-injection run). Journaled unless the connection string chooses (w=…, journal=…).
            if settings.writeConcern == nil { settings.writeConcern = ["j": true] }
            let client = try MongoClient(settings, logger: logger)
            services.insert(client, at: 0)
            mongoClient = client
            if mongo.actorState != false {
                let indexes = (mongo.stateIndexes ?? []).map { DocumentIndex($0.split(separator: ",").map(String.init)) }
                stateStore = try await DocumentActorStateStore(store: DocumentStore(engine: MongoDocumentStore(database: client.database(mongo.database))),
                                                               indexes: indexes)
            }
        }
        if let redis = configuration.redis {
            let client = try RedisClient(configuration: try redis.configuration(environment: environment, logger: logger, nodeTLS: configuration.tls))
            services.insert(client, at: 0)
            redisClient = client
        }
        let system = try await ClusterActorSystem.start(cluster, membership: membership, stateStore: stateStore)
        register(system)
        var live: LiveConfiguration?
        if let etcdClient, let source = configuration.etcd?.config {
            let values = try EtcdConfigSource(etcd: etcdClient, app: source.app, environment: source.environment)
            let applier = LiveConfiguration(source: values, settings: liveSettings(of: system), logger: logger)
            live = applier
            // After the system (it tunes it), before what the caller adds (whose settings it applies).
            services += [system, values, applier]
        } else {
            services.append(system)
        }
        return TroupeNode(system: system, etcd: etcdClient, mongo: mongoClient, redis: redisClient, live: live, services: services, logger: logger)
    }

    /// Runs the node's services until `body` returns, then shuts them down (for clients and scripts). When the
    /// services end first — one failed (a listener could not bind its port, say) — `body` is cancelled and the
    /// services' error is thrown at once, rather than after `body`'s own deadlines.
    public func run<T: Sendable>(until body: @Sendable () async throws -> T) async throws -> T {
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: logger))
        return try await withoutActuallyEscaping(body) { body in
            // Both children belong to this call's group (the body escapes only into it): whichever ends first ends
            // the other, and both are awaited before the call returns.
            try await withThrowingTaskGroup(of: T?.self) { tasks in
                tasks.addTask {
                    try await group.run()
                    return nil
                }
                tasks.addTask {
                    do {
                        let result = try await body()
                        await group.triggerGracefulShutdown()
                        return result
                    } catch {
                        await group.triggerGracefulShutdown()
                        throw error
                    }
                }
                var result: T?
                var failure: (any Error)?
                var servicesEnded = false
                while !tasks.isEmpty {
                    do {
                        guard let next = try await tasks.next() else { break }
                        if let next {
                            result = next
                        } else if result == nil {
                            // The services ended while `body` still ran: nothing is left for it to work with.
                            servicesEnded = true
                            tasks.cancelAll()
                        }
                    } catch {
                        // The first error wins: the services' (body is then cancelled) or body's — not the
                        // cancellation of a body whose services had ended.
                        if failure == nil, !(servicesEnded && error is CancellationError) { failure = error }
                        tasks.cancelAll()
                        await group.triggerGracefulShutdown()
                    }
                }
                if let failure { throw failure }
                guard let result else {
                    throw ActorSystemError(.systemShuttingDown, servicesEnded ? "the node's services stopped before the work was done" : "the work ended without a result")
                }
                return result
            }
        }
    }

    /// Runs until SIGTERM / SIGINT, then shuts down gracefully (the actor system first).
    public func run() async throws {
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
            )
        )
        try await group.run()
    }
}

/// The version of Troupe this build is (`troupe --version`).
public let troupeVersion = "0.9.0"
