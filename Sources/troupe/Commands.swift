public import ArgumentParser
import Foundation
import Logging
import Metrics
import Troupe
import TroupeActors
import TroupeBenchmarks
import TroupeChaos
import TroupeDemo
import TroupeGateway
import Synchronization
import UnixSignals
import TroupeShop


@main
struct TroupeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "troupe",
        abstract: "Troupe: virtual actors, discovery, data, cache and a bus for message-driven Swift services.",
        version: troupeVersion,
        subcommands: [Demo.self, Node.self, Gateway.self, ShopCommand.self, Bank.self, Bench.self, Chaos.self, Simulate.self, Certs.self]
    )
}

/// The executable's metrics: swift-metrics is bootstrapped onto a Prometheus registry once (HELP for every
/// family, buckets from 100 µs, the process' own figures), and the gateway's `/metrics` serves its text.
func bootstrapMetrics() -> @Sendable () -> String {
    let factory = TroupeMetricsFactory()
    if let otlp = Observability.otlp.withLock({ $0.metrics }) {
        MetricsSystem.bootstrap(MultiplexMetricsHandler(factories: [factory, otlp]))
    } else {
        MetricsSystem.bootstrap(factory)
    }
    return { factory.scrape() }
}

/// The process's last warnings and errors, shown by its dashboard (kept by the logging bootstrap).
let recentLogRecords = RecentLogRecords()

