import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
public import Logging
import ServiceLifecycle
public import TroupeActors
import Troupe
import TroupeCache
import TroupeBus
import TroupeCore
public import TroupeGateway
public import TroupeShop
import TroupeStore
import TroupeActorsStore

/// `troupe demo`: N nodes and the gateway in one process on the embedded engines; users log in and
/// place orders **through the gateway's HTTP API**; every order runs the place-order saga across the
/// inventory, account and order actors; at the end the invariants are checked.
public struct ShopDemo: Sendable {
    /// What the shop demo runs: nodes, catalog, users, clients, duration, the gateway's port.
    public struct Options: Sendable {
        /// Nodes in the process (3).
        public var nodes = 3
        /// How long orders are placed (5 s).
        public var duration: Duration = .seconds(5)
        /// Stop after this many orders (instead of after `duration`).
        public var orders: Int?
        /// Users (40).
        public var users = 40
        /// Products (20).
        public var products = 20
        /// Enough for a long run; a few hot SKUs still sell out (see `hotProducts`).
        public var stockPerProduct = 100_000
        /// SKUs with little stock, which sell out (2).
        public var hotProducts = 2
        /// The stock of each hot SKU (50).
        public var hotStock = 50
        /// Every fifth user is poor: their orders fail for insufficient funds (payment failures).
        public var initialBalance = 1_000_000
        /// The balance of every fifth user (40, too little for most orders).
        public var poorBalance = 40
        /// Share of orders the user cancels right after placing them.
        public var cancelRate = 0.1
        /// Clients placing orders at once (32).
        public var concurrency = 32
        /// Requests a second each user may make (token bucket, burst of twice that), as `troupe gateway`'s
        /// `userRequestsPerSecond`; past it, 429 with `Retry-After`.
        public var userRequestsPerSecond = 500
        /// Logins a minute from one client address (the gateway's default, 100, when nil): every client of the demo
        /// and of `bench e2e` logs in from the loopback address.
        public var loginAttemptsPerAddressPerMinute: Int?
        /// The gateway's address.
        public var host = "127.0.0.1"
        /// The gateway's port (8080).
        public var port = 8080
        /// Where the demo logs (nowhere by default).
        public var logger = Logger(label: "troupe.demo", factory: { _ in SwiftLogNoOpLogHandler() })
        /// Called with a line of progress now and then.
        public var progress: @Sendable (String) -> Void = { _ in }
        /// Prometheus text for the gateway's `/metrics` (and the dashboard's charts).
        public var metrics: @Sendable () -> String = { "" }
        /// The process's recent warnings and errors, for the dashboard (the executable's logging keeps them).
        public var recentErrors: RecentLogRecords?

        /// The defaults (see each option).
        public init() {}
    }

    /// What the shop demo measured and whether every invariant held.
    public struct Summary: Sendable, Codable {
        /// Nodes that ran.
        public var nodes = 0
        /// Orders placed.
        public var orders = 0
        /// Orders completed.
        public var completed = 0
        /// Orders cancelled (declined, timed out or cancelled by the user).
        public var cancelled = 0
        /// Requests answered with an unexpected HTTP error.
        public var httpErrors = 0
        /// Orders not final at the end.
        public var unfinished = 0
        /// Orders the users cancelled.
        public var userCancels = 0
        /// How long orders were placed.
        public var seconds = 0.0
        /// Median order latency (placed to final).
        public var p50Milliseconds = 0.0
        /// 99th percentile order latency.
        public var p99Milliseconds = 0.0
        /// Every unit of stock is available, reserved or sold, as at the start.
        public var stockConserved = false
        /// Every cent is in a balance, a hold or spent, as deposited.
        public var moneyConserved = false
        /// No stock or balance went below zero.
        public var noNegative = false
        /// Every order reached a final state.
        public var everyOrderFinal = false
        /// Every completed order was charged once, and nothing else was.
        public var chargedOnce = false
        /// Sales counted from the order events (outbox → bus → inbox) equal the units sold, per SKU.
        public var salesMatch = false
        /// Catalog reads served from the cache (L1 or store) / all catalog reads.
        public var cacheHitRate = 0.0
        /// Messages of the order-timeout topic not yet consumed, at the end.
        public var busLag = 0
        /// What failed, for people.
        public var problems: [String] = []
        /// Live activations per node at the end.
        public var activationsPerNode: [String: Int] = [:]

