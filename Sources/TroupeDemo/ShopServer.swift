import Foundation
import Hummingbird
public import Logging
import ServiceLifecycle
public import Troupe
public import TroupeActors
import TroupeBus
import TroupeCache
import TroupeCore
import TroupeDiscovery
public import TroupeGateway
public import TroupeShop
import TroupeStore
import TroupeMongo

/// The shop on production engines, one process per role: `troupe node` hosts the actors (state in
/// MongoDB, membership in etcd, order timeouts from the Redis bus); `troupe gateway` is a client of the
/// cluster that serves the HTTP API (catalog and users in MongoDB; sessions, idempotency keys, limits,
/// the Bloom filter and the bus in Redis; order ids from a Snowflake worker id leased in etcd).
public enum ShopServer {
    /// Reads and validates a configuration file of the shop: the framework's sections and the shop's own
    /// (``ShopSettings``, under `"shop"`).
    /// - Throws: ``ConfigurationError`` saying what to fix.
    public static func load(path: String, environment: [String: String], role: NodeConfiguration.Role = .node) throws -> (NodeConfiguration, ShopSettings?) {
        let (configuration, shop) = try NodeConfiguration.load(path: path, environment: environment, role: role,
                                                               section: ShopSettings.section, as: ShopSettings.self)
        try shop?.validate()
        return (configuration, shop)
    }

    /// The shop's member node as a ``TroupeService``: the shop's actors and the bank's `Account`; with `redis` and
    /// `shop` sections, the order-timeout and sales consumers and, on a scannable state store, the order reconciler.
    public static func service(shop: ShopSettings?) -> TroupeService {
        var service = TroupeService(name: "shop")
        service.host(Account.self)
        service.configure { system in
            Shop.register(system)
            system.registerRemoteError(BankError.self)
        }
        service.services { context in
            // The orders' events go out under the shop's producer group.
            Shop.relayEvents(to: context.bus, system: context.system)
            guard let shop, context.configuration?.redis != nil else { return [] }
            var services: [any Service] = [Shop.timeoutConsumer(bus: context.bus, system: context.system),
                                           Shop.salesConsumer(bus: context.bus, system: context.system)]
            if let store = context.system.stateStore as? any ScannableActorStateStore {
                let paymentTimeout = shop.paymentTimeoutSeconds ?? 900
                services.append(OrderReconciler(system: context.system, store: store, settings: .init(
                    interval: .seconds(shop.reconcileIntervalSeconds ?? 300), age: .seconds(shop.reconcileAfterSeconds ?? max(1_800, 2 * paymentTimeout))),
                    logger: context.logger))
            }
            return services
        }
        return service
    }

    /// A member node (`troupe node`): ``service(shop:)`` started from `configuration`.
    public static func node(_ configuration: NodeConfiguration, shop: ShopSettings?, environment: [String: String], logger: Logger) async throws -> TroupeService.Running {
        try await service(shop: shop).start(configuration, environment: environment, logger: logger)
    }

    /// A gateway process: its node (run it) and the shop, built once the node's clients are running.
    public final class GatewayProcess: Sendable {
        /// The process's node: run it.
        public let node: TroupeNode
        fileprivate let built: Locked<Shop?>
        fileprivate let signal: ChangeSignal

        fileprivate init(node: TroupeNode, built: Locked<Shop?>, signal: ChangeSignal) {
            self.node = node
            self.built = built
            self.signal = signal
        }

        /// The shop, once the clients it needs are up.
        public func shop(timeout: Duration = .seconds(60)) async throws -> Shop {
            let deadline = ContinuousClock.now + timeout
            while true {
                let generation = signal.version
                if let shop = built.withLock({ $0 }) { return shop }
                guard ContinuousClock.now < deadline else { throw ActorSystemError(.timeout, "the shop was not ready within \(timeout)") }
                _ = await signal.wait(after: generation, timeout: deadline - ContinuousClock.now)
            }
        }
    }