/// Bootstraps swift-log once, for the executable only: the chosen handler, and the recent warnings and errors
/// kept for the dashboard.
func bootstrapLogging(level: Logger.Level) -> Logger {
    let primary = Observability.logHandler(level: level)
    let level = Observability.environment["TROUPE_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? level
    let otlp = Observability.otlp.withLock { $0.logs }
    LoggingSystem.bootstrap { label in
        var handlers = [primary(label), recentLogRecords.handler(label: label)]
        if let otlp {
            var exported = otlp(label)
            exported.logLevel = level
            handlers.append(exported)
        }
        return MultiplexLogHandler(handlers)
    }
    return Logger(label: "troupe")
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the reference workload on embedded engines: N nodes in one process over loopback TCP."
    )

    @Option(help: "Number of nodes (bank workload: a further node joins halfway through unless --no-join).")
    var nodes = 3
    @Option(help: "Seconds to run the workload. Without --duration and --orders, the shop keeps serving until Ctrl-C.")
    var duration: Double?
    @Option(help: "Stop after this many orders (shop) or transfers (bank) even if time remains.")
    var orders: Int?
    @Option(help: "Bank workload only: number of accounts (virtual actors).")
    var accounts = 1_000
    @Option(help: "Concurrent clients (default: 16 HTTP clients for the shop, 64 for the bank).")
    var concurrency: Int?
    @Flag(help: "Bank workload only: do not add a node halfway through.")
    var noJoin = false
    @Flag(help: "Print the summary as one JSON object on the last line.")
    var json = false
    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel: Logger.Level = .warning
    @Option(help: "shop: users order through the HTTP gateway (orders, stock, accounts, sagas); bank: transfers between accounts.")
    var workload = "shop"
    @Option(help: "Gateway port (shop workload).")
    var port = 8080

    func validate() throws {
        guard workload == "shop" || workload == "bank" else { throw ValidationError("--workload must be shop or bank") }
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1…65535") }
        guard (1...16).contains(nodes) else { throw ValidationError("--nodes must be 1…16") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        guard accounts >= 2 else { throw ValidationError("--accounts must be at least 2") }
        if let concurrency, !(1...256).contains(concurrency) { throw ValidationError("--concurrency must be 1…256") }
        if let orders, orders < 1 { throw ValidationError("--orders must be at least 1") }
    }

    func run() async throws {
        if workload == "shop" {
            try await Observability.withTelemetry(service: "troupe-demo", instance: nil) { try await runShop() }
            return
        }
        var options = BankDemo.Options()
        options.nodes = nodes
        options.duration = .milliseconds(Int((duration ?? 5) * 1000))
        options.transfers = orders
        options.accounts = accounts
        options.concurrency = concurrency ?? 64
        options.joinMidway = !noJoin
        options.logger = bootstrapLogging(level: logLevel)
        print("troupe demo: \(nodes) nodes\(noJoin ? "" : " (+1 joining halfway)"), \(accounts) accounts, \(options.concurrency) clients, \(duration ?? 5) s")
        let summary = try await BankDemo(options: options).run()
        let perNode = summary.activationsPerNode.sorted { $0.key < $1.key }
        print("""
            transfers      \(summary.transfers) done, \(summary.rejected) rejected (insufficient funds), \(summary.failed) failed
            calls          \(summary.calls)
            throughput     \(String(format: "%.0f", summary.throughput)) transfers/s
            latency        p50 \(String(format: "%.3f", summary.p50Milliseconds)) ms, p99 \(String(format: "%.3f", summary.p99Milliseconds)) ms
            activations    \(perNode.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            fenced writes  \(summary.fenced)
            invariants     money conserved: \(summary.moneyConserved) (\(summary.actualTotal) of \(summary.expectedTotal)), \
            no negative balance: \(summary.noNegativeBalance), single activation: \(summary.singleActivation)
            result         \(summary.ok ? "OK" : "FAILED")
            """)
        if json {
            var fields: [String] = [
                "\"ok\":\(summary.ok)",
                "\"throughput_per_s\":\(String(format: "%.1f", summary.throughput))",
                "\"p50_ms\":\(String(format: "%.3f", summary.p50Milliseconds))",
                "\"p99_ms\":\(String(format: "%.3f", summary.p99Milliseconds))",
                "\"inv_money_conserved\":\(summary.moneyConserved)",
                "\"inv_no_negative_balance\":\(summary.noNegativeBalance)",
                "\"inv_single_activation\":\(summary.singleActivation)",
                "\"nodes\":\(summary.nodes)",
                "\"transfers\":\(summary.transfers)",
                "\"rejected\":\(summary.rejected)",
                "\"failed\":\(summary.failed)",
                "\"calls\":\(summary.calls)",
                "\"fenced\":\(summary.fenced)",
                "\"duration_s\":\(String(format: "%.3f", summary.seconds))",
            ]
            for (node, count) in perNode { fields.append("\"activations_\(node.replacingOccurrences(of: "-", with: "_"))\":\(count)") }
            print("{" + fields.joined(separator: ",") + "}")
        }
        if !summary.ok { throw ExitCode(1) }
    }

    func runShop() async throws {
        var options = ShopDemo.Options()
        options.nodes = nodes
        options.duration = .milliseconds(Int((duration ?? 5) * 1000))
        options.orders = orders
        options.concurrency = concurrency ?? 16
        options.port = port
        options.logger = bootstrapLogging(level: logLevel)
        options.progress = { line in FileHandle.standardError.write(Data("troupe demo: \(line)\n".utf8)) }
        options.metrics = bootstrapMetrics()
        options.recentErrors = recentLogRecords
        if duration == nil, orders == nil {
            try await serveUntilInterrupted(options)
            return
        }
        print("troupe demo: \(nodes) nodes and the gateway on 127.0.0.1:\(port) (embedded engines), \(options.users) users, \(options.concurrency) clients, \(duration ?? 5) s")
        let summary = try await ShopDemo(options: options).run()
        let perNode = summary.activationsPerNode.sorted { $0.key < $1.key }
        print("""
            orders         \(summary.orders) placed through the gateway: \(summary.completed) completed, \(summary.cancelled) cancelled (\(summary.userCancels) by their users, the rest out of stock or funds; compensated by the saga), \(summary.unfinished) unfinished, \(summary.httpErrors) HTTP errors
            throughput     \(String(format: "%.0f", summary.throughput)) orders/s
            latency        order placed → final state: p50 \(String(format: "%.1f", summary.p50Milliseconds)) ms, p99 \(String(format: "%.1f", summary.p99Milliseconds)) ms
            activations    \(perNode.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            catalog cache  \(String(format: "%.1f", summary.cacheHitRate * 100)) % hits
            bus lag        \(summary.busLag) order-timeout messages not yet consumed
            invariants     stock conserved: \(summary.stockConserved), money conserved: \(summary.moneyConserved), no negative: \(summary.noNegative), every order final: \(summary.everyOrderFinal), \
            no order charged twice: \(summary.chargedOnce), sales counted from events = sold: \(summary.salesMatch)
            result         \(summary.ok ? "OK" : "FAILED")
            """)
        for problem in summary.problems.prefix(20) { print("problem        \(problem)") }
        if json {
            var fields: [String] = [
                "\"ok\":\(summary.ok)",
                "\"throughput_per_s\":\(String(format: "%.1f", summary.throughput))",
                "\"p50_ms\":\(String(format: "%.3f", summary.p50Milliseconds))",
                "\"p99_ms\":\(String(format: "%.3f", summary.p99Milliseconds))",
                "\"inv_stock_conserved\":\(summary.stockConserved)",
                "\"inv_money_conserved\":\(summary.moneyConserved)",
                "\"inv_no_negative\":\(summary.noNegative)",
                "\"inv_every_order_final\":\(summary.everyOrderFinal)",
                "\"inv_charged_once\":\(summary.chargedOnce)",
                "\"inv_sales_match\":\(summary.salesMatch)",
                "\"nodes\":\(summary.nodes)",
                "\"user_cancels\":\(summary.userCancels)",
                "\"cache_hit_rate\":\(String(format: "%.4f", summary.cacheHitRate))",
                "\"bus_lag\":\(summary.busLag)",
                "\"orders\":\(summary.orders)",
                "\"completed\":\(summary.completed)",
                "\"cancelled\":\(summary.cancelled)",
                "\"http_errors\":\(summary.httpErrors)",
                "\"duration_s\":\(String(format: "%.3f", summary.seconds))",
            ]
            for (node, count) in perNode { fields.append("\"activations_\(node.replacingOccurrences(of: "-", with: "_"))\":\(count)") }
            print("{" + fields.joined(separator: ",") + "}")
        }
        if !summary.ok { throw ExitCode(1) }
    }
}

extension Demo {
    /// Serves the seeded shop until SIGINT / SIGTERM so a person can use the API.
    func serveUntilInterrupted(_ options: ShopDemo.Options) async throws {
        let base = "http://127.0.0.1:\(options.port)"
        try await ShopDemo(options: options).serve { systems, _ in
            print("""
                troupe demo: \(systems.count) nodes and the gateway on \(base) (embedded engines); Ctrl-C stops.
                Users user-0 … user-\(options.users - 1) (password pw-<user>), products sku-0 … sku-\(options.products - 1). Try:
                  curl -s \(base)/products/sku-3
                  TOKEN=$(curl -s -X POST \(base)/auth/login -H 'content-type: application/json' \\
                            -d '{"username":"user-1","password":"pw-user-1"}' | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')
                  curl -s -X POST \(base)/orders -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
                       -H "Idempotency-Key: $(uuidgen || date +%s%N)" -d '{"sku":"sku-3","quantity":2}'
                  curl -s \(base)/orders/ORDER_ID -H "authorization: Bearer $TOKEN"
                  curl -s \(base)/openapi.json; curl -s \(base)/metrics
                """)
            fflush(nil)  // written now, also when the output is a file or a pipe (nil: every output stream)
            await waitForInterrupt()
            print("troupe demo: stopping")
        }
    }
}

/// Returns at the first SIGINT or SIGTERM.
func waitForInterrupt() async {
    for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { return }
}

/// `--config FILE --log-level L`: what `troupe node` and `troupe gateway` read.
struct ProcessOptions: ParsableArguments {
    @Option(help: "Path of the configuration file (JSON; see examples/).")
    var config: String
    @Option(help: "Log level (default: the configuration's logLevel, else info; TROUPE_LOG_LEVEL wins over both).")
    var logLevel: Logger.Level?

    /// Loads and validates the configuration for `role` (logging is bootstrapped after, inside the telemetry that
    /// names the process after its node).
    func load(role: NodeConfiguration.Role) throws -> (NodeConfiguration, ShopSettings?, [String: String]) {
        let environment = ProcessInfo.processInfo.environment
        let (configuration, shop) = try ShopServer.load(path: config, environment: environment, role: role)
        return (configuration, shop, environment)
    }
}

struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one node of a cluster from a JSON configuration file (hosts the shop's and the bank's actors)."
    )

    @OptionGroup var options: ProcessOptions

    func run() async throws {
        let (configuration, shop, environment) = try options.load(role: .node)
        try await Observability.withTelemetry(service: "troupe-node", instance: configuration.node) {
            let logger = bootstrapLogging(level: options.logLevel ?? configuration.level ?? .info)
            // A node serves no /metrics of its own: its figures leave over OTLP when the environment asks for it.
            _ = bootstrapMetrics()
            let node = try await ShopServer.node(configuration, shop: shop, environment: environment, logger: logger)
            // "shop ready" follows once the node's state store answers.
            logger.info("node starting", metadata: [
                "actor.node": "\(node.context.system.node)",
                "actor.membership": "\(configuration.etcd.map { "etcd \($0.endpoints)" } ?? "static \((configuration.members ?? []).map(\.node))")",
            ])
            try await node.run()
        }
    }
}

