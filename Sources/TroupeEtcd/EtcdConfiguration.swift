public import Logging
public import TroupeTLS

/// Where and how to reach an etcd cluster.
public struct EtcdConfiguration: Sendable {
    /// One etcd endpoint: its host and port.
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// Host name or address.
        public var host: String
        /// Port.
        public var port: Int
        public var description: String { "\(host):\(port)" }
    }

    /// The cluster's client URLs; calls are balanced across them and fail over to healthy ones.
    public var endpoints: [Endpoint]
    /// The user name, when etcd's authentication is on.
    public var username: String?
    /// The password, when etcd's authentication is on. Never logged.
    public var password: String?
    /// Deadline of every unary call unless the call passes its own.
    public var callTimeout: Duration
    /// How often an unavailable endpoint set is retried within a call's deadline.
    public var retryDelay: Duration
    /// Where the client logs.
    public var logger: Logger
    /// TLS to every endpoint (`https://` endpoints turn it on): `TLSSettings/ca` verifies the servers,
    /// `TLSSettings/certificate` and `TLSSettings/privateKey` authenticate this client (etcd's
    /// `--client-cert-auth`). `nil`: plaintext.
    public var tls: TLSSettings?

    /// - Parameter endpoints: `host:port`, `http://host:port` or `https://host:port` strings (all of one scheme).
    /// - Parameter username: the user, when etcd's authentication is on.
    /// - Parameter password: its password.
    /// - Parameter callTimeout: the deadline of a unary call unless the call passes its own.
    /// - Parameter retryDelay: how often an unavailable endpoint set is retried within a call's deadline.
    /// - Parameter tls: TLS settings (also turned on by `https://` endpoints).
    /// - Parameter logger: where the client logs.
    /// - Throws: ``EtcdError/Code/invalidConfiguration`` naming the bad endpoint or setting.
    public init(
        endpoints: [String], username: String? = nil, password: String? = nil, callTimeout: Duration = .seconds(5),
        retryDelay: Duration = .milliseconds(100),
        logger: Logger = Logger(label: "troupe.etcd", factory: { _ in SwiftLogNoOpLogHandler() }),
        tls: TLSSettings? = nil
    ) throws {
        guard !endpoints.isEmpty else { throw EtcdError(.invalidConfiguration, "at least one etcd endpoint is needed") }
        let secure = endpoints.filter { $0.hasPrefix("https://") }.count
        guard secure == 0 || secure == endpoints.count else {
            throw EtcdError(.invalidConfiguration, "etcd endpoints mix https:// and plaintext; use one scheme for all")
        }
        self.endpoints = try endpoints.map(Self.parse)
        if secure > 0 || tls != nil {
            let settings = tls ?? TLSSettings()
            do { try settings.validate() } catch {
                throw EtcdError(.invalidConfiguration, "etcd tls: \((error as? TLSError)?.message ?? "\(error)")", underlying: error)
            }
            self.tls = settings
        }
        self.username = username
        self.password = password
        self.callTimeout = callTimeout
        self.retryDelay = retryDelay
        self.logger = logger
        guard (username == nil) == (password == nil) else {
            throw EtcdError(.invalidConfiguration, "set both username and password, or neither")
        }
        guard callTimeout > .zero, retryDelay > .zero else { throw EtcdError(.invalidConfiguration, "timeouts must be positive") }
    }

    static func parse(_ text: String) throws -> Endpoint {
        var rest = Substring(text)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
        if rest.hasPrefix("https://") { rest = rest.dropFirst(8) }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
              (1...65535).contains(port), colon > rest.startIndex
        else { throw EtcdError(.invalidConfiguration, "invalid etcd endpoint \"\(text)\" (expected host:port)") }
        return Endpoint(host: String(rest[..<colon]), port: port)
    }
}
