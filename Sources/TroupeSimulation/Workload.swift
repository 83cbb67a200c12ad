import Distributed
import TroupeActors
import TroupeCore

/// Settings the workload's actors read from their system (one per simulated process, never shared).
final class WorkloadSettings: Sendable {
    let mutation: Mutation?
    /// Wallets that refuse credits (a transfer to one is compensated).
    let frozen: Set<String>
    /// The instant virtual time 0 stands for (idempotency keys record virtual time).
    let origin: ContinuousClock.Instant

    init(mutation: Mutation?, frozen: Set<String>, origin: ContinuousClock.Instant) {
        self.mutation = mutation
        self.frozen = frozen
        self.origin = origin
    }

    static func of(_ system: ClusterActorSystem) -> WorkloadSettings {
        system.extensions.instance(WorkloadSettings.self) { WorkloadSettings(mutation: nil, frozen: [], origin: .now) }
    }
}

/// A wallet: a balance, the journal of every operation applied, and the answer given to each operation key,
/// so that a repeated operation (a retry, or the same step run twice at once) is applied — or refused — once.
distributed actor SimWallet: PersistentVirtualActor {
    typealias ActorSystem = ClusterActorSystem

    struct Entry: Codable, Sendable, Hashable {
        var op: String
        var delta: Int
    }

    struct Seen: Codable, Sendable, Hashable {
        var answer: String
        var at: Int64
    }

    struct State: Codable, Sendable {
        var balance = 0
        var journal: [Entry] = []
        /// Idempotency keys: operation → its answer and the virtual time it was given.
        var seen: [String: Seen] = [:]
    }

    var persisted = Persisted(State())

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    /// Applies `delta` once per `op` and answers "applied", or refuses a debit past the balance
    /// ("insufficient-funds") or a credit to a frozen wallet ("frozen"). The answer is recorded with the
    /// operation's key: asked again (a retry), the same operation gets the same answer.
    distributed func apply(op: String, delta: Int) async throws -> String {
        let settings = WorkloadSettings.of(actorSystem)
        let now = (actorSystem.clock.now - settings.origin).nanoseconds
        let key = id.key
        let node = actorSystem.node.name
        let answer = try await update { state -> String in
            if settings.mutation == .releaseIdempotencyKey {
                // Mutation: keys are released after two seconds.
                state.seen = state.seen.filter { now - $0.value.at < 2_000_000_000 }
            }
            if let seen = state.seen[op] { return seen.answer }
            var answer = "applied"
            if delta < 0, state.balance + delta < 0 {
                answer = "insufficient-funds"
            } else if delta > 0, settings.frozen.contains(key), op.hasSuffix("/credit") {
                answer = "frozen"
            } else {
                state.balance += delta
                state.journal.append(Entry(op: op, delta: delta))
            }
            state.seen[op] = Seen(answer: answer, at: now)
            return answer
        }
        SimulationWorld.current?.trace("\(key)@\(node) \(op) \(delta): \(answer) v\(persisted.version) balance \(state.balance)")
        return answer
    }
}

/// One transfer between two wallets, keyed by the client's idempotency key: debit, then credit, and if
/// the credit is refused, refund the debit (compensation). Progress is stored, so a retry or a new
/// activation after a crash continues where the last one stopped.
distributed actor SimTransfer: PersistentVirtualActor {
    typealias ActorSystem = ClusterActorSystem

    struct State: Codable, Sendable {
        var from = ""
        var to = ""
        var amount = 0
        var debited = false
        var outcome: String?
    }

    var persisted = Persisted(State())

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    /// Runs the transfer (or reports how it ended): "done", "declined" (insufficient funds) or "refunded".
    distributed func run(from: String, to: String, amount: Int) async throws -> String {
        if let outcome = state.outcome { return outcome }
        if state.from.isEmpty {
            try await update { $0.from = from; $0.to = to; $0.amount = amount }
        }
        let transfer = state
        let key = id.key
        if !transfer.debited {
            let debit = try await actorSystem.actor(SimWallet.self, key: transfer.from).apply(op: "\(key)/debit", delta: -transfer.amount)
            if debit != "applied" { return try await finish("declined") }
            try await update { $0.debited = true }
        }
        let credit = try await actorSystem.actor(SimWallet.self, key: transfer.to).apply(op: "\(key)/credit", delta: transfer.amount)
        if credit != "applied" {
            if WorkloadSettings.of(actorSystem).mutation != .skipCompensation {
                _ = try await actorSystem.actor(SimWallet.self, key: transfer.from).apply(op: "\(key)/refund", delta: transfer.amount)
            }
            return try await finish("refunded")
        }
        return try await finish("done")
    }

    private func finish(_ outcome: String) async throws -> String {
        try await update { $0.outcome = $0.outcome ?? outcome }
        return state.outcome ?? outcome
    }
}