struct Gateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the HTTP gateway of a cluster from a JSON configuration file (a client of the cluster; etcd, MongoDB and Redis)."
    )

    @OptionGroup var options: ProcessOptions

    func run() async throws {
        let (configuration, shop, environment) = try options.load(role: .gateway)
        try await Observability.withTelemetry(service: "troupe-gateway", instance: configuration.node) {
            let logger = bootstrapLogging(level: options.logLevel ?? configuration.level ?? .info)
            let metrics = bootstrapMetrics()
            let process = try await ShopServer.gateway(configuration, shop: shop, environment: environment, logger: logger, metrics: metrics,
                                                       recentErrors: recentLogRecords)
            // "shop gateway ready" follows once its servers answer and the listener is built.
            logger.info("gateway starting", metadata: [
                "gateway.address": "\(configuration.gateway?.host ?? "127.0.0.1"):\(configuration.gateway?.port ?? 0)",
            ])
            try await process.node.run()
        }
    }
}

struct ShopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shop",
        abstract: "Seed and audit the reference shop of a running cluster.",
        subcommands: [Seed.self, Check.self]
    )

    struct CatalogOptions: ParsableArguments {
        @Option(help: "A gateway configuration of the cluster (cluster, secret, etcd or members, mongo, redis).")
        var config: String
        @Option(help: "Products sku-0 … sku-(N-1).")
        var products = 20
        @Option(help: "Stock per product.")
        var stock = 1_000
        @Option(help: "Users user-0 … user-(N-1), password pw-<user>.")
        var users = 40
        @Option(help: "Money per user.")
        var balance = 1_000
        @Option(help: "Log level.")
        var logLevel: Logger.Level = .warning

        func validate() throws {
            guard products >= 1, stock >= 0, users >= 1, balance >= 0 else {
                throw ValidationError("--products and --users must be at least 1; --stock and --balance not negative")
            }
        }

        var catalog: ShopServer.Catalog {
            var catalog = ShopServer.Catalog()
            catalog.products = products
            catalog.stock = stock
            catalog.users = users
            catalog.balance = balance
            return catalog
        }

        /// Runs `body` on a gateway-like process of the cluster (the HTTP listener is not started).
        func withShop<T: Sendable>(_ body: @escaping @Sendable (Shop, ClusterActorSystem) async throws -> T) async throws -> T {
            let logger = bootstrapLogging(level: logLevel)
            let environment = ProcessInfo.processInfo.environment
            var (configuration, shop) = try ShopServer.load(path: config, environment: environment, role: .gateway)
            configuration.node = "shop-cli-\(UInt32.random(in: 0 ... .max))"
            configuration.gateway?.port = 0
            let process = try await ShopServer.gateway(configuration, shop: shop, environment: environment, logger: logger, listen: false)
            return try await process.node.run {
                try await ShopServer.waitForShopMembers(process.node.system)
                return try await body(try await process.shop(), process.node.system)
            }
        }
    }

    struct Seed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add products, users, stock and money (once, on a fresh database).")
        @OptionGroup var options: CatalogOptions

        func run() async throws {
            let catalog = options.catalog
            try await options.withShop { shop, system in try await ShopServer.seed(catalog, shop: shop, system: system) }
            print("seeded \(catalog.products) products with \(catalog.stock) each and \(catalog.users) users with \(catalog.balance) each")
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the invariants: stock and money conserved, orders final, no order charged twice, no hold left, one order per Idempotency-Key.")
        @OptionGroup var options: CatalogOptions
        @Option(help: "A file of order ids (one per line) that must all be final.")
        var ordersFile: String?
        @Option(help: "Seconds to wait for unfinished orders to settle.")
        var settle = 60.0
        @Flag(help: "Print the result as one JSON object on the last line.")
        var json = false

        func run() async throws {
            let catalog = options.catalog
            let orders = try ordersFile.map { path in
                try String(contentsOfFile: path, encoding: .utf8).split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
            } ?? []
            let settle = Duration.milliseconds(Int(self.settle * 1000))
            let audit = try await options.withShop { _, system in
                try await ShopAudit.run(system: system, expecting: .init(
                    skus: catalog.skus, initialStock: catalog.stock, users: catalog.userNames, initialBalance: catalog.balance, orders: orders),
                    settle: settle)
            }
            print("""
                orders         \(orders.count) checked: \(audit.completed) completed, \(audit.cancelled) cancelled, \(audit.unfinished) unfinished
                invariants     stock conserved: \(audit.stockConserved), money conserved: \(audit.moneyConserved), no negative: \(audit.noNegative), \
                every order final: \(audit.everyOrderFinal), charged once: \(audit.chargedOnce), sales match: \(audit.salesMatch), \
                no leftover holds: \(audit.noLeftoverHolds), one order per intent: \(audit.onePerIntent)
                result         \(audit.ok ? "OK" : "FAILED")
                """)
            for problem in audit.problems.prefix(20) { print("problem        \(problem)") }
            if json {
                print("{\"ok\":\(audit.ok),\"inv_stock_conserved\":\(audit.stockConserved),\"inv_money_conserved\":\(audit.moneyConserved),"
                      + "\"inv_no_negative\":\(audit.noNegative),\"inv_every_order_final\":\(audit.everyOrderFinal),"
                      + "\"inv_charged_once\":\(audit.chargedOnce),\"inv_sales_match\":\(audit.salesMatch),"
                      + "\"inv_no_leftover_holds\":\(audit.noLeftoverHolds),\"inv_one_per_intent\":\(audit.onePerIntent),"
                      + "\"orders\":\(orders.count),\"completed\":\(audit.completed),"
                      + "\"cancelled\":\(audit.cancelled),\"unfinished\":\(audit.unfinished)}")
            }
            if !audit.ok { throw ExitCode(1) }
        }
    }
}

