import Distributed
public import TroupeActors

/// A bank account: the demo's virtual actor, keyed by account id, persisted with fencing.
public distributed actor Account: PersistentVirtualActor {
    public typealias ActorSystem = ClusterActorSystem

    /// The account's balance and how many operations changed it.
    public struct State: Codable, Sendable {
        /// The balance.
        public var balance: Int = 0
        /// How many deposits and withdrawals changed it.
        public var operations: Int = 0
    }

    public var persisted = Persisted(State())

    /// An activation on `actorSystem` (the runtime makes them).
    public init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    /// Adds `amount` and returns the new balance.
    public distributed func deposit(_ amount: Int) async throws -> Int {
        guard amount > 0 else { throw BankError.invalidAmount(amount) }
        return try await update { state in
            state.balance += amount
            state.operations += 1
            return state.balance
        }
    }

    /// Takes `amount` if the balance allows it and returns the new balance.
    public distributed func withdraw(_ amount: Int) async throws -> Int {
        guard amount > 0 else { throw BankError.invalidAmount(amount) }
        return try await update { state in
            guard state.balance >= amount else { throw BankError.insufficientFunds(balance: state.balance, requested: amount) }
            state.balance -= amount
            state.operations += 1
            return state.balance
        }
    }

    /// The balance.
    public distributed func balance() -> Int { state.balance }

    /// The node hosting this activation.
    public distributed func host() -> String { actorSystem.node.name }
}

/// Why the bank refuses an operation (insufficient funds, an invalid amount). It reaches callers as itself
/// from any node (``CodableRemoteError``).
public enum BankError: CodableRemoteError, Hashable, CustomStringConvertible {
    case invalidAmount(Int)
    case insufficientFunds(balance: Int, requested: Int)

    public var remoteErrorCode: String {
        switch self {
        case .invalidAmount: "invalid-amount"
        case .insufficientFunds: "insufficient-funds"
        }
    }

    public var description: String {
        switch self {
        case .invalidAmount(let amount): "invalid amount \(amount)"
        case .insufficientFunds(let balance, let requested): "insufficient funds: balance \(balance), requested \(requested)"
        }
    }
}

extension Error {
    /// Whether this error (local or from another node) is `insufficient-funds`.
    var isInsufficientFunds: Bool {
        if let bank = self as? BankError, case .insufficientFunds = bank { return true }
        return false
    }
}
