public import TroupeCore
/// An error of the cache building blocks (configuration, limits, locks); store failures keep their own type.
public struct CacheError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure a ``CacheError`` is (extensible: compare with the static members).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable { case invalidConfiguration, lockTimeout, lockLost, corrupt, loaderTimeout, conflict }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// A setting is invalid; the message says which.
        public static let invalidConfiguration = Self(.invalidConfiguration)
        /// The lock was not acquired before the deadline.
        public static let lockTimeout = Self(.lockTimeout)
        /// The lock expired or was taken over; the holder must stop.
        public static let lockLost = Self(.lockLost)
        /// A stored entry could not be decoded.
        public static let corrupt = Self(.corrupt)
        /// Waiting for another process to rebuild the entry took too long.
        public static let loaderTimeout = Self(.loaderTimeout)
        /// An entry changed under every attempt to change it (compare-and-set lost each time).
        public static let conflict = Self(.conflict)

        public var description: String { value.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What happened, in one line.
    public var message: String
    /// The error underneath, if any.
    public var underlying: (any Error)?

    /// An error of `code` saying `message`, with its `underlying` cause.
    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "\(code): \(message)" }
}

extension CacheError: TransientError {
    /// Waiting for a lock or for another process's rebuild took too long, or a compare-and-set kept losing: trying again can succeed.
    public var isTransient: Bool {
        if code == .lockTimeout || code == .loaderTimeout || code == .conflict { return true }
        return underlying.map(TroupeCore.isTransient) ?? false
    }
}