struct Bank: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call the Account actors of a running cluster from a client-only node.",
        discussion: """
            Examples:
              troupe bank deposit --config node-1.json alice 100
              troupe bank transfer --config node-1.json alice bob 30
              troupe bank balance --config node-1.json alice bob
            """,
        subcommands: [Deposit.self, Withdraw.self, Transfer.self, Balance.self]
    )

    /// `--config FILE --log-level L`, shared by the subcommands.
    struct Options: ParsableArguments {
        @Option(help: "A node configuration of the cluster (cluster name, secret and members are used).")
        var config: String
        @Option(help: "Log level.")
        var logLevel: Logger.Level = .warning

        /// Runs `body` on a client-only node of the cluster, once it knows a member hosting accounts.
        func withClient(_ body: @escaping @Sendable (ClusterActorSystem) async throws -> Void) async throws {
            let logger = bootstrapLogging(level: logLevel)
            let environment = ProcessInfo.processInfo.environment
            let (configuration, _) = try ShopServer.load(path: config, environment: environment)
            let node = try await TroupeNode.startClient(
                configuration, name: "client-\(UInt32.random(in: 0 ... .max))", environment: environment, logger: logger
            )
            try await node.run {
                let deadline = ContinuousClock.now + .seconds(5)
                while !node.system.members.contains(where: { $0.hosts(Account.virtualTypeName) }), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                try await body(node.system)
            }
        }
    }

    static func validate(amount: Int) throws {
        guard amount > 0 else { throw ValidationError("the amount must be a positive whole number (it is \(amount))") }
    }

    /// A change of one account's balance by an amount, printing the new balance.
    protocol AmountCommand: AsyncParsableCommand {
        var options: Options { get }
        var account: String { get }
        var amount: Int { get }
        static func apply(_ amount: Int, to account: Account) async throws -> Int
    }

    struct Deposit: AmountCommand {
        static let configuration = CommandConfiguration(abstract: "Add AMOUNT to ACCOUNT and print the balance.")
        @OptionGroup var options: Options
        @Argument(help: "The account.") var account: String
        @Argument(help: "A positive whole number.") var amount: Int
        static func apply(_ amount: Int, to account: Account) async throws -> Int { try await account.deposit(amount) }
    }

    struct Withdraw: AmountCommand {
        static let configuration = CommandConfiguration(abstract: "Take AMOUNT from ACCOUNT (refused below zero) and print the balance.")
        @OptionGroup var options: Options
        @Argument(help: "The account.") var account: String
        @Argument(help: "A positive whole number.") var amount: Int
        static func apply(_ amount: Int, to account: Account) async throws -> Int { try await account.withdraw(amount) }
    }

    struct Transfer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move AMOUNT from one account to another (the withdrawal is undone if the deposit fails).")
        @OptionGroup var options: Options
        @Argument(help: "The account to take from.") var from: String
        @Argument(help: "The account to add to.") var to: String
        @Argument(help: "A positive whole number.") var amount: Int
        func validate() throws { try Bank.validate(amount: amount) }
        func run() async throws {
            try await options.withClient { [from, to, amount] system in
                _ = try await system.actor(Account.self, key: from).withdraw(amount)
                do {
                    _ = try await system.actor(Account.self, key: to).deposit(amount)
                } catch {
                    _ = try await system.actor(Account.self, key: from).deposit(amount)  // compensate
                    throw error
                }
                print("moved \(amount) from \(from) to \(to)")
            }
        }
    }

    struct Balance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the balance of each account and the node that holds it.")
        @OptionGroup var options: Options
        @Argument(help: "One or more accounts.") var accounts: [String]
        func validate() throws {
            guard !accounts.isEmpty else { throw ValidationError("name at least one account") }
        }
        func run() async throws {
            try await options.withClient { [accounts] system in
                for key in accounts {
                    let reference = try await system.actor(Account.self, key: key)
                    print("\(key): \(try await reference.balance()) (on \(try await reference.host()))")
                }
            }
        }
    }
}

