import Foundation
public import Logging
import NIOCore
public import ServiceLifecycle
public import TroupeActors
public import TroupeBus
public import TroupeCache
import TroupeCore
public import TroupeGateway
import TroupeMongo
public import TroupeRedis
public import TroupeEtcd
public import TroupeSaga
public import TroupeStore
import TroupeActorsStore

/// A service of your own on Troupe: the virtual actor types it hosts, the bus consumers and background
/// services it runs, and the HTTP routes it serves — declared once, run on the embedded engines (one
/// process, nothing to install) or on real servers (etcd, MongoDB, Redis) from a configuration file.
///
/// ```swift
/// var service = TroupeService(name: "hello")
/// service.host(GreeterActor.self)
/// service.consume(topic: "greetings", group: "leaderboard") { message, context in … }
/// service.routes { context in [GatewayRoute(.get, "/hello/{name}", summary: "…", requiresAuth: false) { … }] }
/// try await service.run()   // --config FILE for real servers; without it, the embedded engines
/// ```
///
/// What the configuration file names, the service uses: `etcd` for membership (and actor state with
/// `etcd.actorState`), `mongo` for actor state and documents, `redis` for the bus and the gateway's keys,
/// `gateway` for the HTTP listener. What it does not name runs embedded in the process: SQLite documents, an
/// in-memory bus and key-value store.
public struct TroupeService: Sendable {
    /// What a service's consumers, routes and background services are built from: the node's actor system and
    /// the engines the configuration chose.
    public struct Context: Sendable {
        /// This node's actor system (call any actor of the cluster through it).
        public let system: ClusterActorSystem
        /// Every node this process runs: ``system`` alone, or several on the embedded engines
        /// (``Options/nodes``).
        public let systems: [ClusterActorSystem]
        /// The event bus: Redis Streams with a `redis` section, else in memory.
        public let bus: Bus
        /// Documents: MongoDB with a `mongo` section, else SQLite.
        public let documents: DocumentStore
        /// Keys with expiry (sessions, idempotency keys, caches): Redis with a `redis` section, else in memory.
        public let keyValues: any KeyValueStore
        /// The configuration file's contents (nil on the embedded engines).
        public let configuration: NodeConfiguration?
        /// The live configuration (with `etcd.config` in the file): add settings of your own with
        /// ``LiveConfiguration/add(_:)``; the node's and the gateway's are there already.
        public let live: LiveConfiguration?
        /// The etcd client, with an `etcd` section (a service of the node: it runs once the node runs).
        public let etcd: EtcdClient?
        /// The Redis client, with a `redis` section (a service of the node).
        public let redis: RedisClient?
        /// The service's logger.
        public let logger: Logger
    }

    /// How a service is started: from a configuration file, or embedded with an HTTP port.
    public struct Options: Sendable, Equatable {
        /// The configuration file (JSON, ``NodeConfiguration``); nil runs one node on the embedded engines.
        public var configurationFile: String?
        /// The embedded HTTP listener (a configuration file's `gateway` section decides otherwise).
        public var host = "127.0.0.1"
        /// 0 picks a free port (``Running/httpPort(timeout:)`` says which).
        public var port = 8080
        /// Nodes of the embedded cluster, all in this process (1…9): they share the membership and the SQLite
        /// state, and place the actors among them as a cluster of processes would.
        public var nodes = 1
        /// The gateway's settings on the embedded engines (its host and port replace ``host`` and ``port``);
        /// nil: a gateway with every default and a token key made for this run.
        public var gateway: NodeConfiguration.Gateway?

        /// Embedded with HTTP on `host:port` (`nodes` of them), or from `configurationFile`.
        public init(configurationFile: String? = nil, host: String = "127.0.0.1", port: Int = 8080, nodes: Int = 1) {
            self.configurationFile = configurationFile
            self.host = host
            self.port = port
            self.nodes = nodes
        }

        /// The usage line of ``parse(_:)``.
        public static func usage(_ name: String) -> String {
            "usage: \(name) [--config FILE] [--host HOST] [--port PORT] [--nodes N]\n"
                + "  without --config: the embedded engines, HTTP on --host:--port (default 127.0.0.1:8080), --nodes nodes in this process (default 1)\n"
                + "  --config FILE: the node's configuration (cluster, etcd, mongo, redis, gateway sections)"
        }