        /// Whether every invariant held, orders completed and no request failed.
        public var ok: Bool { stockConserved && moneyConserved && noNegative && everyOrderFinal && chargedOnce && salesMatch && completed > 0 && httpErrors == 0 }
        /// Orders a second.
        public var throughput: Double { seconds > 0 ? Double(orders) / seconds : 0 }
    }

    /// What the demo runs.
    public let options: Options

    /// A demo of `options`.
    public init(options: Options) {
        self.options = options
    }

    public func run() async throws -> Summary {
        try await serve { systems, shop in try await self.workload(systems: systems, shop: shop) }
    }

    /// Starts the nodes and the gateway on the embedded engines — a ``TroupeService`` of `nodes` nodes in this
    /// process — seeds the catalog (products, stock, users with password `pw-<user>`, money), runs `body`, then
    /// stops everything gracefully. A service that fails (the gateway cannot bind its port, say) ends the demo
    /// at once with that error.
    public func serve<T: Sendable>(_ body: @escaping @Sendable ([ClusterActorSystem], Shop) async throws -> T) async throws -> T {
        if let problem = Self.cannotListen(host: options.host, port: options.port) {
            throw ActorSystemError(.invalidConfiguration, "cannot listen on \(options.host):\(options.port): \(problem); choose another port with --port")
        }
        let built = Eventual<Shop>()
        let options = self.options
        var service = TroupeService(name: "troupe-shop")
        service.configure { Shop.register($0) }
        service.services { context in
            for system in context.systems { Shop.relayEvents(to: context.bus, system: system) }
            return [Shop.salesConsumer(bus: context.bus, system: context.system)]
        }
        service.gateway { context, sessions in
            // The embedded bus carries the orders' payment timeouts (delayed messages). Few PBKDF2 rounds: the demo's
            // users log in once each and the demo must start fast.
            let shop = try await Shop(store: context.documents, cacheStore: context.keyValues, workerID: 1, bus: context.bus,
                                      paymentTimeout: .seconds(60), passwordRounds: 1_000)
            built.set(shop)
            let systems = context.systems
            let history = MetricsHistory(series: Shop.dashboardSeries, scrape: options.metrics)
            return GatewaySetup(
                routes: shop.routes(system: context.system, sessions: sessions)
                    + shop.dashboardRoutes(systems: { systems }, history: history, recentErrors: options.recentErrors),
                authenticate: { user, password in try await shop.authenticate(user, password: password) },
                userLimiter: try LocalRateLimiter(.tokenBucket(ratePerSecond: Double(options.userRequestsPerSecond), burst: 2 * options.userRequestsPerSecond)),
                metrics: options.metrics,
                // After the listener: stopped first, the dashboard's streams end before the gateway drains.
                services: (shop.timeoutConsumer(system: context.system).map { [$0] } ?? []) + [history])
        }
        var embedded = TroupeService.Options(host: options.host, port: options.port, nodes: options.nodes)
        var gateway = NodeConfiguration.Gateway(host: options.host, port: options.port)
        gateway.maxInFlight = 4096
        // The demo serves everything on one loopback listener, operations included.
        gateway.publicMetrics = true
        gateway.loginAttemptsPerAddressPerMinute = options.loginAttemptsPerAddressPerMinute
        embedded.gateway = gateway
        let running = try await service.start(embedded, logger: options.logger)
        let nodes = running.context.systems
        return try await running.run {
            try await self.waitForMembers(nodes)
            try await self.waitForPort()
            guard let shop = await built.value(within: .seconds(30)) else { throw ActorSystemError(.timeout, "the shop was not built within 30 s") }
            try await self.seed(systems: nodes, shop: shop)
            return try await body(nodes, shop)
        }
    }

    /// The catalog's SKUs (`sku-0` …).
    public var skus: [String] { (0..<options.products).map { "sku-\($0)" } }
    /// The users' names (`user-0` …).
    public var users: [String] { (0..<options.users).map { "user-\($0)" } }

    private func seed(systems: [ClusterActorSystem], shop: Shop) async throws {
        for (index, sku) in skus.enumerated() {
            try await shop.addProduct(Product(sku: sku, name: "Product \(index)", price: 5 + index % 20))
            _ = try await systems[index % systems.count].reference(InventoryActor.self, key: sku).restock(stock(index))
        }
        for (index, user) in users.enumerated() {
            try await shop.addUser(user, password: "pw-\(user)")
            _ = try await systems[index % systems.count].reference(AccountActor.self, key: user).deposit(balance(index))
        }
    }

