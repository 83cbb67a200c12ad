public import TroupeCore
/// An error raised by the ``ClusterActorSystem``: lifecycle, configuration, routing and calls.
///
/// Callers switch on ``code``; ``description`` is safe to show (no payloads or secrets).
public struct ActorSystemError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure an ``ActorSystemError`` is (extensible: compare with the static members).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case invalidConfiguration, systemShuttingDown, timeout, connectionClosed, peerUnreachable
            case handshakeFailed, actorNotFound, typeNotRegistered, targetNotAllowed, notOwner, fenced
            case noMemberHostsType, remoteError, protocolViolation, serialization, stateStore, invalidKey
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The configuration is invalid; the message says what to fix.
        public static let invalidConfiguration = Self(.invalidConfiguration)
        /// The local system is shutting down; in-flight and new calls fail with this code.
        public static let systemShuttingDown = Self(.systemShuttingDown)
        /// The call's deadline passed before a reply arrived.
        public static let timeout = Self(.timeout)
        /// The connection carrying the call closed (the peer died or was shut down) before the reply.
        public static let connectionClosed = Self(.connectionClosed)
        /// The peer could not be connected to within the connect timeout.
        public static let peerUnreachable = Self(.peerUnreachable)
        /// The peer refused our handshake or sent an invalid one (secret, cluster name, version).
        public static let handshakeFailed = Self(.handshakeFailed)
        /// No actor with that identity lives on the target node.
        public static let actorNotFound = Self(.actorNotFound)
        /// The virtual actor type is not registered on the node that received the call.
        public static let typeNotRegistered = Self(.typeNotRegistered)
        /// The call named a distributed target that the actor's type does not allow.
        public static let targetNotAllowed = Self(.targetNotAllowed)
        /// The receiving node does not own the key under its view of the membership.
        public static let notOwner = Self(.notOwner)
        /// A state write lost its compare-and-set: this activation was stale and has been deactivated.
        public static let fenced = Self(.fenced)
        /// No live member hosts the virtual actor type.
        public static let noMemberHostsType = Self(.noMemberHostsType)
        /// The remote target threw; see ``RemoteCallError`` in ``ActorSystemError/underlying``.
        public static let remoteError = Self(.remoteError)
        /// The peer sent something the protocol does not allow.
        public static let protocolViolation = Self(.protocolViolation)
        /// Arguments or a result could not be encoded or decoded.
        public static let serialization = Self(.serialization)
        /// The actor state store failed.
        public static let stateStore = Self(.stateStore)
        /// An actor key is empty or longer than ``ActorID/maxKeyBytes``: a request's fault, not the system's.
        public static let invalidKey = Self(.invalidKey)

        public var description: String { value.rawValue }
        var wireValue: String { value.rawValue }
        init?(wireValue: String) {
            guard let value = Value(rawValue: wireValue) else { return nil }
            self.init(value)
        }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What happened, for operators (names actors and nodes, never state).
    public var message: String
    /// The error underneath, if any.
    public var underlying: (any Error)?
    /// Where it was thrown.
    public var file: String
    /// The line it was thrown on.
    public var line: Int

    /// An error of kind `code`.
    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    public var description: String { "\(code): \(message)" }

    public var debugDescription: String {
        var text = "ActorSystemError(\(code)): \(message) at \(file):\(line)"
        if let underlying { text += " underlying: \(String(reflecting: underlying))" }
        return text
    }
}

/// The structured form of an error thrown by a remote distributed target.
///
/// Carries the thrower's error type name, a code and its message, so callers can react to
/// remote failures without sharing error types across nodes.
public struct RemoteCallError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    /// A code: the `ActorSystemError` code name for system errors, or the error's `code`
    /// when it conforms to ``RemoteErrorCode``, otherwise `"error"`.
    public var code: String
    /// `String(reflecting:)` of the remote error's type.
    public var type: String
    /// `String(describing:)` of the remote error.
    public var message: String

    /// An error a remote actor threw: its stable code, its type's name and its description.
    public init(code: String, type: String, message: String) {
        self.code = code
        self.type = type
        self.message = message
    }

    public var description: String { "remote \(type) [\(code)]: \(message)" }
}

extension RemoteCallError: TransientError {
    /// The code of a remote error that has no code of its own and is transient (`TransientError`).
    public static let transientCode = "transient"
    /// Whether the remote side said a retry can succeed.
    public var isTransient: Bool { code == Self.transientCode }
}

/// Adopt on your errors to give remote callers a stable code instead of `"error"`.
public protocol RemoteErrorCode: Error {
    /// The stable code remote callers see in ``RemoteCallError/code``.
    var remoteErrorCode: String { get }
}

/// An error that reaches its caller as itself, wherever the actor ran: the callee's node encodes it (its
/// `Codable` form, in the runtime's binary format) and the caller's node decodes the same type and throws it,
/// so `catch let decline as Decline` works for remote and local calls alike. The caller's system decodes only
/// the types registered on it (``ClusterActorSystem/registerRemoteError(_:)``); for another type, or bytes
/// that do not decode, the caller gets a ``RemoteCallError`` with the error's code instead.
public protocol CodableRemoteError: RemoteErrorCode, Codable, Sendable {}

extension ActorSystemError: ClassifiedError {
    /// A key too long to be any actor's is the request's fault; a timeout and the transient failures are
    /// retryable; anything else is a failure.
    public var failureClass: FailureClass {
        switch code {
        case .invalidKey: .invalidRequest
        case .timeout: .timeout
        default: isTransient ? .unavailable : .failure
        }
    }

    public var failureName: String { "\(code)" }

    /// The message of an invalid key (it names the limit, not the key); nothing for the others.
    public var publicDetail: String? { code == .invalidKey ? message : nil }
}

extension ActorSystemError: TransientError {
    /// The cluster is changing (a member died, an actor moved, a call timed out) or the state store failed
    /// for a reason that may pass: a retry, possibly on another member, can succeed.
    public var isTransient: Bool {
        switch code {
        case .timeout, .peerUnreachable, .connectionClosed, .noMemberHostsType, .systemShuttingDown, .notOwner, .fenced: return true
        case .stateStore: return underlying.map(TroupeCore.isTransient) ?? true
        default: return underlying.map(TroupeCore.isTransient) ?? false
        }
    }
}