        /// Reads `--config FILE`, `--host HOST`, `--port PORT` and `--nodes N` (the program's name first, as in `CommandLine.arguments`).
        /// - Throws: `ConfigurationError` naming the argument to fix.
        public static func parse(_ arguments: [String]) throws -> Options {
            var options = Options()
            var rest = arguments.dropFirst()
            var listenerGiven = false
            func value(_ flag: String) throws -> String {
                guard let value = rest.popFirst(), !value.hasPrefix("--") else {
                    throw ConfigurationError("\(flag) needs a value")
                }
                return value
            }
            while let argument = rest.popFirst() {
                switch argument {
                case "--config": options.configurationFile = try value(argument)
                case "--host":
                    options.host = try value(argument)
                    listenerGiven = true
                case "--port":
                    let text = try value(argument)
                    guard let port = Int(text), (0...65535).contains(port) else {
                        throw ConfigurationError("--port must be a number 0…65535 (it is \"\(text)\")")
                    }
                    options.port = port
                    listenerGiven = true
                case "--nodes":
                    let text = try value(argument)
                    guard let nodes = Int(text), (1...9).contains(nodes) else {
                        throw ConfigurationError("--nodes must be a number 1…9 (it is \"\(text)\")")
                    }
                    options.nodes = nodes
                    listenerGiven = true
                default:
                    throw ConfigurationError("unknown argument \"\(argument)\"")
                }
            }
            if listenerGiven, options.configurationFile != nil {
                throw ConfigurationError("--host, --port and --nodes are for the embedded engines; with --config, the file says where to listen and the nodes are processes")
            }
            return options
        }
    }

    /// The service's name: the cluster's name on the embedded engines, the producer group of its outboxes.
    public let name: String
    /// What this service's node is in the cluster.
    public enum Role: Sendable, Equatable {
        /// It hosts the actor types the service declares (``host(_:)``, ``saga(_:)``).
        case member
        /// A client of the cluster (a gateway, a tool): it calls the members' actors and hosts none; it runs from
        /// a configuration file, whose members it joins as a client.
        case client
    }
    /// A member (the default) or a client of the cluster.
    public var role = Role.member
    private var hosted: [@Sendable (ClusterActorSystem) -> Void] = []
    private var configurations: [@Sendable (ClusterActorSystem) -> Void] = []
    private var hostsSagas = false
    private var consumerBuilders: [@Sendable (Context) -> BusConsumer] = []
    private var gatewayBuilders: [@Sendable (Context, SessionStore<GatewayServices.Session>) async throws -> GatewaySetup] = []
    private var serviceBuilders: [@Sendable (Context) async throws -> [any Service]] = []
    /// Fields of the actors' states to index, as dot paths in the state (`"info.status"`): on MongoDB an index
    /// on `state.info.status` beside the file's `mongo.stateIndexes`, on the embedded SQLite engine an index on
    /// `json_extract(state, '$.info.status')` (see `SQLiteActorStateStore`).
    public var stateIndexes: [String] = []
    /// Checks a user name and password for `POST /login` and returns the user (nil: refused). Absent: the
    /// service issues no tokens, and only routes with `requiresAuth: false` can be called. (A ``gateway(_:)``
    /// builder may return its own.)
    public var authenticate: (@Sendable (String, String) async throws -> String?)?

    /// A service named `name`: declare its actors, consumers and routes, then ``run(arguments:environment:logger:)``.
    public init(name: String) {
        self.name = name
    }

    /// Runs `body` on each node's actor system before it serves (registrations of several types at once, system
    /// extensions, error types). It runs on a ``Role/client`` too: register there only what a client needs
    /// (`registerRemoteError`), not actor types.
    public mutating func configure(_ body: @escaping @Sendable (ClusterActorSystem) -> Void) {
        configurations.append(body)
    }

    /// Hosts the virtual actor type `type` on this service's nodes (members; a client hosts nothing).
    public mutating func host<A: VirtualActor>(_ type: A.Type) where A.ActorSystem == ClusterActorSystem {
        hosted.append { $0.register(type) }
    }

    /// Registers a saga on every node of the service (start one with `system.reference(SagaActor.self, key:)`
    /// `.start(definition:input:)`); `SagaActor` is hosted with it.
    public mutating func saga(_ definition: SagaDefinition) {
        if !hostsSagas {
            hostsSagas = true
            host(SagaActor.self)
        }
        hosted.append { $0.sagas.register(definition) }
    }

