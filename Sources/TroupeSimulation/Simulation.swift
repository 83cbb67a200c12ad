import Distributed
import Logging
import NIOCore
import NIOEmbedded
import TroupeActors
import TroupeBus
import TroupeCore
import TroupeSaga
import TroupeShop

/// One seeded run: N nodes of the real ``ClusterActorSystem`` on the simulated network, membership and
/// store, a client workload of transfers with idempotency keys, faults while it runs, then a settling
/// period without faults, then the invariants.
public struct Simulation: Sendable {
    /// What a simulation runs: seeds, nodes, simulated time, faults, workload and mutation.
    public struct Options: Sendable {
        /// The seed everything random is drawn from.
        public var seed: UInt64
        /// Nodes in the cluster (3).
        public var nodes = 3
        /// The faults injected (all by default).
        public var faults: FaultSet = .all
        /// The workload run (the shop's by default).
        public var workload: WorkloadKind = .shop
        /// A known bug put back, to show the run finds it; nil: none.
        public var mutation: Mutation?
        /// Simulated time with workload and faults; then ``settle`` without faults.
        public var duration: Duration = .seconds(40)
        /// Simulated time without faults after ``duration``, for the cluster to settle (20 s).
        public var settle: Duration = .seconds(20)
        /// Concurrent clients (4).
        public var clients = 4
        /// Wallets the transfers workload moves money between (6).
        public var wallets = 6

        /// A run of `seed` with the defaults.
        public init(seed: UInt64) { self.seed = seed }
    }

    /// What one seed did and found.
    public struct Outcome: Sendable {
        /// The invariants that failed, in words (empty: none).
        public var violations: [String]
        /// Nodes crash without a goodbye and restart 1–7 s later with a new incarnation.
        public var traceHash: UInt64
        /// Two nodes are partitioned: their connections break, bytes in flight are lost, new connections time out.
        public var events: Int
        /// A node is cut off from the membership service: its lease expires and it drops out of the others' view.
        public var steps: UInt64
        /// The state store fails requests (before or after the write landed) and stalls some.
        public var simulatedSeconds: Double
        /// Client intents the workload made.
        public var intents: Int
        /// The last events before the end (or the first violation), for a report.
        public var lastEvents: [String]
        /// Real sleeps of the code under test turned into simulated timers.
        public var convertedSleeps: Int
    }

    /// What the run does.
    public let options: Options

    /// A run of `options`.
    public init(options: Options) { self.options = options }

    static let initialBalance = 1_000

    /// Runs the seed on `scheduler` (the process's simulation scheduler; call from its main task).
    public func run(on scheduler: SimulationScheduler) async -> Outcome {
        scheduler.seed(options.seed)
        let world = SimulationWorld(seed: options.seed, scheduler: scheduler, mutation: options.mutation)
        scheduler.setPump { [loop = world.loop] in loop.run() }
        scheduler.setAdvanced { [loop = world.loop] now in loop.advanceTime(to: .uptimeNanoseconds(UInt64(now))) }
        defer {
            scheduler.setPump(nil)
            scheduler.setAdvanced(nil)
        }
        SimulationWorld.current = world
        defer { SimulationWorld.current = nil }
        let cluster = SimulatedCluster(world: world, options: options)
        var violations: [String] = []
        do {
            try await cluster.run()
        } catch {
            violations.append("the run failed: \(error)")
        }
        violations += cluster.check()
        if scheduler.convertedSleeps > 0 {
            violations.append("\(scheduler.convertedSleeps) sleep(s) on a real clock: the run may not replay; TROUPE_SIMULATION_STRICT=1 traps at the first, naming its caller")
        }
        return Outcome(
            violations: violations, traceHash: world.traceHash, events: world.events, steps: scheduler.steps,
            simulatedSeconds: Double(scheduler.now) / 1e9, intents: cluster.intents.count,
            lastEvents: world.lastEvents, convertedSleeps: scheduler.convertedSleeps
        )
    }
}

/// A client's intent: one transfer under one idempotency key, and the outcome the client was told.
struct Intent: Sendable {
    var key: String
    var from: String
    var to: String
    var amount: Int
    var outcome: String?
}