extension Bank.AmountCommand {
    func validate() throws { try Bank.validate(amount: amount) }

    func run() async throws {
        try await options.withClient { [account, amount] system in
            print("\(account): \(try await Self.apply(amount, to: try await system.actor(Account.self, key: account)))")
        }
    }
}

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a benchmark suite (build with -c release).",
        discussion: """
            actors: native, same-node and remote actor calls next to Erlang/OTP; redis: the RESP3 client next to redis-benchmark; etcd: the etcd client; mongo: the MongoDB driver; bus: producers and consumers next to raw XADD; gateway: the gateway's proxy next to nginx; e2e: orders through the gateway of the embedded shop.
            """
    )

    enum Suite: String, CaseIterable, ExpressibleByArgument {
        case actors, redis, etcd, mongo, bus, gateway, e2e
    }

    @Argument(help: "The suite to run.")
    var suite: Suite
    @Flag(help: "Print the figures as one JSON object on the last line.")
    var json = false
    @Flag(help: "actors, gateway: what TLS costs next to plaintext (actors) or next to nginx on HTTPS (gateway), alternating rounds.")
    var tls = false

    func run() async throws {
        let progress: @Sendable (String) -> Void = { [suite] step in FileHandle.standardError.write(Data("bench \(suite.rawValue): \(step)\n".utf8)) }
        let report: BenchmarkReport
        switch (suite, tls) {
        case (.actors, true): report = try await TLSBenchmark().runActors(progress: progress)
        case (.gateway, true): report = try await TLSBenchmark().runGateway(progress: progress)
        case (_, true): throw ValidationError("--tls applies to the actors and gateway suites")
        case (.actors, false): report = try await ActorsBenchmark().run(progress: progress)
        case (.redis, false): report = try await RedisBenchmark().run(progress: progress)
        case (.etcd, false): report = try await EtcdBenchmark().run(progress: progress)
        case (.mongo, false): report = try await MongoBenchmark().run(progress: progress)
        case (.bus, false): report = try await BusBenchmark().run(progress: progress)
        case (.gateway, false): report = try await GatewayBenchmark().run(progress: progress)
        case (.e2e, false): report = try await E2EBenchmark().run(progress: progress)
        }
        print(report.text)
        if json { print(report.json) }
    }
}