    private func workload(systems: [ClusterActorSystem], shop: Shop) async throws -> Summary {
        let skus = self.skus
        let users = self.users
        let base = "http://\(options.host):\(options.port)"
        let client = ShopHTTPClient(base: base)
        let started = ContinuousClock.now
        let deadline = started + options.duration
        let budget = Locked(options.orders ?? Int.max)
        let results = Locked<[(String, Double)]>([])  // final status, latency ms
        let placed = Locked<[String]>([])
        let cancels = Locked(0)
        let errors = Locked(0)
        let progressTask = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let done = results.withLock { $0.count }
                options.progress("orders \(done), errors \(errors.withLock { $0 }), \(Int(Double(done) / (ContinuousClock.now - started).seconds)) orders/s")
            }
        }
        defer { progressTask.cancel() }
        try await withThrowingTaskGroup(of: Void.self) { workers in
            for worker in 0..<options.concurrency {
                let user = users[worker % users.count]
                workers.addTask {
                    let token = try await client.login(user: user, password: "pw-\(user)")
                    var rng = SystemRandomNumberGenerator()
                    while ContinuousClock.now < deadline || options.orders != nil {
                        guard budget.withLock({ b -> Bool in guard b > 0 else { return false }; b -= 1; return true }) else { break }
                        let sku = skus.randomElement(using: &rng)!
                        let begin = ContinuousClock.now
                        do {
                            let id = try await client.placeOrder(token: token, sku: sku, quantity: Int.random(in: 1...3, using: &rng), attempts: 3)
                            placed.withLock { $0.append(id) }
                            if Double.random(in: 0..<1, using: &rng) < options.cancelRate {
                                // 200: cancelled; 409: too late (already completed). Both are fine.
                                let status = try await client.cancelOrder(token: token, id: id)
                                if status == 200 { cancels.withLock { $0 += 1 } }
                            }
                            let status = try await client.waitForOrder(token: token, id: id, timeout: .seconds(20))
                            results.withLock { $0.append((status, Double((ContinuousClock.now - begin).nanosecondsValue) / 1e6)) }
                        } catch {
                            errors.withLock { $0 += 1 }
                            options.logger.warning("order failed", metadata: ["demo.error": "\(error)"])
                        }
                    }
                }
            }
            try await workers.waitForAll()
        }
        var summary = Summary()
        summary.nodes = systems.count
        summary.seconds = (ContinuousClock.now - started).seconds
        let finished = results.withLock { $0 }
        summary.orders = finished.count
        summary.completed = finished.filter { $0.0 == "completed" }.count
        summary.cancelled = finished.filter { $0.0 == "cancelled" }.count
        summary.unfinished = finished.filter { $0.0 != "completed" && $0.0 != "cancelled" }.count
        summary.httpErrors = errors.withLock { $0 }
        let latencies = finished.map(\.1).sorted()
        if !latencies.isEmpty {
            summary.p50Milliseconds = latencies[latencies.count / 2]
            summary.p99Milliseconds = latencies[min(latencies.count - 1, Int(Double(latencies.count) * 0.99))]
        }
        summary.userCancels = cancels.withLock { $0 }
        // Invariants, read from the actors themselves.
        let audit = try await ShopAudit.run(system: systems[0], expecting: ShopAudit.Expectation(
            stock: Dictionary(uniqueKeysWithValues: skus.enumerated().map { ($1, stock($0)) }),
            deposits: Dictionary(uniqueKeysWithValues: users.enumerated().map { ($1, balance($0)) }),
            orders: placed.withLock { $0 }), settle: .seconds(30))
        summary.stockConserved = audit.stockConserved
        summary.moneyConserved = audit.moneyConserved
        summary.noNegative = audit.noNegative
        summary.everyOrderFinal = summary.unfinished == 0 && audit.everyOrderFinal
        summary.chargedOnce = audit.chargedOnce
        summary.salesMatch = audit.salesMatch
        summary.problems = audit.problems
        summary.cacheHitRate = shop.catalog.statistics.hitRate
        if let bus = shop.bus {
            summary.busLag = try await bus.lag(group: Shop.timeoutGroup, topic: Shop.timeoutTopic).values.reduce(0, +)
        }
        for system in systems {
            summary.activationsPerNode[system.node.name] = system.activeActorIDs.count
        }
        return summary
    }

    func stock(_ index: Int) -> Int { index < options.hotProducts ? options.hotStock : options.stockPerProduct }
    func balance(_ index: Int) -> Int { index % 5 == 4 ? options.poorBalance : options.initialBalance }

    private func waitForMembers(_ systems: [ClusterActorSystem]) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while systems.contains(where: { $0.members.count != systems.count }) {
            guard ContinuousClock.now < deadline else { throw ActorSystemError(.timeout, "the demo nodes did not see each other within 10 s") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Why `host:port` (an IPv4 address) cannot be listened on now, e.g. "Address already in use"; nil when it
    /// can, or when `host` is a name (then the gateway's own bind reports it).
    static func cannotListen(host: String, port: Int) -> String? {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(clamping: port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return nil }
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var on: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return bound == 0 ? nil : String(cString: strerror(errno))
    }

    private func waitForPort() async throws {
        let client = ShopHTTPClient(base: "http://\(options.host):\(options.port)")
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            if (try? await client.get("/health")) == 200 { return }
            guard ContinuousClock.now < deadline else {
                throw ActorSystemError(.timeout, "the gateway did not answer on \(options.host):\(options.port) within 10 s (is the port taken? use --port)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

extension Duration {
    var nanosecondsValue: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}

/// A minimal JSON-over-HTTP client of the shop's API (URLSession), for the demo and the tests.
public struct ShopHTTPClient: Sendable {
    /// The gateway's base URL (`http://127.0.0.1:8080`).
    public let base: String
    let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 10
        configuration.httpMaximumConnectionsPerHost = 64
        return URLSession(configuration: configuration)
    }()

    /// A client of the gateway at `base`.
    public init(base: String) {
        self.base = base
    }

    /// A request of the demo's HTTP client that failed.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends a JSON request; returns the status and the decoded JSON object (empty when there is none).
    public func request(_ method: String, _ path: String, token: String? = nil, body: [String: Any]? = nil,
                        headers: [String: String] = [:]) async throws -> (Int, [String: Any]) {
        guard let url = URL(string: base + path) else { throw Failure(description: "invalid URL \(base + path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
        }
        let (data, response) = try await session.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return (status, json)
    }

    /// GET `path`; returns the status.
    public func get(_ path: String) async throws -> Int { try await request("GET", path).0 }

    /// Logs `user` in; returns the bearer token.
    public func login(user: String, password: String) async throws -> String {
        let (status, json) = try await request("POST", "/auth/login", body: ["username": user, "password": password])
        guard status == 200, let token = json["token"] as? String else { throw Failure(description: "login of \(user) failed with \(status)") }
        return token
    }

    /// POST /orders with an `Idempotency-Key`, retried on 5xx and transport errors (up to `attempts`
    /// times): a retry of a request that did take effect replays its response instead of ordering twice.
    public func placeOrder(token: String, sku: String, quantity: Int, attempts: Int = 1) async throws -> String {
        let key = UUID().uuidString
        var failure = Failure(description: "not attempted")
        for attempt in 1...max(1, attempts) {
            if attempt > 1 { try await Task.sleep(for: .milliseconds(200 * attempt)) }
            let status: Int, json: [String: Any]
            do {
                (status, json) = try await request("POST", "/orders", token: token, body: ["sku": sku, "quantity": quantity],
                                                   headers: ["Idempotency-Key": key])
            } catch {
                failure = Failure(description: "POST /orders failed: \(error)")
                continue
            }
            if status == 202, let id = json["orderId"] as? String { return id }
            failure = Failure(description: "POST /orders answered \(status): \(json)")
            guard status >= 500 else { break }
        }
        throw failure
    }

    /// POST /orders/:id/cancel; returns the status (200 cancelled, 409 already completed).
    public func cancelOrder(token: String, id: String) async throws -> Int {
        let (status, json) = try await request("POST", "/orders/\(id)/cancel", token: token)
        guard status == 200 || status == 409 else { throw Failure(description: "POST /orders/\(id)/cancel answered \(status): \(json)") }
        return status
    }

    /// Polls the order until it is final or `timeout` passes; returns its last status.
    public func waitForOrder(token: String, id: String, timeout: Duration) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(10)
        while true {
            let (status, json) = try await request("GET", "/orders/\(id)", token: token)
            guard status == 200 else { throw Failure(description: "GET /orders/\(id) answered \(status): \(json)") }
            let order = json["order"] as? [String: Any]
            if let state = order?["status"] as? String, state == "completed" || state == "cancelled" { return state }
            guard ContinuousClock.now < deadline else { return (order?["status"] as? String) ?? "unknown" }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
    }
}