/// The nodes, the workload and the faults of one run.
///
/// Invariant (why `@unchecked Sendable`): touched only from the simulation thread.
final class SimulatedCluster: @unchecked Sendable {
    let world: SimulationWorld
    let options: Simulation.Options
    private var nodes: [Node] = []
    private(set) var intents: [String: Intent] = [:]
    private var minted: Set<String> = []
    let settings: WorkloadSettings
    /// Shop: the orders placed (id by intent) and what the checks found while the nodes still ran.
    private var placed: [String: String] = [:]
    private var liveViolations: [String] = []
    static let skus = ["S0": 13, "S1": 29, "S2": 41, "S3": 7]  // price by SKU
    /// The shop's bus engine, shared by the nodes as a Redis server would be (it does not fail here).
    private(set) lazy var busEngine = InMemoryBusEngine(clock: world.clock)
    /// When an order not paid by then is cancelled by its reminder (a delayed bus message).
    static let paymentTimeout: Duration = .seconds(20)
    static let initialStock = 80
    static let deposit = 1_500
    private var users: [String] { (0..<6).map { "U\($0)" } }

    /// One simulated node (touched only from the simulation thread, as the cluster).
    final class Node: @unchecked Sendable {
        let index: Int
        let host: String
        var system: ClusterActorSystem?
        var task: Task<Void, Never>?
        var alive = false
        /// The current incarnation's liveness, seen by its store handle.
        var flag: Flag?

        init(index: Int) {
            self.index = index
            self.host = "10.0.0.\(index + 1)"
        }
    }

    /// A boolean shared with the store handle of one incarnation.
    final class Flag: @unchecked Sendable {
        // @unchecked: touched only from the simulation thread.
        var value = false
    }

    init(world: SimulationWorld, options: Simulation.Options) {
        self.world = world
        self.options = options
        self.settings = WorkloadSettings(mutation: options.mutation, frozen: ["W\(options.wallets - 1)"], origin: world.clock.origin)
        nodes = (0..<options.nodes).map(Node.init)
    }

    private var wallets: [String] { (0..<options.wallets).map { "W\($0)" } }

    func run() async throws {
        for node in nodes { try await start(node) }
        // Every node sees every other before the clients start (up to 10 simulated seconds).
        for _ in 0..<1000 where !nodes.allSatisfy({ $0.system?.membership.currentMembers().count == nodes.count }) {
            try await world.clock.sleep(for: .milliseconds(10))
        }
        let faultsEnd = world.clock.now + options.duration
        let end = faultsEnd + options.settle
        try await prepare(until: end)
        world.trace("funded")
        await withDiscardingTaskGroup { group in
            group.addTask { await self.injectFaults(until: faultsEnd) }
            for client in 0..<options.clients {
                group.addTask { await self.client(client, until: faultsEnd, settleBy: end) }
            }
        }
        world.trace("workload ended")
        if options.workload == .shop { await auditShop() }
        for node in nodes where node.alive {
            node.system?.shutdown()
            node.task?.cancel()  // the bus and its consumers
            await node.task?.value
        }
    }

    // MARK: - Nodes

    private func start(_ node: Node) async throws {
        var configuration = ClusterConfiguration(
            nodeName: "n\(node.index)", host: node.host, port: 7000, secret: Array(repeating: 42, count: 32),
            defaultCallTimeout: .seconds(2), connectTimeout: .seconds(1), idleTimeout: .seconds(20),
            sweepInterval: .milliseconds(50), eventLoopGroup: world.loop
        )
        configuration.clock = world.clock
        configuration.logger = Logger(label: "troupe.actors")
        configuration.transport = world.network.transport(host: node.host)
        configuration.random = world.random
        world.etcd.reconnect(node.host)
        let membership = world.etcd.view(host: node.host)
        let flag = Flag()
        flag.value = true
        let store = world.store.handle(host: node.host, alive: { flag.value })
        let system = try await ClusterActorSystem.start(configuration, membership: membership, stateStore: store)
        _ = system.extensions.instance(WorkloadSettings.self) { settings }
        switch options.workload {
        case .transfers:
            system.register(SimWallet.self)
            system.register(SimTransfer.self)
        case .shop:
            Shop.register(system)
        }
        node.system = system
        node.alive = true
        node.flag = flag
        // Each simulated node's processes run in one task the cluster owns (`node.task`): cancelled when the node
        // crashes and at the end of the seed, so none outlives its node. Unowned by a Service on purpose: a crash
        // here is the abrupt end of a process, not a graceful stop.
        switch options.workload {
        case .transfers:
            node.task = Task { try? await system.run() }
        case .shop:
            // Each node relays its orders' outboxes to the bus and runs the shop's consumers (payment reminders,
            // sales counted from order events) in the bus's consumer groups.
            var busConfiguration = BusConfiguration()
            busConfiguration.clock = world.clock
            busConfiguration.random = world.random
            busConfiguration.instanceName = "n\(node.index)"
            let bus = try Bus(engine: busEngine, configuration: busConfiguration)
            Shop.relayEvents(to: bus, system: system)
            let consumers = [Shop.timeoutConsumer(bus: bus, system: system), Shop.salesConsumer(bus: bus, system: system)]
            node.task = Task {
                await withDiscardingTaskGroup { group in
                    group.addTask { try? await system.run() }
                    group.addTask { try? await bus.run() }
                    for consumer in consumers { group.addTask { try? await consumer.run() } }
                }
            }
        }
        world.trace("start n\(node.index) incarnation \(system.node.incarnation)")
    }