    /// Runs `handler` for each message of `topic` (with a tag `tags` accepts) once per consumer `group`
    /// across the cluster's nodes; a thrown error redelivers the message later (then the group's dead-letter
    /// topic). Orderly: the messages of one sharding key one after another.
    public mutating func consume(topic: String, group: String, tags: TagExpression = .all, orderly: Bool = true,
                                 _ handler: @escaping @Sendable (BusMessage, Context) async throws -> Void) {
        consumerBuilders.append { context in
            let listen: @Sendable (BusMessage) async throws -> ConsumeResult = { message in
                try await handler(message, context)
                return .success
            }
            return BusConsumer(bus: context.bus, group: group, topic: topic, tags: tags, listener: orderly ? .orderly(listen) : .concurrent(listen))
        }
    }

    /// Delivers each message of `topic` to the virtual actor of type `type` whose key `key` names (messages
    /// it returns nil for are skipped) — choreography: an event of one actor becomes a call on another.
    public mutating func route<A: VirtualActor>(
        topic: String, group: String, tags: TagExpression = .all, to type: A.Type,
        key: @escaping @Sendable (BusMessage) -> String?, deliver: @escaping @Sendable (A, BusMessage) async throws -> Void
    ) where A.ActorSystem == ClusterActorSystem {
        consumerBuilders.append { context in
            routeEvents(bus: context.bus, group: group, topic: topic, tags: tags, system: context.system, to: type, key: key, deliver: deliver)
        }
    }

    /// Adds HTTP routes, served by the node's gateway (authentication, rate limits, idempotency keys,
    /// `/health`, `/ready`, `/metrics`, `/openapi.json` come with it).
    public mutating func routes(_ build: @escaping @Sendable (Context) throws -> [GatewayRoute]) {
        gatewayBuilders.append { context, _ in GatewaySetup(routes: try build(context)) }
    }

    /// What the service's gateway serves, built by `build` once the node runs — its database and cache clients
    /// answer — and retried with backoff for up to a minute while they do not (each failed attempt logged once,
    /// a stop honoured at any time). For what needs running clients to be built (a catalog read at start-up),
    /// and for what depends on it: the login check, the readiness check, admin routes, services run beside the
    /// listeners. `build` gets the gateway's session store.
    public mutating func gateway(_ build: @escaping @Sendable (Context, SessionStore<GatewayServices.Session>) async throws -> GatewaySetup) {
        gatewayBuilders.append(build)
    }

    /// Adds long-lived services of your own (started after the node's, stopped before them).
    public mutating func services(_ build: @escaping @Sendable (Context) async throws -> [any Service]) {
        serviceBuilders.append(build)
    }

