import Foundation
import Logging
import Troupe
import TroupeActors
import TroupeCore
import TroupeDemo
import TroupeGateway
import TroupeSaga
import TroupeShop
import TroupeStore
import TroupeTestSupport
import TroupeMongo
import TroupeActorsStore

/// `troupe chaos`: the shop on real servers and separate processes, driven through both gateways by clients
/// that retry with the same Idempotency-Key, while faults are injected one after another; then the promises
/// are checked per client intent, from the databases and from the clients' log.
public struct ChaosRun: Sendable {
    public struct Options: Sendable {
        /// Every fault this machine can inject (the partition needs root and iproute2).
        public var faults: [ChaosFault] = ChaosFault.allCases.filter { $0.unavailableReason == nil }
        /// Seconds of steady load before the first fault and after each one.
        public var steady: Double = 10
        public var users = 12
        public var products = 10
        /// Seconds to wait, after the load stops, for every order to reach its final state.
        public var settle: Double = 150
        public var keepFiles = false
        public init() {}
    }

    public let options: Options

    public init(options: Options) {
        self.options = options
    }

    /// What broke a promise; counted by the clients' log and by the audit of the stored state alike.
    public struct Findings: Sendable {
        public var duplicateEffects = 0
        public var stuckOrders = 0
        public var leftoverReservations = 0
        public var lostAcknowledged = 0
        public var chargedTwice = 0
        public var conserved = true
        public var problems: [String] = []

        var broken: Bool {
            duplicateEffects > 0 || stuckOrders > 0 || leftoverReservations > 0 || lostAcknowledged > 0 || chargedTwice > 0 || !conserved
        }

        mutating func merge(_ other: Findings) {
            duplicateEffects += other.duplicateEffects
            stuckOrders += other.stuckOrders
            leftoverReservations += other.leftoverReservations
            lostAcknowledged += other.lostAcknowledged
            chargedTwice += other.chargedTwice
            conserved = conserved && other.conserved
            problems += other.problems
        }
    }

    public struct Report: Sendable {
        public var faults: [String] = []
        public var acknowledged = 0
        public var intents = 0
        public var orders = 0
        public var attempts = 0
        public var findings = Findings()
        public var unavailable: [(String, Double)] = []
        /// Per fault (and `steady`, the load before the first fault), the longest an intent that ended (was
        /// answered) in the window waited for its answer, failed attempts and retries included: a request the
        /// gateway retried for the client, or that waited for the membership to change, does not fail, but
        /// its user waits — this is that wait.
        public var longestWait: [(String, Double)] = []
        /// The same waits' 99th percentile, per window.
        public var p99Wait: [(String, Double)] = []
        /// Per window, what the longest wait was made of: its attempts, each with its answer and duration.
        public var longestWaitTries: [(String, [String])] = []
        /// Per fault, the most frequent reasons requests failed in its window, with their counts.
        public var reasons: [(String, [(String, Int)])] = []
        public var logs: [String] = []

        public var ok: Bool { !findings.broken && acknowledged > 0 }

        public var text: String {
            var lines = [
                "faults              \(faults.joined(separator: ", "))",
                "intents             \(intents) (\(acknowledged) acknowledged, \(attempts) requests); orders in the store: \(orders)",
                "duplicate effects   \(findings.duplicateEffects)",
                "charged twice       \(findings.chargedTwice)",
                "lost acknowledged   \(findings.lostAcknowledged)",
                "stuck orders        \(findings.stuckOrders)",
                "leftover holds      \(findings.leftoverReservations)",
                "stock and money     \(findings.conserved ? "conserved" : "NOT conserved")",
            ]
            for (fault, seconds) in unavailable {
                let label = "unavailable \(fault)"
                lines.append(label.padding(toLength: max(20, label.count + 1), withPad: " ", startingAt: 0) + String(format: "%.1f s", seconds))
                if let wait = longestWait.first(where: { $0.0 == fault }), let p99 = p99Wait.first(where: { $0.0 == fault }) {
                    lines.append(String(format: "  longest wait %.1f s (p99 %.2f s)", wait.1, p99.1))
                    if let tries = longestWaitTries.first(where: { $0.0 == fault })?.1, !tries.isEmpty {
                        lines.append("    its attempts: \(tries.joined(separator: ", "))")
                    }
                }
                for (reason, count) in reasons.first(where: { $0.0 == fault })?.1 ?? [] {
                    lines.append("  failed \(count)× \(reason)")
                }
            }
            if let steady = longestWait.first(where: { $0.0 == "steady" }), let p99 = p99Wait.first(where: { $0.0 == "steady" }) {
                lines.append(String(format: "longest wait        %.1f s (p99 %.2f s) before the first fault", steady.1, p99.1))
            }
            lines.append("result              \(ok ? "OK" : "FAILED")")
            for problem in findings.problems.prefix(30) { lines.append("problem             \(problem)") }
            if !ok { for log in logs { lines.append("log                 \(log)") } }
            return lines.joined(separator: "\n")
        }