    private func crash(_ node: Node) {
        guard node.alive, let system = node.system else { return }
        world.trace("crash n\(node.index)")
        node.alive = false
        node.flag?.value = false
        world.network.crash(host: node.host)
        world.etcd.kill(host: node.host)
        node.task?.cancel()
        _ = system
    }

    // MARK: - Faults

    private func injectFaults(until end: ContinuousClock.Instant) async {
        let enabled = FaultSet.names.map(\.1).filter { options.faults.contains($0) }
        guard !enabled.isEmpty else { return }
        while true {
            try? await world.clock.sleep(for: .nanoseconds(world.nanoseconds(between: .seconds(1), and: .seconds(4))))
            guard world.clock.now < end else { break }
            let fault = enabled[world.below(enabled.count)]
            let heal = Duration.nanoseconds(world.nanoseconds(between: .seconds(1), and: .seconds(7)))
            switch fault {
            case .crash:
                let node = nodes[world.below(nodes.count)]
                guard node.alive, nodes.filter(\.alive).count > 1 else { continue }
                crash(node)
                after(heal) { if !node.alive { try? await self.start(node) } }
            case .partition:
                let a = world.below(nodes.count)
                let b = (a + 1 + world.below(nodes.count - 1)) % nodes.count
                let (hostA, hostB) = (nodes[a].host, nodes[b].host)
                world.trace("partition n\(a) | n\(b) for \(heal)")
                world.network.partition(hostA, hostB)
                after(heal) {
                    self.world.network.heal(hostA, hostB)
                    self.world.trace("healed n\(a) | n\(b)")
                }
            case .membership:
                let node = nodes[world.below(nodes.count)]
                world.etcd.cut(node.host)
                after(heal) { self.world.etcd.reconnect(node.host) }
            default:
                world.store.failureRate = 0.05 + Double(world.below(25)) / 100
                world.store.stallRate = 0.05
                world.trace("store faults \(world.store.failureRate) for \(heal)")
                after(heal) {
                    self.world.store.failureRate = 0
                    self.world.store.stallRate = 0
                    self.world.trace("store healthy")
                }
            }
        }
        // The faults stop: everything heals, every node runs.
        world.network.healAll()
        world.etcd.reconnectAll()
        world.store.failureRate = 0
        world.store.stallRate = 0
        for node in nodes where !node.alive { try? await start(node) }
        world.trace("faults over")
    }

    private func after(_ delay: Duration, _ action: @escaping @Sendable () async -> Void) {
        Task {
            try? await self.world.clock.sleep(for: delay)
            await action()
        }
    }

    // MARK: - Clients

    /// Funds the wallets, or stocks the shop and funds its users, before the faults begin.
    private func prepare(until end: ContinuousClock.Instant) async throws {
        switch options.workload {
        case .transfers:
            for wallet in wallets {
                _ = try await retry(until: end) { system in
                    try await system.actor(SimWallet.self, key: wallet).apply(op: "mint-\(wallet)", delta: Simulation.initialBalance)
                }
                minted.insert(wallet)
            }
        case .shop:
            // Not idempotent, so not retried: without faults yet, a failure here is a failure of the run.
            guard let system = nodes.first(where: \.alive)?.system else { throw SimulationError("no live node") }
            for sku in Self.skus.keys.sorted() { _ = try await system.actor(InventoryActor.self, key: sku).restock(Self.initialStock) }
            for user in users { _ = try await system.actor(AccountActor.self, key: user).deposit(Self.deposit) }
        }
    }