    /// Parses the command line (``Options/parse(_:)``), starts the service and runs it until SIGTERM or
    /// SIGINT. Usage problems are printed with the usage and end the process with status 64; other start-up
    /// failures are thrown.
    /// - Parameters:
    ///   - arguments: the command line, the program's name first.
    ///   - environment: the variables the configuration file names (default: the process's).
    ///   - logger: the service's logger (default: one labelled with its name).
    public func run(arguments: [String] = CommandLine.arguments, environment: [String: String]? = nil,
                    logger: Logger? = nil) async throws {
        if arguments.dropFirst().contains(where: { $0 == "--help" || $0 == "-h" }) {
            // `run` is the service's command line: `--help` answers on standard output, as command-line tools do.
            print(Options.usage(name))
            return
        }
        let options: Options
        do {
            options = try Options.parse(arguments)
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("error: \(error.message)\n\(Options.usage(name))\n".utf8))
            exit(64)
        }
        let running = try await start(options, environment: environment, logger: logger ?? Logger(label: name))
        try await running.run()
    }

    /// Starts the service's node and engines (not yet serving: call ``Running/run()`` or ``Running/run(until:)``).
    /// - Throws: `ConfigurationError` saying what to fix.
    /// - Parameters:
    ///   - options: embedded, or the configuration file.
    ///   - environment: the variables the configuration file names (default: the process's).
    ///   - logger: the service's logger.
    public func start(_ options: Options, environment: [String: String]? = nil, logger: Logger) async throws -> Running {
        let environment = environment ?? ProcessInfo.processInfo.environment
        let configuration = try options.configurationFile.map { try NodeConfiguration.load(path: $0, environment: environment, role: role == .client ? .gateway : .node) }
        return try await start(configuration, embedded: options, environment: environment, logger: logger)
    }

    /// Starts the service from a configuration already loaded (an application that reads its own section of the file
    /// with ``NodeConfiguration/load(path:environment:role:section:as:)``).
    public func start(_ configuration: NodeConfiguration, environment: [String: String]? = nil, logger: Logger) async throws -> Running {
        try await start(configuration, embedded: Options(), environment: environment ?? ProcessInfo.processInfo.environment, logger: logger)
    }

    private func start(_ loadedConfiguration: NodeConfiguration?, embedded options: Options, environment: [String: String],
                       logger: Logger) async throws -> Running {
        guard loadedConfiguration != nil || role == .member else {
            throw ConfigurationError("\(name) is a client of a cluster: give it the cluster's configuration file (--config)")
        }
        guard (1...9).contains(options.nodes) else { throw ConfigurationError("nodes must be 1…9 (it is \(options.nodes))") }
        // The embedded document engine, opened only when MongoDB does not keep the documents.
        let sqlite = loadedConfiguration?.mongo == nil ? try await SQLiteDocumentStore.open(logger: logger) : nil
        do {
            let configure: @Sendable (ClusterActorSystem) -> Void = { [hosted, configurations, role] system in
                if role == .member { for register in hosted { register(system) } }
                for body in configurations { body(system) }
            }
            let node: TroupeNode
            var others: [ClusterActorSystem] = []
            let bus: Bus
            let documents: DocumentStore
            let keyValues: any KeyValueStore
            // The gateway: every key of the configuration's section (or of the embedded options' section).
            var assembly: GatewayAssembly?
            var loaded: NodeConfiguration?
            if var configuration = loadedConfiguration {
                if role == .member, configuration.mongo?.actorState == false || configuration.mongo == nil, configuration.etcd?.actorState != true,
                   configuration.etcd != nil || (configuration.members ?? []).count > 1 {
                    logger.warning("actor state is kept in this process only (in memory): a cluster of several nodes needs a shared store — add a mongo section (or etcd.actorState)")
                }
                if !stateIndexes.isEmpty, var mongo = configuration.mongo {
                    mongo.stateIndexes = (mongo.stateIndexes ?? []) + stateIndexes.map { "state." + $0 }
                    configuration.mongo = mongo
                }
                loaded = configuration
                switch role {
                case .member:
                    // Without a store of their own, actor states live in this process's memory (one node's data).
                    node = try await TroupeNode.start(configuration, environment: environment, logger: logger, register: configure)
                case .client:
                    node = try await TroupeNode.startClient(configuration, name: configuration.node, environment: environment, logger: logger)
                    configure(node.system)
                }
                if let redis = node.redis, let section = configuration.redis {
                    bus = try Bus(engine: RedisBusEngine(redis: redis, blockingReads: try section.configuration(
                        environment: environment, logger: logger, nodeTLS: configuration.tls)))
                    keyValues = RedisKeyValueStore(redis: redis, prefix: "\(configuration.cluster):")
                } else {
                    bus = try Bus(engine: InMemoryBusEngine())
                    keyValues = InMemoryKeyValueStore()
                }
                if let mongo = node.mongo, let section = configuration.mongo {
                    documents = DocumentStore(engine: MongoDocumentStore(database: mongo.database(section.database)))
                } else {
                    documents = DocumentStore(engine: try Self.embedded(sqlite))
                }
                if let section = configuration.gateway {
                    assembly = try GatewayAssembly(section: section, issuer: "troupe", audience: configuration.cluster, keyPrefix: "\(configuration.cluster):",
                                                   redis: node.redis, etcd: node.etcd, environment: environment, logger: logger)
                } else if !gatewayBuilders.isEmpty {
                    throw ConfigurationError("\(name) serves HTTP routes: add a gateway section with a port (and jwtSecretEnv)")
                }
            } else {
                let secret = Self.randomBytes()
                let membership = InMemoryMembership()
                let states = try await SQLiteActorStateStore(store: try Self.embedded(sqlite), indexes: stateIndexes)
                var systems: [ClusterActorSystem] = []
                for index in 1...options.nodes {
                    var cluster = ClusterConfiguration(clusterName: name, nodeName: "node-\(index)", secret: secret, logger: logger)
                    cluster.port = 0
                    let system = try await ClusterActorSystem.start(cluster, membership: membership, stateStore: states)
                    configure(system)
                    systems.append(system)
                }
                node = TroupeNode(system: systems[0], logger: logger)
                others = Array(systems.dropFirst())
                bus = try Bus(engine: InMemoryBusEngine())
                keyValues = InMemoryKeyValueStore()
                documents = DocumentStore(engine: try Self.embedded(sqlite))
                // A token key of its own, made for this run (tokens do not outlive the process).
                var section = options.gateway ?? NodeConfiguration.Gateway(port: options.port)
                if options.gateway == nil { section.host = options.host }
                if section.jwtSecret == nil, section.jwtSecretEnv == nil {
                    section.jwtSecret = Self.randomBytes().map { String($0 >> 4, radix: 16) + String($0 & 0x0f, radix: 16) }.joined()
                }
                assembly = try GatewayAssembly(section: section, issuer: name, audience: name, keyPrefix: "\(name):",
                                               redis: nil, etcd: nil, environment: environment, logger: logger)
            }
            let systems = [node.system] + others
            let context = Context(system: node.system, systems: systems, bus: bus, documents: documents, keyValues: keyValues,
                                  configuration: loaded, live: node.live, etcd: node.etcd, redis: node.redis, logger: logger)
            // Events the actors emit through their outboxes go to this bus.
            for system in systems { system.outboxRelay.setPublisher(bus.producer(group: name)) }
            var services: [any Service] = others + [bus]
            if role == .member { services.append(ReadinessProbe(name: name, store: node.system.stateStore, logger: logger)) }
            services += consumerBuilders.map { $0(context) }
            for build in serviceBuilders { services += try await build(context) }
            let bound = Eventual<Int>()
            if let assembly, !gatewayBuilders.isEmpty {
                services.append(gatewayService(assembly, context: context, bound: bound))
            }
            let closeSQLite: [any Service] = sqlite.map { sqlite in [CloseOnShutdown { await sqlite.close() }] } ?? []
            return Running(context: context, node: node.prepending(closeSQLite).adding(services), bound: bound,
                           name: name)
        } catch {
            await sqlite?.close()
            throw error
        }
    }

    /// The gateway, built once the node runs (``LateServices``): the builders' routes and setups, the
    /// assembly's limits, upstreams and listeners.
    private func gatewayService(_ assembly: GatewayAssembly, context: Context, bound: Eventual<Int>) -> LateServices {
        let builders = gatewayBuilders
        let authenticate = self.authenticate
        let keyValues = context.keyValues
        return LateServices(name: "\(name) gateway", logger: context.logger) {
            let settings = assembly.configuration
            let sessions = SessionStore<GatewayServices.Session>(store: keyValues, ttl: settings.sessionTTL, staleIfError: settings.sessionStaleIfError)
            var setup = GatewaySetup()
            for build in builders { setup.merge(try await build(context, sessions)) }
            let ready = setup.ready
            let gateway = try await Gateway(
                configuration: settings,
                services: GatewayServices(
                    sessions: sessions, idempotency: IdempotencyStore(store: keyValues),
                    userLimiter: setup.userLimiter ?? assembly.userLimiter, globalLimiter: assembly.globalLimiter,
                    loginLimiter: assembly.loginLimiter, loginAddressLimiter: assembly.loginAddressLimiter,
                    authenticate: setup.authenticate ?? authenticate ?? { _, _ in nil },
                    metrics: setup.metrics ?? { "" }, ready: { ready.allSatisfy { $0() } }),
                routes: setup.routes, upstreams: assembly.upstreams)
            let listeners = try assembly.listeners(gateway, adminRoutes: setup.adminRoutes) { channel in
                if let port = channel.localAddress?.port { bound.set(port) }
            }
            // Last, once nothing can fail and be retried: a retry must not add the settings of a gateway that never served.
            context.live?.add(assembly.liveSettings(for: gateway))
            // The builders' services after the listeners: stopped first (a dashboard's streams end before the listeners drain).
            return assembly.services + listeners + setup.services
        }
    }

    /// The embedded document engine, which `start` opened because no `mongo` section names another.
    private static func embedded(_ sqlite: SQLiteDocumentStore?) throws -> SQLiteDocumentStore {
        guard let sqlite else { throw ConfigurationError("the embedded document store was not opened (a mongo section is configured)") }
        return sqlite
    }

    static func randomBytes() -> [UInt8] { (0..<32).map { _ in UInt8.random(in: .min ... .max) } }

    /// A started service.
    public struct Running: Sendable {
        /// The actor system and engines the service runs on.
        public let context: Context
        /// The node: its actor system, its clients (etcd, MongoDB, Redis) and every service the service runs (run them
        /// with ``run()`` or ``run(until:)``).
        public let node: TroupeNode
        let bound: Eventual<Int>
        let name: String

        /// The port the HTTP listener bound, once it listens.
        /// - Throws: `ActorSystemError/Code/timeout` when it does not listen within `timeout` (no routes, or the bind failed).
        public func httpPort(timeout: Duration = .seconds(10)) async throws -> Int {
            guard let port = await bound.value(within: timeout) else {
                throw ActorSystemError(.timeout, "\(name) was not listening for HTTP within \(timeout)")
            }
            return port
        }

        /// Runs until SIGTERM or SIGINT, then stops gracefully (the gateway first, the actor system last).
        public func run() async throws {
            try await node.run()
        }

        /// Runs until `body` returns, then stops gracefully (for tests and tools).
        public func run<T: Sendable>(until body: @Sendable () async throws -> T) async throws -> T {
            try await node.run(until: body)
        }
    }
}

