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
        /// The running service (a client of the cluster).
        public let service: TroupeService.Running
        fileprivate let built: Eventual<Shop>

        fileprivate init(service: TroupeService.Running, built: Eventual<Shop>) {
            self.service = service
            self.built = built
        }

        /// The process's node: run it.
        public var node: TroupeNode { service.node }

        /// The shop, once the clients it needs are up.
        public func shop(timeout: Duration = .seconds(60)) async throws -> Shop {
            guard let shop = await built.value(within: timeout) else { throw ActorSystemError(.timeout, "the shop was not ready within \(timeout)") }
            return shop
        }
    }

    /// A gateway: a ``TroupeService`` that is a client of the cluster (it hosts no actors) and serves the shop's
    /// HTTP API. The shop and the listener are built once the MongoDB, Redis and etcd clients run (they are services
    /// of the node); order ids come from a Snowflake worker id leased in etcd (or the section's `workerID`).
    /// - Parameter listen: false for tools that use the shop without serving HTTP (`troupe shop seed`).
    /// - Parameter metrics: Prometheus text for `/metrics` (the executable bootstraps swift-metrics and passes its registry's output).
    /// - Parameter recentErrors: the process's recent warnings and errors, for the dashboard.
    public static func gateway(_ configuration: NodeConfiguration, shop shopSettings: ShopSettings?, environment: [String: String], logger: Logger,
                               listen: Bool = true, metrics: @escaping @Sendable () -> String = { "" },
                               recentErrors: RecentLogRecords? = nil) async throws -> GatewayProcess {
        guard let section = configuration.gateway, configuration.redis != nil, configuration.mongo != nil else {
            throw ConfigurationError("the gateway needs gateway, redis and mongo sections")
        }
        // Everything the gateway asks Redis has a fallback, so its commands fail fast while Redis is down
        // instead of holding requests up to their timeout.
        var clientConfiguration = configuration
        if clientConfiguration.redis?.failFastWhileDown == nil { clientConfiguration.redis?.failFastWhileDown = true }
        let prefix = "\(configuration.cluster):"
        let built = Eventual<Shop>()
        let ids = Locked<(next: @Sendable () throws -> Int64, ready: @Sendable () -> Bool)?>(nil)
        var service = TroupeService(name: "shop")
        service.role = .client
        // The orders' declines and conflicts come back from the member nodes as themselves.
        service.configure { Shop.registerErrors($0) }
        service.services { context in
            if let etcd = context.etcd {
                let lease = EtcdWorkerIDLease(etcd: etcd, cluster: configuration.cluster, node: configuration.node, logger: context.logger)
                let snowflake = LeasedSnowflake(lease: lease)
                ids.withLock { $0 = ({ try snowflake.next() }, { (try? lease.workerID()) != nil }) }
                return [lease]
            }
            let generator = try SnowflakeGenerator(workerID: section.workerID ?? 0)
            ids.withLock { $0 = ({ try generator.next() }, { true }) }
            return []
        }
        @Sendable func makeShop(_ context: TroupeService.Context) async throws -> Shop {
            guard let redis = context.redis, let next = ids.withLock({ $0?.next }) else { throw ConfigurationError("the gateway needs redis") }
            let shop = try await Shop(
                store: context.documents, cacheStore: context.keyValues, ids: next, bus: context.bus,
                paymentTimeout: .seconds(shopSettings?.paymentTimeoutSeconds ?? 900),
                passwordRounds: shopSettings?.passwordRounds ?? 210_000,
                bloom: RedisBloomFilter(redis: redis, key: prefix + "skus", parameters: Shop.bloomParameters))
            built.set(shop)
            return shop
        }
        if listen {
            service.gateway { context, sessions in
                let shop = try await makeShop(context)
                let system = context.system
                let history = section.dashboard == true || section.admin != nil ? MetricsHistory(series: Shop.dashboardSeries, scrape: metrics) : nil
                let dashboard = shop.dashboardRoutes(systems: { [system] }, history: history, recentErrors: recentErrors)
                let idsReady: @Sendable () -> Bool = ids.withLock { (ids) -> (@Sendable () -> Bool)? in ids?.ready } ?? { false }
                return GatewaySetup(
                    routes: shop.routes(system: system, sessions: sessions) + (section.dashboard == true ? dashboard : []),
                    authenticate: { user, password in try await shop.authenticate(user, password: password) },
                    ready: [{ idsReady() && system.members.contains { $0.hosts(OrderActor.virtualTypeName) } }],
                    metrics: metrics, adminRoutes: dashboard, services: history.map { [$0] } ?? [])
            }
        } else {
            service.services { context in
                [LateServices(name: "shop gateway", logger: context.logger) {
                    _ = try await makeShop(context)
                    return []
                }]
            }
        }
        return GatewayProcess(service: try await service.start(clientConfiguration, environment: environment, logger: logger), built: built)
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