    private func client(_ client: Int, until faultsEnd: ContinuousClock.Instant, settleBy end: ContinuousClock.Instant) async {
        if options.workload == .shop { return await shopClient(client, until: faultsEnd, settleBy: end) }
        var number = 0
        while world.clock.now < faultsEnd {
            number += 1
            let from = wallets[world.below(wallets.count)]
            var to = wallets[world.below(wallets.count)]
            if to == from { to = wallets[(wallets.firstIndex(of: from)! + 1) % wallets.count] }
            let intent = Intent(key: "T\(client)-\(number)", from: from, to: to, amount: 1 + world.below(300))
            intents[intent.key] = intent
            world.trace("intent \(intent.key) \(from)→\(to) \(intent.amount)")
            do {
                let outcome = try await retry(until: end) { system in
                    try await system.actor(SimTransfer.self, key: intent.key).run(from: intent.from, to: intent.to, amount: intent.amount)
                }
                intents[intent.key]?.outcome = outcome
                world.trace("outcome \(intent.key) \(outcome)")
            } catch {
                world.trace("gave up \(intent.key): \(error)")
            }
            try? await world.clock.sleep(for: .nanoseconds(world.nanoseconds(between: .milliseconds(20), and: .milliseconds(300))))
        }
    }

    /// A shop client: orders under idempotency keys, each placed (retried with its key) until it is accepted.
    private func shopClient(_ client: Int, until faultsEnd: ContinuousClock.Instant, settleBy end: ContinuousClock.Instant) async {
        var number = 0
        let skus = Self.skus.keys.sorted()
        while world.clock.now < faultsEnd {
            number += 1
            let intent = "I\(client)-\(number)"
            let user = users[world.below(users.count)]
            let sku = skus[world.below(skus.count)]
            let quantity = 1 + world.below(3)
            intents[intent] = Intent(key: intent, from: user, to: sku, amount: quantity)
            world.trace("intent \(intent) \(user) \(quantity)×\(sku)")
            do {
                let payBy = world.clock.wallClockMilliseconds + Self.paymentTimeout.nanoseconds / 1_000_000
                let (info, input) = try Shop.newOrder(id: Shop.orderID(user: user, intent: intent), user: user, sku: sku,
                                                      quantity: quantity, price: Self.skus[sku]!, intent: intent, payBy: payBy)
                let order = try await retry(until: end) { system in
                    try await system.reference(OrderActor.self, key: info.id).place(info, sagaInput: input)
                }
                placed[intent] = order.id
                intents[intent]?.outcome = "placed"
                world.trace("placed \(intent) \(order.id) \(order.status.rawValue)")
            } catch {
                world.trace("gave up \(intent): \(error)")
            }
            try? await world.clock.sleep(for: .nanoseconds(world.nanoseconds(between: .milliseconds(20), and: .milliseconds(300))))
        }
    }

    /// The shop's own audit, through a live node, after the faults (it waits up to 30 s for every order to be
    /// final): stock and money conserved, nothing negative, every order final, charged once, no hold left,
    /// one order per intent, and the sales counted from the order events (outbox → bus → inbox) match.
    private func auditShop() async {
        guard let system = nodes.first(where: \.alive)?.system else { return liveViolations.append("no live node for the audit") }
        let expectation = ShopAudit.Expectation(
            stock: Self.skus.mapValues { _ in Self.initialStock }, deposits: Dictionary(uniqueKeysWithValues: users.map { ($0, Self.deposit) }),
            orders: placed.values.sorted()
        )
        // The audit reads through actor calls, which a cluster still settling (a restarted node joining) may fail:
        // it is read again, up to five times.
        for attempt in 1...5 {
            do {
                let audit = try await ShopAudit.run(system: system, expecting: expectation, settle: .seconds(30), salesWait: .seconds(20))
                world.trace("audit: \(audit.completed) completed, \(audit.cancelled) cancelled, \(audit.unfinished) unfinished")
                if !audit.ok { liveViolations += audit.problems.isEmpty ? ["the audit failed without a problem listed"] : audit.problems }
                return
            } catch {
                world.trace("audit attempt \(attempt) failed: \(error)")
                if attempt == 5 { liveViolations.append("the audit failed: \(error)") }
                try? await world.clock.sleep(for: .seconds(1))
            }
        }
    }

