public import TroupeCore
/// The one error type of TroupeMongo. Server errors carry MongoDB's `code`, `codeName` and error labels;
/// client-side failures (connect, timeout, protocol) carry a kind and a message.
public struct MongoError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure a ``MongoError`` is.
    public enum Kind: Sendable, Hashable {
        /// The server answered `ok: 0` (or a write error / write concern error).
        case server
        /// No connection could be made (refused, DNS, TLS, handshake).
        case connectFailed
        /// Authentication failed (wrong password, unknown user, mechanism unsupported).
        case authenticationFailed
        /// The connection broke while a request was in flight.
        case connectionClosed
        /// A deadline passed (operation, connect, or server selection).
        case timeout
        /// No server matched the read preference within the selection timeout.
        case serverSelection
        /// The peer sent bytes that violate the wire protocol.
        case protocolViolation
        /// The connection string or an option is invalid.
        case invalidConfiguration
        /// The client or a session was used incorrectly (closed client, ended session, ...).
        case invalidUse
        /// BSON encoding or decoding of a document failed.
        case bson
    }

    /// What kind of failure this is.
    public var kind: Kind
    /// What happened, in one line.
    public var message: String
    /// Server error code (e.g. 11000 for a duplicate key).
    public var code: Int?
    /// The server's name for the error code (`DuplicateKey`).
    public var codeName: String?
    /// Error labels: `TransientTransactionError`, `UnknownTransactionCommitResult`, `RetryableWriteError`, ...
    public var labels: [String]
    /// Individual write errors of a write command (index in the batch, code, message).
    public var writeErrors: [WriteError]
    /// The server's reply, when there was one.
    public var reply: String?
    /// The error underneath (a connection's), if any.
    public var underlying: (any Error)?

    /// A write error the server reported for one document of a write.
    public struct WriteError: Sendable, Hashable {
        /// The document's position in the batch.
        public var index: Int
        /// The server's error code.
        public var code: Int
        /// The server's message.
        public var message: String
    }

    /// An error of `kind`; see each property for the rest.
    public init(_ kind: Kind, _ message: String, code: Int? = nil, codeName: String? = nil, labels: [String] = [],
                writeErrors: [WriteError] = [], reply: String? = nil, underlying: (any Error)? = nil) {
        self.kind = kind
        self.message = message
        self.code = code
        self.codeName = codeName
        self.labels = labels
        self.writeErrors = writeErrors
        self.reply = reply
        self.underlying = underlying
    }

    /// Whether the server gave the error `label`.
    public func hasLabel(_ label: String) -> Bool { labels.contains(label) }

    /// A duplicate key (unique index violation), from a command error or a write error.
    public var isDuplicateKey: Bool { code == 11000 || writeErrors.contains { $0.code == 11000 } }

    /// Network errors and the server's retryable codes; a write retries only on these (and only once).
    var isRetryable: Bool {
        if kind == .connectionClosed || kind == .connectFailed { return true }
        if hasLabel("RetryableWriteError") { return true }
        guard let code else { return false }
        return Self.retryableCodes.contains(code)
    }

    static let retryableCodes: Set<Int> = [6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 63, 150, 134]

    public var description: String {
        var text = "MongoError.\(kind): \(message)"
        if let code { text += " (code \(code)\(codeName.map { " \($0)" } ?? ""))" }
        if !labels.isEmpty { text += " labels \(labels)" }
        if let underlying { text += " — \(underlying)" }
        return text
    }
}

extension MongoError: TransientError {
    /// The server could not be reached or answered in time, or said the operation may be retried.
    public var isTransient: Bool { isRetryable || kind == .timeout || kind == .serverSelection }
}