    /// A gateway: a client-only node of the cluster plus the Hummingbird application. The shop and the
    /// HTTP listener are built once the MongoDB, Redis and etcd clients run (they are services of the node).
    /// - Parameter listen: false for tools that use the shop without serving HTTP (`troupe shop seed`).
    /// - Parameter metrics: Prometheus text for `/metrics` (the executable bootstraps swift-metrics and passes its registry's output).
    /// - Parameter recentErrors: the process's recent warnings and errors, for the dashboard.
    public static func gateway(_ configuration: NodeConfiguration, shop shopSettings: ShopSettings?, environment: [String: String], logger: Logger,
                               listen: Bool = true, metrics: @escaping @Sendable () -> String = { "" },
                               recentErrors: RecentLogRecords? = nil) async throws -> GatewayProcess {
        guard let section = configuration.gateway, let redisSection = configuration.redis, let mongoSection = configuration.mongo else {
            throw ConfigurationError("the gateway needs gateway, redis and mongo sections")
        }
        // Everything the gateway asks Redis has a fallback, so its commands fail fast while Redis is down
        // instead of holding requests up to their timeout.
        var clientConfiguration = configuration
        if clientConfiguration.redis?.failFastWhileDown == nil { clientConfiguration.redis?.failFastWhileDown = true }
        let node = try await TroupeNode.startClient(clientConfiguration, name: configuration.node, environment: environment, logger: logger)
        guard let redis = node.redis, let mongo = node.mongo else { throw ConfigurationError("redis and mongo are required") }
        // The orders' declines and conflicts come back from the member nodes as themselves.
        Shop.registerErrors(node.system)
        let documents = DocumentStore(engine: MongoDocumentStore(database: mongo.database(mongoSection.database)))
        let prefix = "\(configuration.cluster):"
        let kv = RedisKeyValueStore(redis: redis, prefix: prefix)
        let bus = try Bus(engine: RedisBusEngine(redis: redis, blockingReads: try redisSection.configuration(environment: environment, logger: logger)))
        var services: [any Service] = [bus]
        let ids: @Sendable () throws -> Int64
        let idsReady: @Sendable () -> Bool
        if let etcd = node.etcd {
            let lease = EtcdWorkerIDLease(etcd: etcd, cluster: configuration.cluster, node: configuration.node, logger: logger)
            let snowflake = LeasedSnowflake(lease: lease)
            services.append(lease)
            ids = { try snowflake.next() }
            idsReady = { (try? lease.workerID()) != nil }
        } else {
            let generator = try SnowflakeGenerator(workerID: section.workerID ?? 0)
            ids = { try generator.next() }
            idsReady = { true }
        }
        let assembly = try GatewayAssembly(section: section, issuer: "troupe", audience: configuration.cluster, keyPrefix: prefix,
                                           redis: redis, etcd: node.etcd, environment: environment, logger: logger)
        services += assembly.services
        let system = node.system
        let liveConfiguration = node.live
        let settings = assembly.configuration
        let built = Locked<Shop?>(nil)
        let signal = ChangeSignal()
        let late = LateServices(name: "shop gateway", logger: logger) {
            let shop = try await Shop(
                store: documents, cacheStore: kv, ids: ids, bus: bus,
                paymentTimeout: .seconds(shopSettings?.paymentTimeoutSeconds ?? 900),
                passwordRounds: shopSettings?.passwordRounds ?? 210_000,
                bloom: RedisBloomFilter(redis: redis, key: prefix + "skus", parameters: Shop.bloomParameters))
            built.withLock { $0 = shop }
            signal.notify()
            guard listen else { return [] }
            let history = section.dashboard == true || section.admin != nil ? MetricsHistory(series: Shop.dashboardSeries, scrape: metrics) : nil
            let dashboard = shop.dashboardRoutes(systems: { [system] }, history: history, recentErrors: recentErrors)
            let sessions = SessionStore<GatewayServices.Session>(store: kv, ttl: settings.sessionTTL, staleIfError: settings.sessionStaleIfError)
            let gateway = try await Gateway(
                configuration: settings,
                services: GatewayServices(
                    sessions: sessions, idempotency: IdempotencyStore(store: kv), userLimiter: assembly.userLimiter, globalLimiter: assembly.globalLimiter,
                    loginLimiter: assembly.loginLimiter, loginAddressLimiter: assembly.loginAddressLimiter,
                    authenticate: { user, password in try await shop.authenticate(user, password: password) },
                    metrics: metrics,
                    ready: { idsReady() && system.members.contains { $0.hosts(OrderActor.virtualTypeName) } }),
                routes: shop.routes(system: system, sessions: sessions) + (section.dashboard == true ? dashboard : []),
                upstreams: assembly.upstreams)
            liveConfiguration?.add(assembly.liveSettings(for: gateway))
            var services = try assembly.listeners(gateway, adminRoutes: dashboard)
            // After the listeners: stopped first, it ends the dashboard's streams before they drain.
            if let history { services.append(history) }
            return services
        }
        return GatewayProcess(node: node.adding(services + [late]), built: built, signal: signal)
    }

