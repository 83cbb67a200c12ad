public import Logging
import Synchronization
import TroupeActors
import TroupeStore
import TroupeCore
import TroupeActorsStore

/// The `troupe demo` workload: N nodes in one process over loopback TCP, bank accounts as virtual
/// actors, concurrent transfers from every node, then invariant checks.
public struct BankDemo: Sendable {
    /// What the bank demo runs: nodes, accounts, clients, duration.
    public struct Options: Sendable {
        /// Nodes in the process (3).
        public var nodes = 3
        /// Accounts (1,000).
        public var accounts = 1_000
        /// Each account's starting balance (1,000).
        public var initialBalance = 1_000
        /// Stop after this long…
        public var duration: Duration = .seconds(5)
        /// …or after this many transfers, whichever comes first (nil: duration only).
        public var transfers: Int?
        /// Transfers in flight at once (64).
        public var concurrency = 64
        /// A node joins halfway through, so keys move while transfers run.
        public var joinMidway = true
        /// The SQLite file for actor state; nil keeps the database in memory.
        public var databasePath: String?
        /// Where the demo logs (nowhere by default).
        public var logger = Logger(label: "troupe.demo", factory: { _ in SwiftLogNoOpLogHandler() })

        /// The defaults (see each option).
        public init() {}
    }

    /// What the bank demo measured and whether every invariant held.
    public struct Summary: Sendable {
        /// Nodes that ran.
        public var nodes: Int
        /// Accounts.
        public var accounts: Int
        /// Transfers made.
        public var transfers: Int
        /// Transfers refused for insufficient funds.
        public var rejected: Int
        /// Transfers that failed otherwise.
        public var failed: Int
        /// Actor calls made.
        public var calls: Int
        /// How long the transfers ran.
        public var seconds: Double
        /// Median transfer latency.
        public var p50Milliseconds: Double
        /// 99th percentile transfer latency.
        public var p99Milliseconds: Double
        /// Live activations per node at the end.
        public var activationsPerNode: [String: Int]
        /// Writes refused by fencing.
        public var fenced: Int
        /// The sum of balances equals what was deposited.
        public var moneyConserved: Bool
        /// No balance went below zero.
        public var noNegativeBalance: Bool
        /// Every account had one activation at the end.
        public var singleActivation: Bool
        /// The money deposited.
        public var expectedTotal: Int
        /// The sum of the balances at the end.
        public var actualTotal: Int

        /// Whether every invariant held and transfers were made.
        public var ok: Bool { moneyConserved && noNegativeBalance && singleActivation && transfers > 0 }
        /// Transfers a second.
        public var throughput: Double { seconds > 0 ? Double(transfers) / seconds : 0 }
    }

    /// What the demo runs.
    public let options: Options

    /// A demo of `options`.
    public init(options: Options) {
        self.options = options
    }

    public func run() async throws -> Summary {
        let membership = InMemoryMembership()
        // Actor state in the embedded engine: its own table in SQLite (a node uses MongoDB documents).
        let sqlite = try await SQLiteDocumentStore.open(path: options.databasePath)
        let store = try await SQLiteActorStateStore(store: sqlite)
        let secret = (0..<32).map { _ in UInt8.random(in: .min ... .max) }
        func configuration(_ name: String) -> ClusterConfiguration {
            ClusterConfiguration(clusterName: "troupe-demo", nodeName: name, secret: secret, logger: options.logger)
        }
        var systems: [ClusterActorSystem] = []
        for index in 1...options.nodes {
            let system = try await ClusterActorSystem.start(configuration("node-\(index)"), membership: membership, stateStore: store)
            system.register(Account.self)
            system.registerRemoteError(BankError.self)
            systems.append(system)
        }
        let nodes = systems
        let joiner = options.joinMidway
            ? try await ClusterActorSystem.start(configuration("node-\(options.nodes + 1)"), membership: membership, stateStore: store)
            : nil
        joiner?.register(Account.self)
        joiner?.registerRemoteError(BankError.self)

        do {
            let summary = try await workload(nodes: nodes, joiner: joiner)
            await sqlite.close()
            return summary
        } catch {
            await sqlite.close()
            throw error
        }
    }

