public import TroupeActors
public import TroupeCore

/// The shop's own section of a node's or gateway's configuration file (`"shop": {…}`, beside the framework's
/// sections; read as strictly: an unknown key in it is an error).
public struct ShopSettings: Codable, Sendable, Equatable {
    /// An order not completed by then is cancelled by a delayed message (default 900).
    public var paymentTimeoutSeconds: Int?
    /// PBKDF2 rounds for new passwords (default 210,000).
    public var passwordRounds: Int?
    /// Seconds between the order reconciler's passes on each node (default 300).
    public var reconcileIntervalSeconds: Int?
    /// Seconds an order may stay unfinished, or a final order hold stock or money, before the reconciler
    /// acts (default: twice the payment timeout, at least 1,800).
    public var reconcileAfterSeconds: Int?

    /// The key of the section in the configuration file.
    public static let section = "shop"

    /// The defaults (see each key).
    public init() {}

    /// - Throws: ``ConfigurationError`` naming the key to fix.
    public func validate() throws {
        for (key, value) in [("paymentTimeoutSeconds", paymentTimeoutSeconds), ("passwordRounds", passwordRounds),
                             ("reconcileIntervalSeconds", reconcileIntervalSeconds), ("reconcileAfterSeconds", reconcileAfterSeconds)] {
            if let value, value < 1 { throw ConfigurationError("shop.\(key) must be at least 1") }
        }
    }
}

/// A request the shop's domain refuses (a quantity out of range, an unknown product, a reused idempotency key).
/// Classified (``ClassifiedError``), so the gateway answers it with the right status without the domain knowing
/// about HTTP.
public struct ShopError: ClassifiedError, CustomStringConvertible {
    /// How the gateway classifies it (invalid request, not found, conflict…).
    public var failureClass: FailureClass
    public var failureName: String
    public var publicTitle: String?
    public var publicDetail: String?

    /// A refusal of `failureClass` named `name`, with the title and detail the client sees.
    public init(_ failureClass: FailureClass, _ name: String, title: String, detail: String? = nil) {
        self.failureClass = failureClass
        self.failureName = name
        self.publicTitle = title
        self.publicDetail = detail
    }

    public var description: String { [publicTitle, publicDetail].compactMap { $0 }.joined(separator: ": ") }
}