    /// Calls `body` through a random live node until it succeeds or `end` passes (then rethrows).
    private func retry<T: Sendable>(until end: ContinuousClock.Instant, _ body: (ClusterActorSystem) async throws -> T) async throws -> T {
        while true {
            let live = nodes.filter(\.alive)
            do {
                guard !live.isEmpty, let system = live[world.below(live.count)].system else { throw SimulationError("no live node") }
                return try await ClusterActorSystem.withCallTimeout(.seconds(2)) { try await body(system) }
            } catch {
                guard world.clock.now < end else { throw error }
                try? await world.clock.sleep(for: .nanoseconds(world.nanoseconds(between: .milliseconds(50), and: .milliseconds(800))))
            }
        }
    }

    // MARK: - Invariants

    /// Checks, from what the store holds after the run: every intent ended and was told its outcome; each
    /// outcome's effects happened exactly once (debit, credit, refund per transfer key); no transfer holds a
    /// debit without an outcome; every wallet's balance is its journal's sum; money is conserved.
    func check() -> [String] {
        var violations = liveViolations
        for intent in intents.values.sorted(by: { $0.key < $1.key }) where options.workload == .shop && intent.outcome == nil {
            violations.append("intent \(intent.key): never placed (no answer after the system settled)")
        }
        guard options.workload == .transfers else { return violations }
        let decoder = BinaryDecoder()
        var walletStates: [String: SimWallet.State] = [:]
        for (key, stored) in world.store.states(ofType: "SimWallet") {
            guard let state = try? decoder.decode(SimWallet.State.self, from: stored.bytes) else {
                violations.append("wallet \(key): stored state does not decode")
                continue
            }
            walletStates[key] = state
        }
        var transfers: [String: SimTransfer.State] = [:]
        for (key, stored) in world.store.states(ofType: "SimTransfer") {
            transfers[key] = try? decoder.decode(SimTransfer.State.self, from: stored.bytes)
        }
        // Effects per operation, counted over every wallet's journal.
        var effects: [String: [(wallet: String, delta: Int)]] = [:]
        var total = 0
        for (key, state) in walletStates.sorted(by: { $0.key < $1.key }) {
            total += state.balance
            let sum = state.journal.reduce(0) { $0 + $1.delta }
            if sum != state.balance { violations.append("wallet \(key): balance \(state.balance) but its journal sums to \(sum)") }
            for entry in state.journal { effects[entry.op, default: []].append((key, entry.delta)) }
            if state.balance < 0 { violations.append("wallet \(key): negative balance \(state.balance)") }
        }
        let expectedTotal = minted.count * Simulation.initialBalance
        if total != expectedTotal { violations.append("money not conserved: \(total) in wallets, \(expectedTotal) minted") }
        for wallet in minted where effects["mint-\(wallet)"]?.count != 1 {
            violations.append("wallet \(wallet): minted \(effects["mint-\(wallet)"]?.count ?? 0) times")
        }
        for intent in intents.values.sorted(by: { $0.key < $1.key }) {
            let stored = transfers[intent.key]
            guard let outcome = intent.outcome else {
                violations.append("intent \(intent.key): no outcome after the system settled (stored: \(stored?.outcome ?? "none"))")
                continue
            }
            if stored?.outcome != outcome {
                violations.append("intent \(intent.key): client told \(outcome), store says \(stored?.outcome ?? "nothing")")
            }
            let expected: [(String, String, Int)] = switch outcome {
            case "done": [("debit", intent.from, -intent.amount), ("credit", intent.to, intent.amount)]
            case "refunded": [("debit", intent.from, -intent.amount), ("refund", intent.from, intent.amount)]
            default: []
            }
            for step in ["debit", "credit", "refund"] {
                let found = effects["\(intent.key)/\(step)"] ?? []
                if let (_, wallet, delta) = expected.first(where: { $0.0 == step }) {
                    if found.count != 1 || found[0].wallet != wallet || found[0].delta != delta {
                        violations.append("intent \(intent.key) (\(outcome)): \(step) expected once on \(wallet), found \(found.map { "\($0.wallet) \($0.delta)" })")
                    }
                } else if !found.isEmpty {
                    violations.append("intent \(intent.key) (\(outcome)): unexpected \(step) \(found.map { "\($0.wallet) \($0.delta)" })")
                }
            }
        }
        for (key, transfer) in transfers.sorted(by: { $0.key < $1.key }) where transfer.debited && transfer.outcome == nil {
            violations.append("transfer \(key) holds a debit without an outcome")
        }
        return violations
    }
}