    private func workload(nodes: [ClusterActorSystem], joiner: ClusterActorSystem?) async throws -> Summary {
        return try await withThrowingTaskGroup(of: Summary?.self) { group in
            for system in nodes { group.addTask { try await system.run(); return nil } }
            defer { for system in nodes + [joiner].compactMap({ $0 }) { system.shutdown() } }
            try await waitForMembers(nodes, count: nodes.count)
            let (joinSignal, join) = AsyncStream.makeStream(of: Void.self)
            if let joiner {
                // The joiner's run() joins the membership; the keys it wins move to it mid-workload.
                group.addTask {
                    for await _ in joinSignal {
                        try await joiner.run()
                        break
                    }
                    return nil
                }
            }
            let summary = try await workload(nodes, joiner: joiner, join: join)
            for system in nodes + [joiner].compactMap({ $0 }) { system.shutdown() }
            try await group.waitForAll()
            return summary
        }
    }

    private func workload(
        _ nodes: [ClusterActorSystem], joiner: ClusterActorSystem?, join: AsyncStream<Void>.Continuation
    ) async throws -> Summary {
        defer { join.finish() }
        let accounts = (0..<options.accounts).map { "acct-\($0)" }
        // Open every account through a random node.
        try await forEach(accounts, width: options.concurrency) { index, key in
            _ = try await nodes[index % nodes.count].actor(Account.self, key: key).deposit(options.initialBalance)
        }
        let stats = Locked(WorkloadStats())
        let start = ContinuousClock.now
        let deadline = start + options.duration
        let limit = options.transfers ?? Int.max
        let joinAt = start + options.duration / 2
        var all = nodes
        try await withThrowingTaskGroup(of: Void.self) { workers in
            if joiner != nil {
                workers.addTask {
                    try await Task.sleep(until: joinAt)
                    join.yield()
                }
            }
            for worker in 0..<options.concurrency {
                workers.addTask {
                    var generator = SystemRandomNumberGenerator()
                    var sequence = worker
                    while ContinuousClock.now < deadline {
                        let ticket = stats.withLock { stats -> Bool in
                            guard stats.started < limit else { return false }
                            stats.started += 1
                            return true
                        }
                        guard ticket else { return }
                        sequence += options.concurrency
                        let caller = nodes[sequence % nodes.count]
                        let fromIndex = Int.random(in: 0..<accounts.count, using: &generator)
                        let offset = Int.random(in: 1..<max(accounts.count, 2), using: &generator)
                        let from = accounts[fromIndex]
                        let to = accounts[(fromIndex + offset) % accounts.count]
                        let amount = Int.random(in: 1...100, using: &generator)
                        let began = ContinuousClock.now
                        let outcome = await transfer(amount, from: from, to: to, via: caller)
                        let elapsed = ContinuousClock.now - began
                        stats.withLock { $0.record(outcome, elapsed: elapsed) }
                    }
                }
            }
            try await workers.waitForAll()
        }
        let seconds = (ContinuousClock.now - start).seconds
        if let joiner {
            all.append(joiner)
            try await waitForMembers(all, count: all.count)
        }
        return try await check(all, accounts: accounts, stats: stats.value, seconds: seconds)
    }

    enum Outcome { case done(calls: Int), rejected(calls: Int), failed(calls: Int) }