/// Says "<name> ready" once the node's state store answers a read (MongoDB, etcd, …), logging each failed attempt
/// at the step it waits for (200 ms doubling to 10 s), then waits for the shutdown. A node whose store is down says
/// so instead of claiming to be up.
struct ReadinessProbe: Service {
    let name: String
    let store: any ActorStateStore
    let logger: Logger

    func run() async throws {
        var pause = Duration.milliseconds(200)
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                _ = try await store.load(type: "_troupe", key: "readiness")
                logger.notice("\(name) ready")
                break
            } catch {
                logger.warning("\(name) is waiting for its state store", metadata: ["error": "\(error)", "retry.in_ms": "\(pause.components.seconds * 1000 + pause.components.attoseconds / 1_000_000_000_000_000)"])
                try? await cancelWhenGracefulShutdown { [pause] in try await Task.sleep(for: pause) }
                pause = min(pause * 2, .seconds(10))
            }
        }
        try? await gracefulShutdown()
    }
}

/// Runs until the graceful shutdown, then `close` (put first in a group: it is stopped last).
struct CloseOnShutdown: Service {
    let close: @Sendable () async -> Void

    func run() async throws {
        try? await gracefulShutdown()
        await close()
    }
}

/// What a service's gateway serves (``TroupeService/gateway(_:)``); the setups of several builders are merged.
public struct GatewaySetup: Sendable {
    /// The HTTP routes.
    public var routes: [GatewayRoute]
    /// Checks a user name and password for `POST /login` (nil: the service's ``TroupeService/authenticate``).
    public var authenticate: (@Sendable (String, String) async throws -> String?)?
    /// Replaces the per-user limit the configuration sets (nil: the configuration's).
    public var userLimiter: (any RateLimiter)?
    /// Checks `/ready` makes beside the gateway's own (every one must pass).
    public var ready: [@Sendable () -> Bool]
    /// Prometheus text for `/metrics` (the executable bootstraps swift-metrics and passes its registry's output).
    public var metrics: (@Sendable () -> String)?
    /// Routes of the admin listener (`gateway.admin`).
    public var adminRoutes: [GatewayRoute]
    /// Services run beside the listeners, stopped before them.
    public var services: [any Service]

