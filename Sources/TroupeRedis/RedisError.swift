import TroupeRESP
public import TroupeCore

/// An error of the Redis client: a server error reply, a connection or protocol failure, a timeout.
///
/// ``description`` never includes the server message (it may echo keys or values); read
/// ``serverMessage`` or ``debugDescription`` for details.
public struct RedisError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure a ``RedisError`` is (extensible: compare with the static members).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case server, connectionClosed, connectFailed, timeout, decoding, protocolViolation
            case invalidConfiguration, unexpectedReply, clientShutdown, crossSlot
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The server replied with an error; its text is in ``RedisError/serverMessage``.
        public static let server = Self(.server)
        /// The connection closed before the reply arrived.
        public static let connectionClosed = Self(.connectionClosed)
        /// No connection could be made (refused, unreachable, handshake or AUTH failed).
        public static let connectFailed = Self(.connectFailed)
        /// The reply did not arrive before the command's deadline; the connection was closed.
        public static let timeout = Self(.timeout)
        /// The server sent bytes that are not valid RESP; the connection was closed.
        public static let decoding = Self(.decoding)
        /// The server sent a reply nobody asked for; the connection was closed.
        public static let protocolViolation = Self(.protocolViolation)
        /// The configuration is invalid; the message says what to fix.
        public static let invalidConfiguration = Self(.invalidConfiguration)
        /// The reply has a shape the typed command does not expect.
        public static let unexpectedReply = Self(.unexpectedReply)
        /// The client was shut down.
        public static let clientShutdown = Self(.clientShutdown)
        /// A multi-key command names keys in different hash slots (Redis Cluster).
        public static let crossSlot = Self(.crossSlot)

        public var description: String { value.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What went wrong, safe to show.
    public var message: String
    /// The server's error text (`ERR …`, `WRONGTYPE …`, `NOSCRIPT …`), never part of ``description``.
    public var serverMessage: String?
    /// The error underneath (a connection's), if any.
    public var underlying: (any Error)?
    /// The file it was thrown in.
    public var file: String
    /// The line it was thrown on.
    public var line: Int

    /// An error of kind `code` saying `message`.
    public init(_ code: Code, _ message: String, serverMessage: String? = nil, underlying: (any Error)? = nil,
                file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.serverMessage = serverMessage
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    /// The first word of a server error (`ERR`, `WRONGTYPE`, `MOVED`, `NOSCRIPT`, …).
    public var serverErrorPrefix: String? {
        serverMessage.map { String($0.prefix { $0 != " " }) }
    }

    public var description: String { "\(code): \(message)" }

    public var debugDescription: String {
        var text = "RedisError(\(code)): \(message)"
        if let serverMessage { text += " server: \(serverMessage)" }
        if let underlying { text += " underlying: \(String(reflecting: underlying))" }
        return text + " at \(file):\(line)"
    }

    static func server(_ value: RESPValue, command: String) -> RedisError {
        RedisError(.server, "\(command) failed", serverMessage: value.string)
    }
}

extension RedisError: TransientError {
    /// Connection failures, timeouts and the replies of a server that is loading or busy can pass.
    public var isTransient: Bool {
        switch code {
        case .connectionClosed, .connectFailed, .timeout, .clientShutdown: return true
        case .server:
            let message = serverMessage ?? ""
            return message.hasPrefix("LOADING") || message.hasPrefix("BUSY") || message.hasPrefix("TRYAGAIN")
                || message.hasPrefix("MASTERDOWN") || message.hasPrefix("CLUSTERDOWN") || message.hasPrefix("READONLY")
        default: return false
        }
    }
}