    /// Withdraw, then deposit; if the deposit cannot be made, the withdrawal is compensated.
    private func transfer(_ amount: Int, from: String, to: String, via caller: ClusterActorSystem) async -> Outcome {
        do {
            _ = try await retrying { try await caller.actor(Account.self, key: from).withdraw(amount) }
        } catch {
            return error.isInsufficientFunds ? .rejected(calls: 1) : .failed(calls: 1)
        }
        do {
            _ = try await retrying { try await caller.actor(Account.self, key: to).deposit(amount) }
            return .done(calls: 2)
        } catch {
            // Compensate: the money must go back. Retried for up to 30 s; if the cluster cannot take
            // it back by then, the invariant check reports the loss.
            let giveUp = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < giveUp {
                if (try? await retrying(attempts: 50, { try await caller.actor(Account.self, key: from).deposit(amount) })) != nil { break }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return .failed(calls: 3)
        }
    }

    /// Retries calls that failed because the key moved (fenced) mid-call; they changed nothing.
    private func retrying<T>(attempts: Int = 5, _ body: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await body()
            } catch let error as ActorSystemError where error.code == .fenced && attempt < attempts {
                try await Task.sleep(for: .milliseconds(attempt))
            }
        }
    }

    private func check(_ systems: [ClusterActorSystem], accounts: [String], stats: WorkloadStats, seconds: Double) async throws -> Summary {
        try await Task.sleep(for: .milliseconds(200))  // let moved keys be handed off
        let total = Locked(0)
        let negative = Locked(false)
        try await forEach(accounts, width: options.concurrency) { index, key in
            let balance = try await systems[index % systems.count].actor(Account.self, key: key).balance()
            total.withLock { $0 += balance }
            if balance < 0 { negative.withLock { $0 = true } }
        }
        var activeOn: [String: Int] = [:]
        var perNode: [String: Int] = [:]
        for system in systems {
            let active = system.activeActorIDs.filter { $0.type == Account.virtualTypeName }
            perNode[system.node.name] = active.count
            for id in active { activeOn[id.key, default: 0] += 1 }
        }
        let expected = accounts.count * options.initialBalance
        let actual = total.value
        return Summary(
            nodes: systems.count, accounts: accounts.count, transfers: stats.done, rejected: stats.rejected, failed: stats.failed,
            calls: stats.calls, seconds: seconds,
            p50Milliseconds: stats.percentile(0.50), p99Milliseconds: stats.percentile(0.99),
            activationsPerNode: perNode, fenced: systems.map(\.statistics.fenced).reduce(0, +),
            moneyConserved: actual == expected, noNegativeBalance: !negative.value,
            singleActivation: activeOn.values.allSatisfy { $0 == 1 } && activeOn.count == accounts.count,
            expectedTotal: expected, actualTotal: actual
        )
    }

    private func waitForMembers(_ systems: [ClusterActorSystem], count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while systems.contains(where: { $0.members.count != count }) {
            guard ContinuousClock.now < deadline else { throw ActorSystemError(.timeout, "the demo cluster did not form") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    private func forEach(_ keys: [String], width: Int, _ body: @escaping @Sendable (Int, String) async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            for _ in 0..<min(width, keys.count) {
                let index = next
                group.addTask { try await body(index, keys[index]) }
                next += 1
            }
            while try await group.next() != nil, next < keys.count {
                let index = next
                group.addTask { try await body(index, keys[index]) }
                next += 1
            }
            try await group.waitForAll()
        }
    }
}

struct WorkloadStats: Sendable {
    var started = 0
    var done = 0
    var rejected = 0
    var failed = 0
    var calls = 0
    var latencies: [Double] = []

    mutating func record(_ outcome: BankDemo.Outcome, elapsed: Duration) {
        switch outcome {
        case .done(let calls): done += 1; self.calls += calls
        case .rejected(let calls): rejected += 1; self.calls += calls
        case .failed(let calls): failed += 1; self.calls += calls
        }
        latencies.append(elapsed.seconds * 1000)
    }

    func percentile(_ p: Double) -> Double {
        guard !latencies.isEmpty else { return 0 }
        let sorted = latencies.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}
