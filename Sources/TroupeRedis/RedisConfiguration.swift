public import Logging
public import NIOCore
public import NIOPosix
public import TroupeCore
public import TroupeRESP
public import TroupeTLS

/// Where and how to connect to one Redis server.
public struct RedisConfiguration: Sendable {
    /// The server's host name or address.
    public var host: String
    /// The server's port.
    public var port: Int
    /// ACL user (Redis 6+); `nil` authenticates as `default` when a password is set.
    public var username: String?
    /// The password (`AUTH`); nil: none. Never logged.
    public var password: String?
    /// The logical database (`SELECT`).
    public var database: Int
    /// Sent with `CLIENT SETNAME` / `HELLO … SETNAME`.
    public var clientName: String?
    /// Deadline of one command unless the call passes its own.
    public var commandTimeout: Duration
    /// Deadline of opening a connection, handshake included.
    public var connectTimeout: Duration
    /// Connections per server; each one pipelines many commands.
    public var poolSize: Int
    /// Delays between reconnect attempts after a failure (grows, with jitter). The default stops growing at
    /// half a second, so a restarted server is used again within about that long.
    public var reconnectBackoff: Backoff
    /// Limits on what the server may send.
    public var limits: RESPLimits
    /// Where the client logs (nowhere by default).
    public var logger: Logger
    /// The event loops connections run on.
    public var eventLoopGroup: any EventLoopGroup
    /// TLS to the server (`rediss://` URLs turn it on); `nil`: plaintext.
    public var tls: TLSClientConfiguration?
    /// While the last attempt to connect failed (the server is restarting, or gone), commands fail at once
    /// with ``RedisError/Code/connectFailed`` instead of waiting — up to their timeout — for a reconnection.
    /// For callers that have something better to do than wait: a cache that asks its source instead, sessions
    /// served stale-if-error, rate limiters that fall back to a local limit (the gateway turns it on). The
    /// next command after the backoff still tries to connect, so a server that is back is used at once.
    public var failFastWhileDown = false

    /// Settings for a server at `host:port`; see each property for the defaults.
    public init(
        host: String = "127.0.0.1", port: Int = 6379, username: String? = nil, password: String? = nil,
        database: Int = 0, clientName: String? = nil, commandTimeout: Duration = .seconds(5),
        connectTimeout: Duration = .seconds(2), poolSize: Int = 4,
        reconnectBackoff: Backoff = Backoff(initial: .milliseconds(20), maximum: .milliseconds(500)),
        limits: RESPLimits = RESPLimits(),
        logger: Logger = Logger(label: "troupe.redis", factory: { _ in SwiftLogNoOpLogHandler() }),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.clientName = clientName
        self.commandTimeout = commandTimeout
        self.connectTimeout = connectTimeout
        self.poolSize = poolSize
        self.reconnectBackoff = reconnectBackoff
        self.limits = limits
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
    }

    /// Parses `redis://[user[:password]@]host[:port][/db]`; `rediss://` is the same over TLS.
    /// - Parameter url: the URL.
    /// - Parameter tls: the TLS settings (CA, client certificate); with a `rediss://` URL and no settings, the
    ///   server is verified against the system's roots. Settings with a `redis://` URL turn TLS on too.
    /// - Throws: ``RedisError/Code/invalidConfiguration`` naming what is wrong.
    public init(url: String, tls: TLSSettings? = nil) throws {
        self.init()
        let secure = url.hasPrefix("rediss://")
        guard url.hasPrefix("redis://") || secure else {
            throw RedisError(.invalidConfiguration, "a Redis URL starts with redis:// (or rediss:// for TLS)")
        }
        if secure || tls != nil {
            do { self.tls = try TLSClientConfiguration(tls ?? TLSSettings()) } catch {
                throw RedisError(.invalidConfiguration, "redis tls: \((error as? TLSError)?.message ?? "\(error)")", underlying: error)
            }
        }
        var rest = Substring(url.dropFirst(secure ? "rediss://".count : "redis://".count))
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = credentials[..<colon]
                username = user.isEmpty ? nil : String(user).removingPercentEncodingSimple
                password = String(credentials[credentials.index(after: colon)...]).removingPercentEncodingSimple
            } else {
                password = String(credentials).removingPercentEncodingSimple
            }
        }
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !db.isEmpty {
                guard let number = Int(db), number >= 0 else { throw RedisError(.invalidConfiguration, "the database in the URL must be a number") }
                database = number
            }
        }
        if let colon = rest.lastIndex(of: ":") {
            guard let number = Int(rest[rest.index(after: colon)...]) else {
                throw RedisError(.invalidConfiguration, "the port in the URL must be a number")
            }
            port = number
            rest = rest[..<colon]
        }
        host = String(rest)
        try validate()
    }

    /// Throws ``RedisError/Code/invalidConfiguration`` naming the first setting to fix.
    public func validate() throws {
        func invalid(_ message: String) -> RedisError { RedisError(.invalidConfiguration, message) }
        guard !host.isEmpty else { throw invalid("host must not be empty") }
        guard (1...65535).contains(port) else { throw invalid("port must be 1…65535, got \(port)") }
        guard database >= 0 else { throw invalid("database must not be negative") }
        guard poolSize >= 1 else { throw invalid("poolSize must be at least 1") }
        guard commandTimeout > .zero, connectTimeout > .zero else { throw invalid("timeouts must be positive") }
        if username != nil, password == nil { throw invalid("a username needs a password") }
        if let clientName, clientName.contains(where: { $0 == " " || $0 == "\n" }) {
            throw invalid("clientName must not contain spaces or newlines")
        }
    }
}

extension String {
    /// Decodes `%XX` escapes (credentials in URLs).
    var removingPercentEncodingSimple: String {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
               let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