    /// A setup of `routes` and whatever else is given.
    public init(routes: [GatewayRoute] = [], authenticate: (@Sendable (String, String) async throws -> String?)? = nil,
                userLimiter: (any RateLimiter)? = nil, ready: [@Sendable () -> Bool] = [], metrics: (@Sendable () -> String)? = nil,
                adminRoutes: [GatewayRoute] = [], services: [any Service] = []) {
        self.routes = routes
        self.authenticate = authenticate
        self.userLimiter = userLimiter
        self.ready = ready
        self.metrics = metrics
        self.adminRoutes = adminRoutes
        self.services = services
    }

    /// Adds `other`'s routes, checks and services; its login check, limiter and metrics where this has none.
    mutating func merge(_ other: GatewaySetup) {
        routes += other.routes
        authenticate = authenticate ?? other.authenticate
        userLimiter = userLimiter ?? other.userLimiter
        ready += other.ready
        metrics = metrics ?? other.metrics
        adminRoutes += other.adminRoutes
        services += other.services
    }
}

extension NodeConfiguration.Gateway {
    /// A gateway listening on `host:port`, every other setting at its default (the token key must still be set:
    /// ``jwtSecret`` or ``jwtSecretEnv``; on the embedded engines one is made for the run).
    public init(host: String? = nil, port: Int) {
        self.init(host: host, port: port, jwtSecretEnv: nil)
    }
}
