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

/// Why a wallet refused an operation (a business answer, not a fault).
enum WalletRefusal: Error, RemoteErrorCode, CustomStringConvertible {
    case insufficientFunds
    case frozen

    var remoteErrorCode: String {
        switch self {
        case .insufficientFunds: "insufficient-funds"
        case .frozen: "frozen"
        }
    }

    var description: String { remoteErrorCode }

    /// The refusal `error` carries, local or from another node.
    static func of(_ error: any Error) -> String? {
        if let refusal = error as? WalletRefusal { return refusal.remoteErrorCode }
        if let remote = error as? RemoteCallError, ["insufficient-funds", "frozen"].contains(remote.code) { return remote.code }
        return nil
    }
}

/// A wallet: a balance, the journal of every operation applied, and the idempotency keys of those
/// operations, so that a repeated operation (a retry) is applied once.
distributed actor SimWallet: PersistentVirtualActor {
    typealias ActorSystem = ClusterActorSystem

    struct Entry: Codable, Sendable, Hashable {
        var op: String
        var delta: Int
    }

    struct State: Codable, Sendable {
        var balance = 0
        var journal: [Entry] = []
        /// Idempotency keys: operation → virtual milliseconds when applied.
        var seen: [String: Int64] = [:]
    }

    var persisted = Persisted(State())

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    /// Applies `delta` once per `op`; refuses a debit past the balance and a credit to a frozen wallet.
    distributed func apply(op: String, delta: Int) async throws {
        let settings = WorkloadSettings.of(actorSystem)
        let now = (actorSystem.clock.now - settings.origin).nanoseconds
        let key = id.key
        try await update { state in
            if settings.mutation == .releaseIdempotencyKey {
                // Mutation: keys are released after two seconds.
                state.seen = state.seen.filter { now - $0.value < 2_000_000_000 }
            }
            guard state.seen[op] == nil else { return }
            if delta < 0, state.balance + delta < 0 { throw WalletRefusal.insufficientFunds }
            if delta > 0, settings.frozen.contains(key), op.hasSuffix("/credit") { throw WalletRefusal.frozen }
            state.balance += delta
            state.journal.append(Entry(op: op, delta: delta))
            state.seen[op] = now
        }
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
            do {
                try await actorSystem.actor(SimWallet.self, key: transfer.from).apply(op: "\(key)/debit", delta: -transfer.amount)
            } catch where WalletRefusal.of(error) == "insufficient-funds" {
                return try await finish("declined")
            }
            try await update { $0.debited = true }
        }
        do {
            try await actorSystem.actor(SimWallet.self, key: transfer.to).apply(op: "\(key)/credit", delta: transfer.amount)
        } catch where WalletRefusal.of(error) == "frozen" {
            if WorkloadSettings.of(actorSystem).mutation != .skipCompensation {
                try await actorSystem.actor(SimWallet.self, key: transfer.from).apply(op: "\(key)/refund", delta: transfer.amount)
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