struct Chaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fault-injection run: the shop on real servers (etcd, Redis, SecantusDB) as separate processes, faults injected under load, promises checked per idempotency key.",
        discussion: """
            Starts etcd, Redis (AOF) and SecantusDB on disk, 3 nodes and 2 gateways of this executable; users place \
            orders through both gateways and retry with the same Idempotency-Key; the faults are injected one after \
            another (node: SIGKILL + restart; gateway: SIGKILL + restart; redis: SIGKILL + restart on the AOF; etcd: \
            stopped 15 s; mongo: SIGKILL + restart; partition: a node cut off the network 10 s, its nodes in Linux \
            network namespaces — needs root and iproute2, left out of the default list otherwise; pause: a node \
            frozen 10 s). Then, from the databases and the clients' log: one order per key, nothing charged twice, \
            nothing lost, nothing stuck or left reserved, stock and money conserved. Exits non-zero when a promise \
            is broken.
            """
    )

    @Option(help: "Faults, comma-separated: \(ChaosFault.allCases.map(\.rawValue).joined(separator: ",")) (default: all that this machine can inject).")
    var faults: String?
    @Option(help: "Seconds of steady load before the first fault and after each one.")
    var duration: Double = 10
    @Option(help: "Concurrent users.")
    var users = 12
    @Option(help: "Seconds to wait for every order to reach a final state before the audit.")
    var settle: Double = 150
    @Flag(help: "Keep the servers' data and logs (they are kept anyway when the run fails).")
    var keepFiles = false
    @Flag(help: "Print the result as one JSON object on the last line.")
    var json = false

    func validate() throws {
        for name in (faults ?? "").split(separator: ",") {
            guard let fault = ChaosFault(rawValue: String(name)) else {
                throw ValidationError("unknown fault \(name); available: \(ChaosFault.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            if let reason = fault.unavailableReason { throw ValidationError(reason) }
        }
        guard duration >= 1, settle >= 1, users >= 1 else { throw ValidationError("--duration and --settle must be at least 1 s, --users at least 1") }
    }

    func run() async throws {
        _ = bootstrapLogging(level: .warning)
        var options = ChaosRun.Options()
        if let faults { options.faults = faults.split(separator: ",").compactMap { ChaosFault(rawValue: String($0)) } }
        for fault in ChaosFault.allCases where !options.faults.contains(fault) && faults == nil {
            FileHandle.standardError.write(Data("chaos: leaving out \(fault.rawValue): \(fault.unavailableReason ?? "")\n".utf8))
        }
        options.steady = duration
        options.users = users
        options.settle = settle
        options.keepFiles = keepFiles
        let started = Date()
        let report = try await ChaosRun(options: options).run { step in
            FileHandle.standardError.write(Data(String(format: "chaos +%5.1fs: %@\n", Date().timeIntervalSince(started), step).utf8))
        }
        print(report.text)
        if json { print(report.json) }
        if !report.ok { throw ExitCode(1) }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