        public var json: String {
            var fields: [String] = [
                "\"ok\":\(ok)", "\"faults\":[\(faults.map { "\"\($0)\"" }.joined(separator: ","))]", "\"acknowledged\":\(acknowledged)",
                "\"intents\":\(intents)", "\"orders\":\(orders)", "\"requests\":\(attempts)",
                "\"duplicate_effects\":\(findings.duplicateEffects)", "\"stuck_orders\":\(findings.stuckOrders)",
                "\"leftover_reservations\":\(findings.leftoverReservations)", "\"lost_acknowledged\":\(findings.lostAcknowledged)",
                "\"charged_twice\":\(findings.chargedTwice)", "\"conserved\":\(findings.conserved)",
            ]
            for (fault, seconds) in unavailable { fields.append("\"unavailable_s_\(fault)\":\(String(format: "%.2f", seconds))") }
            for (window, seconds) in longestWait { fields.append("\"longest_wait_s_\(window)\":\(String(format: "%.2f", seconds))") }
            for (window, seconds) in p99Wait { fields.append("\"p99_wait_s_\(window)\":\(String(format: "%.2f", seconds))") }
            return "{" + fields.joined(separator: ",") + "}"
        }
    }

    /// Starts the cluster, runs the workload and the faults, audits, and stops everything (keeping the
    /// servers' data and logs when a promise was broken, the run failed, or `keepFiles` asks for it).
    public func run(progress: @escaping @Sendable (String) -> Void) async throws -> Report {
        // Reminders reconcile orders whose saga gave up: short enough to act within the run.
        let cluster = try await ChaosCluster.start(paymentTimeoutSeconds: 20, namespaces: options.faults.contains(.partition), progress: progress)
        let report: Report
        do {
            report = try await run(on: cluster, progress: progress)
        } catch {
            progress("the run failed: \(error); logs: \(cluster.logs.joined(separator: " "))")
            await cluster.shutdown(keepFiles: true)
            throw error
        }
        await cluster.shutdown(keepFiles: options.keepFiles || !report.ok)
        return report
    }

    private func run(on cluster: ChaosCluster, progress: @escaping @Sendable (String) -> Void) async throws -> Report {
        let options = self.options
        var catalog = ShopServer.Catalog()
        catalog.products = options.products
        catalog.users = options.users
        catalog.stock = 5_000
        catalog.balance = 100_000
        let seedCatalog = catalog
        progress("seeding \(catalog.products) products and \(catalog.users) users")
        try await withClient(cluster, name: "chaos-seed") { shop, node in
            let system = node.system
            try await ShopServer.seed(seedCatalog, shop: shop, system: system)
            // Every fourth user can afford little: their orders fail at "hold funds" and compensate.
            for user in seedCatalog.userNames.enumerated().filter({ $0.offset % 4 == 3 }).map(\.element) {
                _ = try await system.reference(AccountActor.self, key: user).deposit(-(seedCatalog.balance - 30))
            }
        }
        let clients = ChaosClients(gateways: cluster.gateways.map { .init(host: "127.0.0.1", port: $0.port) }, users: catalog.userNames,
                                   skus: catalog.skus, password: { ShopServer.Catalog.password(of: $0) })
        let log = Locked(ClientLog())
        let stop = ChaosStop()
        // The workload runs beside the faults; it stops placing new orders once they are done (or failed)
        // and finishes the retries of the orders in flight.
        let windows = try await withThrowingTaskGroup(of: [(ChaosFault, ContinuousClock.Instant, ContinuousClock.Instant)].self) { group in
            group.addTask {
                await clients.run(until: stop, log: log)
                return []
            }
            group.addTask {
                defer { stop.set() }
                var windows: [(ChaosFault, ContinuousClock.Instant, ContinuousClock.Instant)] = []
                progress("load through both gateways for \(Int(options.steady)) s")
                try await Task.sleep(for: .seconds(options.steady))
                for fault in options.faults {
                    let start = ContinuousClock.now
                    try await fault.inject(cluster, progress: progress)
                    try await Task.sleep(for: .seconds(options.steady))
                    windows.append((fault, start, ContinuousClock.now))
                }
                progress("load stopped; waiting for the requests in flight")
                return windows
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        let seen = log.withLock { $0 }
        var report = Report()
        report.faults = options.faults.map(\.rawValue)
        report.intents = seen.intents.count
        report.acknowledged = seen.intents.filter { $0.acknowledgedAt != nil }.count
        report.attempts = seen.attempts
        report.unavailable = windows.map { fault, start, end in (fault.rawValue, Self.unavailableSeconds(seen.failures, from: start, to: end)) }
        let loadStart = seen.intents.compactMap(\.started).min() ?? .now
        let named = [("steady", loadStart, windows.first?.1 ?? .now)] + windows.map { ($0.0.rawValue, $0.1, $0.2) }
        let waits = named.map { name, start, end in
            // An intent's wait counts in the window in which it ended (a request sent just before a fault and
            // held up by it belongs to that fault); the last window also takes those answered after the load
            // stopped, and one never answered ends with the load.
            let loadEnd = windows.last?.2 ?? end
            let waits = seen.intents.compactMap { intent -> (Double, [String])? in
                guard let began = intent.started else { return nil }
                let ended = intent.acknowledgedAt ?? loadEnd
                guard ended >= start, ended < end || end == loadEnd else { return nil }
                return ((ended - began).seconds, intent.tries)
            }.sorted { $0.0 < $1.0 }
            return (name, waits)
        }
        report.longestWait = waits.map { ($0.0, $0.1.last?.0 ?? 0) }
        report.longestWaitTries = waits.map { ($0.0, $0.1.last?.1 ?? []) }
        report.p99Wait = waits.map { name, sorted in (name, sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 99 / 100)].0) }
        report.reasons = windows.map { fault, start, end in
            let inWindow = seen.failures.filter { $0.failed >= start && $0.failed < end }
            let counted = Dictionary(grouping: inWindow, by: \.reason).map { ($0.key, $0.value.count) }.sorted { $0.1 > $1.1 }
            return (fault.rawValue, Array(counted.prefix(3)))
        }
        for intent in seen.intents where intent.ids.count > 1 {
            report.findings.duplicateEffects += intent.ids.count - 1
            report.findings.problems.append("key \(intent.key) answered \(intent.ids.count) orders: \(intent.ids.sorted())")
        }
        for intent in seen.intents where intent.refused != nil {
            report.findings.problems.append("key \(intent.key) was refused with \(intent.refused ?? 0)")
        }
        progress("settling: every order must reach a final state (up to \(Int(options.settle)) s), then the audit")
        let settle = Duration.milliseconds(Int64(options.settle * 1000))
        let (orders, audited) = try await withClient(cluster, name: "chaos-audit") { _, node in
            try await Self.audit(node: node, catalog: seedCatalog, log: seen, settle: settle)
        }
        report.orders = orders
        report.findings.merge(audited)
        report.logs = cluster.logs
        return report
    }

    /// The seconds during which requests failed in a window: the union of the intervals from each failed
    /// request's start to the moment its intent succeeded (or the window's end).
    static func unavailableSeconds(_ failures: [ClientLog.Failure], from start: ContinuousClock.Instant, to end: ContinuousClock.Instant) -> Double {
        // A failure counts in the window in which the client saw it, from when its request was sent (at the
        // earliest the window's start) until its intent succeeded (at the latest the window's end).
        let intervals = failures.compactMap { failure -> (ContinuousClock.Instant, ContinuousClock.Instant)? in
            guard failure.failed >= start, failure.failed < end else { return nil }
            let until = min(failure.recovered ?? end, end)
            return (max(failure.started, start), until)
        }.sorted { $0.0 < $1.0 }
        var total: Duration = .zero
        var current: (ContinuousClock.Instant, ContinuousClock.Instant)?
        for interval in intervals {
            if let open = current, interval.0 <= open.1 {
                current = (open.0, max(open.1, interval.1))
            } else {
                if let open = current { total += open.1 - open.0 }
                current = interval
            }
        }
        if let open = current { total += open.1 - open.0 }
        return total.seconds
    }

    /// Runs `body` on an in-process client of the cluster (a gateway without its HTTP listener).
    func withClient<T: Sendable>(_ cluster: ChaosCluster, name: String,
                                 _ body: @escaping @Sendable (Shop, TroupeNode) async throws -> T) async throws -> T {
        let path = try await cluster.clientConfiguration(name: name)
        var logger = Logger(label: "troupe.chaos")
        logger.logLevel = .warning
        let environment = ProcessInfo.processInfo.environment
        let (configuration, shop) = try ShopServer.load(path: path, environment: environment, role: .gateway)
        let process = try await ShopServer.gateway(configuration, shop: shop, environment: environment, logger: logger, listen: false)
        return try await process.node.run {
            try await ShopServer.waitForShopMembers(process.node.system, timeout: .seconds(30))
            return try await body(try await process.shop(), process.node)
        }
    }

    /// The checks, from the actors' stored state (MongoDB) and the clients' log: every acknowledged order
    /// exists and is final; one order per (user, idempotency key); no intent charged twice; no stock
    /// reservation or money hold left; stock and money conserved (``ShopAudit``).
    /// Returns the number of orders in the store and what broke.
    static func audit(node: TroupeNode, catalog: ShopServer.Catalog, log: ClientLog, settle: Duration) async throws -> (Int, Findings) {
        var audit = Findings()
        let system = node.system
        guard let mongo = node.mongo else { throw ChaosError("the audit's client has no MongoDB client") }
        let states = try await DocumentActorStateStore(store: DocumentStore(engine: MongoDocumentStore(database: mongo.database("shop"))))
        // Every order in the store, then the shop's own audit over all of them (it waits for them to settle,
        // resuming their sagas, and checks stock and money).
        let stored = try await states.states(ofType: OrderActor.virtualTypeName)
        let ids = stored.keys.sorted()
        let deposits = Dictionary(uniqueKeysWithValues: catalog.userNames.enumerated().map { ($0.element, $0.offset % 4 == 3 ? 30 : catalog.balance) })
        let shopAudit = try await ShopAudit.run(system: system, expecting: .init(
            stock: Dictionary(uniqueKeysWithValues: catalog.skus.map { ($0, catalog.stock) }), deposits: deposits, orders: ids), settle: settle,
            // The sales consumer retries a failed event on the bus's schedule (10 s, 30 s, 1 min, 2 min, …): a few
            // failures during a fault put an event minutes away. Only a mismatch waits.
            salesWait: .seconds(300))
        audit.stuckOrders = shopAudit.unfinished
        audit.conserved = shopAudit.stockConserved && shopAudit.moneyConserved && shopAudit.noNegative && shopAudit.salesMatch
        audit.problems += shopAudit.problems.prefix(20)
        // The orders as they are now (after the settle).
        var orders: [String: OrderInfo] = [:]
        for (key, state) in try await states.states(ofType: OrderActor.virtualTypeName, as: OrderActor.State.self) {
            orders[key] = state.info
        }
        var byIntent: [String: [OrderInfo]] = [:]
        for order in orders.values {
            guard let intent = order.intent else { continue }
            byIntent["\(order.user)\u{0}\(intent)", default: []].append(order)
        }
        for (intent, placed) in byIntent where placed.count > 1 {
            audit.duplicateEffects += placed.count - 1
            audit.problems.append("intent \(intent.replacingOccurrences(of: "\u{0}", with: "/")) has \(placed.count) orders in the store")
        }
        for intent in log.intents where intent.acknowledgedAt != nil {
            for id in intent.ids where orders[id] == nil {
                audit.lostAcknowledged += 1
                audit.problems.append("acknowledged order \(id) (key \(intent.key)) is not in the store")
            }
        }
        var charges: [String: Int] = [:]
        for (user, account) in try await states.states(ofType: AccountActor.virtualTypeName, as: AccountActor.State.self) {
            audit.leftoverReservations += account.holds.count
            if !account.holds.isEmpty { audit.problems.append("\(user) still has holds for \(account.holds.keys.sorted().prefix(5))") }
            for order in account.charges.keys {
                let intent = orders[order].map { "\($0.user)\u{0}\($0.intent ?? order)" } ?? order
                charges[intent, default: 0] += 1
                if orders[order]?.status != .completed {
                    audit.chargedTwice += 1
                    audit.problems.append("\(user) was charged for order \(order), which is \(orders[order]?.status.rawValue ?? "missing")")
                }
            }
        }
        for (intent, count) in charges where count > 1 {
            audit.chargedTwice += count - 1
            audit.problems.append("intent \(intent.replacingOccurrences(of: "\u{0}", with: "/")) was charged \(count) times")
        }
        for (sku, stock) in try await states.states(ofType: InventoryActor.virtualTypeName, as: InventoryActor.State.self) {
            audit.leftoverReservations += stock.reserved.count
            if !stock.reserved.isEmpty { audit.problems.append("\(sku) still has reservations for \(stock.reserved.keys.sorted().prefix(5))") }
        }
        return (ids.count, audit)
    }
}
