public import TroupeActors
import TroupeSaga
import TroupeCore

/// The shop's invariants, read from the actors themselves (after a workload, on any node or client).
public struct ShopAudit: Codable, Sendable, Equatable {
    /// For every SKU: available + sold = initial stock, and no reservation is left behind.
    public var stockConserved = true
    /// Balances + holds + spent = the money deposited.
    public var moneyConserved = true
    /// No stock or balance below zero.
    public var noNegative = true
    /// Every order the workload knows of is completed or cancelled.
    public var everyOrderFinal = true
    /// Every charge belongs to a completed order of that user, for its amount, once; every completed order is charged.
    public var chargedOnce = true
    /// For every SKU, the sales counted from the orders' events (outbox → bus → inbox) equal the units sold.
    public var salesMatch = true
    /// No account holds money for an order that is final (a hold left behind by a saga that stopped).
    public var noLeftoverHolds = true
    /// No two orders come from one client intent (the same user and Idempotency-Key).
    public var onePerIntent = true
    /// Orders completed.
    public var completed = 0
    /// Orders cancelled.
    public var cancelled = 0
    /// Orders neither completed nor cancelled.
    public var unfinished = 0
    /// What failed, for people.
    public var problems: [String] = []

    /// Whether every invariant held.
    public var ok: Bool { stockConserved && moneyConserved && noNegative && everyOrderFinal && chargedOnce && salesMatch && noLeftoverHolds && onePerIntent }

    /// A report where every invariant holds until checked.
    public init() {}

    /// Whether, for every SKU, the units counted by its ``SalesActor`` from the orders' "completed" events
    /// equal the units its inventory sold. The events travel asynchronously (outbox → bus → inbox), so
    /// this waits up to `wait` for them to add up.
    public static func salesMatch(system: ClusterActorSystem, skus: [String], wait: Duration) async throws -> (ok: Bool, problems: [String]) {
        let deadline = system.clock.now + wait
        var problems: [String] = []
        for sku in skus {
            let sold = try await system.reference(InventoryActor.self, key: sku).snapshot().sold
            var counted = try await system.reference(SalesActor.self, key: sku).snapshot().sold
            while counted != sold, system.clock.now < deadline {
                try await system.clock.sleep(for: .milliseconds(100))
                counted = try await system.reference(SalesActor.self, key: sku).snapshot().sold
            }
            if counted != sold { problems.append("\(sku): \(sold) sold, \(counted) counted from the order events") }
        }
        return (problems.isEmpty, problems)
    }

    /// What the workload started from.
    public struct Expectation: Sendable {
        /// Initial stock by SKU.
        public var stock: [String: Int]
        /// Money deposited by user.
        public var deposits: [String: Int]
        /// Order ids the workload placed (and got an id for).
        public var orders: [String]

        /// What the workload started from.
        public init(stock: [String: Int], deposits: [String: Int], orders: [String]) {
            self.stock = stock
            self.deposits = deposits
            self.orders = orders
        }

        /// The same stock for every SKU and the same deposit for every user.
        public init(skus: [String], initialStock: Int, users: [String], initialBalance: Int, orders: [String]) {
            self.init(stock: Dictionary(uniqueKeysWithValues: skus.map { ($0, initialStock) }),
                      deposits: Dictionary(uniqueKeysWithValues: users.map { ($0, initialBalance) }), orders: orders)
        }
    }