    /// What `troupe shop seed` adds and `troupe shop check` expects.
    public struct Catalog: Sendable {
        /// Products (20).
        public var products = 20
        /// Units of each (1,000).
        public var stock = 1_000
        /// Users (40).
        public var users = 40
        /// Each user's balance (1,000).
        public var balance = 1_000
        /// The defaults.
        public init() {}

        /// The SKUs (`sku-0` …).
        public var skus: [String] { (0..<products).map { "sku-\($0)" } }
        /// The users' names (`user-0` …).
        public var userNames: [String] { (0..<users).map { "user-\($0)" } }
        /// The demo password of `user`.
        public static func password(of user: String) -> String { "pw-\(user)" }
    }

    /// Adds products, users (password `pw-<user>`), stock and money through the cluster. Stock and money
    /// are added to what is there: seed a fresh database once.
    public static func seed(_ catalog: Catalog, shop: Shop, system: ClusterActorSystem) async throws {
        for (index, sku) in catalog.skus.enumerated() {
            try await shop.addProduct(Product(sku: sku, name: "Product \(index)", price: 5 + index % 20))
            _ = try await system.reference(InventoryActor.self, key: sku).restock(catalog.stock)
        }
        for user in catalog.userNames {
            try await shop.addUser(user, password: Catalog.password(of: user))
            _ = try await system.reference(AccountActor.self, key: user).deposit(catalog.balance)
        }
    }

    /// Waits until some member hosts the shop's actors (a client learns the members after it starts).
    public static func waitForShopMembers(_ system: ClusterActorSystem, timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !system.members.contains(where: { $0.hosts(OrderActor.virtualTypeName) }) {
            guard ContinuousClock.now < deadline else {
                throw ActorSystemError(.timeout, "no member hosting the shop's actors appeared within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Services that can only be built once other services of the group run (a shop needs its MongoDB client
/// running before it can read the catalog): `build` is retried with backoff for up to `deadline`, then the
/// services it returned run as a nested group until shutdown.
struct LateServices: Service {
    let name: String
    let logger: Logger
    var deadline: Duration = .seconds(60)
    let build: @Sendable () async throws -> [any Service]

    init(name: String, logger: Logger, build: @escaping @Sendable () async throws -> [any Service]) {
        self.name = name
        self.logger = logger
        self.build = build
    }

    func run() async throws {
        let services: [any Service]
        do {
            // A stop asked while the servers are still awaited ends the wait at once (SIGTERM at any time).
            services = try await cancelWhenGracefulShutdown { try await self.buildWithRetries() }
        } catch where Task.isShuttingDownGracefully {
            logger.notice("\(name) stopped before it was ready")
            return
        }
        logger.notice("\(name) ready")
        guard !services.isEmpty else {
            try await gracefulShutdown()
            return
        }
        try await ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: logger)).run()
    }

    /// Builds the services, retrying with backoff until `deadline`; each failed attempt is logged once, at the step
    /// it waits for (100 ms doubling to 5 s: a dozen lines a minute at most).
    private func buildWithRetries() async throws -> [any Service] {
        let stop = ContinuousClock.now + deadline
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        while true {
            do {
                return try await build()
            } catch {
                try Task.checkCancellation()
                guard ContinuousClock.now < stop else {
                    throw ActorSystemError(.timeout, "\(name) could not start within \(deadline): \(error)", underlying: error)
                }
                let pause = backoff.next()
                logger.warning("\(name) is waiting for its servers", metadata: [
                    "error": "\(error)", "retry.in_ms": "\(Int(pause.components.seconds * 1000 + pause.components.attoseconds / 1_000_000_000_000_000))",
                ])
                try await Task.sleep(for: pause)
            }
        }
    }
}
