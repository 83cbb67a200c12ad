import GRPCCore
public import TroupeCore

/// An error of the etcd client: gRPC failures mapped to codes callers can act on.
public struct EtcdError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure an ``EtcdError`` is (extensible: compare with the static members).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case invalidConfiguration, unavailable, timeout, compacted, leaseNotFound, leaseExpired
            case authenticationFailed, permissionDenied, invalidArgument, canceled, server, watchCanceled
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The configuration is invalid; the message says what to fix.
        public static let invalidConfiguration = Self(.invalidConfiguration)
        /// No endpoint answered (all down, or a partition).
        public static let unavailable = Self(.unavailable)
        /// The call's deadline passed.
        public static let timeout = Self(.timeout)
        /// The requested revision was compacted.
        public static let compacted = Self(.compacted)
        /// The lease does not exist (never granted, revoked or expired).
        public static let leaseNotFound = Self(.leaseNotFound)
        /// The lease expired while being kept alive (the keys attached to it are gone).
        public static let leaseExpired = Self(.leaseExpired)
        /// The user name or password was refused.
        public static let authenticationFailed = Self(.authenticationFailed)
        /// The user may not do this.
        public static let permissionDenied = Self(.permissionDenied)
        /// etcd rejected the request as malformed.
        public static let invalidArgument = Self(.invalidArgument)
        /// The call was cancelled.
        public static let canceled = Self(.canceled)
        /// Another server-side failure; see the message.
        public static let server = Self(.server)
        /// The server cancelled a watch for a reason other than compaction.
        public static let watchCanceled = Self(.watchCanceled)

        public var description: String { value.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What happened, in one line.
    public var message: String
    /// The error underneath (gRPC's), if any.
    public var underlying: (any Error)?

    /// An error of kind `code` saying `message`.
    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "\(code): \(message)" }
    public var debugDescription: String {
        "EtcdError(\(code)): \(message)" + (underlying.map { " underlying: \(String(reflecting: $0))" } ?? "")
    }

    /// Maps a gRPC error (etcd puts its reason in the status message, e.g. `etcdserver: mvcc: required revision has been compacted`).
    static func from(_ error: RPCError, operation: String) -> EtcdError {
        let text = error.message
        switch error.code {
        case .unavailable:
            return EtcdError(.unavailable, "\(operation): etcd is unavailable", underlying: error)
        case .deadlineExceeded:
            return EtcdError(.timeout, "\(operation): deadline exceeded", underlying: error)
        case .cancelled:
            return EtcdError(.canceled, "\(operation) was cancelled", underlying: error)
        case .permissionDenied:
            return EtcdError(.permissionDenied, "\(operation): permission denied", underlying: error)
        case .unauthenticated:
            return EtcdError(.authenticationFailed, "\(operation): \(text)", underlying: error)
        case .notFound where text.contains("lease not found"):
            return EtcdError(.leaseNotFound, "\(operation): lease not found", underlying: error)
        case .outOfRange where text.contains("compacted"):
            return EtcdError(.compacted, "\(operation): the revision was compacted", underlying: error)
        case .invalidArgument:
            if text.contains("authentication failed") {
                return EtcdError(.authenticationFailed, "\(operation): wrong user name or password", underlying: error)
            }
            return EtcdError(.invalidArgument, "\(operation): \(text)", underlying: error)
        case .failedPrecondition where text.contains("authentication failed"):
            return EtcdError(.authenticationFailed, "\(operation): wrong user name or password", underlying: error)
        default:
            return EtcdError(.server, "\(operation): \(text)", underlying: error)
        }
    }
}

extension EtcdError: TransientError {
    /// etcd unreachable, slow, or between leaders.
    public var isTransient: Bool { code == .unavailable || code == .timeout }
}