    /// Waits (up to `settle`) for every known order to reach a final state — asking each unfinished
    /// order's saga for its status, which resumes a saga whose node died — then checks the invariants.
    /// - Parameter salesWait: how long the sales counted from the order events may take to catch up (a consumer
    ///   on a node that died holds its queue until the queue's lease expires and another consumer takes over).
    ///   - checkSales: false where no bus carries the order events (the sales then stay uncounted and unchecked).
    public static func run(system: ClusterActorSystem, expecting expected: Expectation, settle: Duration = .seconds(60),
                           salesWait: Duration = .seconds(15), checkSales: Bool = true) async throws -> ShopAudit {
        var audit = ShopAudit()
        var infos: [String: OrderInfo] = [:]
        let deadline = system.clock.now + settle
        var pending = expected.orders
        while true {
            var still: [String] = []
            for id in pending {
                let info = try await system.reference(OrderActor.self, key: id).info()
                let saga = try? await system.reference(SagaActor.self, key: id).status()
                // Final only when the order is final and its saga has stopped moving stock or money.
                if (info.status == .completed || info.status == .cancelled) && (saga?.status.isFinal ?? true) {
                    infos[id] = info
                } else {
                    still.append(id)
                }
            }
            pending = still
            if pending.isEmpty || system.clock.now >= deadline { break }
            try await system.clock.sleep(for: .milliseconds(200))
        }
        for id in pending {
            let info = try await system.reference(OrderActor.self, key: id).info()
            infos[id] = info
            // What the saga says, for the diagnosis: its status, steps, failure and its log's tail.
            let saga = try? await system.reference(SagaActor.self, key: id).status()
            let sagaText = saga.map { saga in
                "saga \(saga.status.rawValue), done [\(saga.completedSteps.joined(separator: ","))], compensated ["
                    + "\(saga.compensatedSteps.joined(separator: ","))], failure \(saga.failure ?? "-"), log tail \(saga.log.suffix(4))"
            } ?? "saga unreadable"
            audit.problems.append("order \(id) is still \(info.status.rawValue); \(sagaText)")
        }
        audit.unfinished = pending.count
        audit.everyOrderFinal = pending.isEmpty
        audit.completed = infos.values.filter { $0.status == .completed }.count
        audit.cancelled = infos.values.filter { $0.status == .cancelled }.count

        for (sku, initial) in expected.stock.sorted(by: { $0.key < $1.key }) {
            let stock = try await system.reference(InventoryActor.self, key: sku).snapshot()
            if stock.available + stock.sold != initial || !stock.reserved.isEmpty {
                audit.stockConserved = false
                audit.problems.append("\(sku): available \(stock.available) + sold \(stock.sold) of \(initial), \(stock.reserved.count) reservations left")
            }
            if stock.available < 0 { audit.noNegative = false }
        }
        var money = 0
        var charged: Set<String> = []
        for user in expected.deposits.keys.sorted() {
            let account = try await system.reference(AccountActor.self, key: user).snapshot()
            money += account.balance + account.holds.values.reduce(0, +) + account.spent
            if account.balance < 0 { audit.noNegative = false }
            if account.charges.values.reduce(0, +) != account.spent {
                audit.chargedOnce = false
                audit.problems.append("\(user): charges add up to \(account.charges.values.reduce(0, +)), spent is \(account.spent)")
            }
            for order in account.holds.keys.sorted() where infos[order].map({ $0.status == .completed || $0.status == .cancelled }) == true {
                audit.noLeftoverHolds = false
                audit.problems.append("\(user) still holds money for order \(order), which is \(infos[order]?.status.rawValue ?? "")")
            }
            for (order, amount) in account.charges {
                charged.insert(order)
                var info = infos[order] ?? OrderInfo()
                if infos[order] == nil { info = try await system.reference(OrderActor.self, key: order).info() }
                if info.status != .completed || info.amount != amount || info.user != user {
                    audit.chargedOnce = false
                    audit.problems.append("\(user) was charged \(amount) for order \(order), which is \(info.status.rawValue) for \(info.amount)")
                }
            }
        }
        for (intent, orders) in Dictionary(grouping: infos.values.filter { $0.intent != nil }, by: { "\($0.user)/\($0.intent ?? "")" })
        where orders.count > 1 {
            audit.onePerIntent = false
            audit.problems.append("intent \(intent) placed \(orders.count) orders: \(orders.map(\.id).sorted())")
        }
        for info in infos.values where info.status == .completed && !charged.contains(info.id) {
            audit.chargedOnce = false
            audit.problems.append("order \(info.id) is completed but was never charged")
        }
        if checkSales {
            let sales = try await salesMatch(system: system, skus: expected.stock.keys.sorted(), wait: salesWait)
            audit.salesMatch = sales.problems.isEmpty
            audit.problems += sales.problems
        }
        let deposited = expected.deposits.values.reduce(0, +)
        if money != deposited {
            audit.moneyConserved = false
            audit.problems.append("money: \(money) of \(deposited)")
        }
        return audit
    }
}
