public import TroupeBSON
public import TroupeTLS

/// Credentials for SCRAM-SHA-256.
public struct MongoCredential: Sendable, Hashable {
    /// The user name.
    public var username: String
    /// The password (never logged).
    public var password: String
    /// The database the user is defined in (`authSource`, default `admin`).
    public var source: String

    /// SCRAM-SHA-256 credentials of `username` defined in `source`.
    public init(username: String, password: String, source: String = "admin") {
        self.username = username
        self.password = password
        self.source = source
    }
}

/// Where reads may go. Writes always go to the primary.
public struct MongoReadPreference: Sendable, Hashable {
    /// Which members a read may go to.
    public enum Mode: String, Sendable, Hashable {
        case primary, primaryPreferred, secondary, secondaryPreferred, nearest
    }

    /// Which members a read may go to.
    public var mode: Mode
    /// Tag sets tried in order; an empty set matches any server.
    public var tagSets: [[String: String]]
    /// Servers whose estimated staleness exceeds this are not read from (≥ 90 s; nil = no limit).
    public var maxStalenessSeconds: Int?

    /// A read preference of `mode`, optionally restricted by `tagSets` and `maxStalenessSeconds`.
    public init(_ mode: Mode, tagSets: [[String: String]] = [], maxStalenessSeconds: Int? = nil) {
        self.mode = mode
        self.tagSets = tagSets
        self.maxStalenessSeconds = maxStalenessSeconds
    }

    /// Reads from the primary only (the default).
    public static let primary = MongoReadPreference(.primary)
    /// Reads from the primary, or a secondary when there is none.
    public static let primaryPreferred = MongoReadPreference(.primaryPreferred)
    /// Reads from secondaries only.
    public static let secondary = MongoReadPreference(.secondary)
    /// Reads from a secondary, or the primary when there is none.
    public static let secondaryPreferred = MongoReadPreference(.secondaryPreferred)
    /// Reads from any member within the latency window.
    public static let nearest = MongoReadPreference(.nearest)
}

/// How a single-statement write is retried after a network error or a retryable server error (once, and only
/// when the client's `retryWrites` setting is on; never inside a transaction).
public enum MongoWriteRetry: Sendable, Hashable {
    /// MongoDB's retryable writes: the write carries the session's transaction number, the server records its
    /// outcome, and a retry of a write that was applied returns that outcome instead of applying it again.
    case retryableWrite
    /// Retried without a transaction number, so the server records nothing: for a write that is harmless to
    /// apply twice, or whose caller recognises its own earlier application (a conditional write that marks the
    /// document it writes and reads the mark back when its condition no longer holds).
    case idempotent
    /// Not retried: the error is the caller's.
    case never
}

/// Everything the client needs, from a connection string or set in code. Invalid values fail at start-up.
public struct MongoClientSettings: Sendable {
    /// The seed list: the servers the client starts monitoring from.
    public var hosts: [MongoServerAddress]
    /// Credentials; nil: no authentication.
    public var credential: MongoCredential?
    /// The replica set name the servers must report (`replicaSet`).
    public var replicaSet: String?
    /// Connect to the one host given, whatever the deployment (`directConnection`); nil: decided from the hosts.
    public var directConnection: Bool?
    /// Where reads go by default.
    public var readPreference: MongoReadPreference
    /// `w` of the default write concern (nil = server default).
    public var writeConcern: BSONDocument?
    /// The default read concern level (`local`, `majority`, …; nil: the server's).
    public var readConcernLevel: String?
    /// Sent in the handshake as the application's name (`appName`).
    public var appName: String?
    /// Deadline of opening a connection, handshake included.
    public var connectTimeout: Duration = .seconds(10)
    /// Deadline of one operation on the socket when none is given per call.
    public var socketTimeout: Duration = .seconds(30)
    /// How long an operation waits for a suitable server before failing.
    public var serverSelectionTimeout: Duration = .seconds(30)
    /// How often each server is checked with `hello`.
    public var heartbeatFrequency: Duration = .seconds(10)
    /// How much slower than the fastest a server may be and still be chosen (the latency window).
    public var localThreshold: Duration = .milliseconds(15)
    /// Connections per server at most.
    public var maxPoolSize = 10
    /// Retry a failed write once (MongoDB's retryable writes).
    public var retryWrites = true
    /// Retry a failed read once.
    public var retryReads = true
    /// Nesting limit for documents read from the server.
    public var maxBSONDepth = 200
    var isFirstHandshakeOnConnection = true
    /// The default database of the connection string.
    public var database: String?
    /// TLS to every server (`tls=true` in the connection string, or ``useTLS(_:)``); `nil`: plaintext.
    public var tls: TLSClientConfiguration?

    /// Settings for `hosts` with `credential`; everything else at its default.
    public init(hosts: [MongoServerAddress], credential: MongoCredential? = nil) {
        self.hosts = hosts
        self.credential = credential
        self.readPreference = .primary
    }

    /// Settings from a `mongodb://` connection string.
    public init(_ connectionString: String) throws(MongoError) {
        let parsed = try MongoConnectionString(connectionString)
        if parsed.isSRV {
            throw MongoError(.invalidConfiguration, "mongodb+srv:// needs DNS SRV lookups, which this driver does not do; list the hosts with mongodb://")
        }
        self.init(hosts: parsed.hosts)
        database = parsed.database
        func int(_ name: String) -> Int? { if case .int(let v)? = parsed.options[name] { return v }; return nil }
        func bool(_ name: String) -> Bool? { if case .bool(let v)? = parsed.options[name] { return v }; return nil }
        func string(_ name: String) -> String? { if case .string(let v)? = parsed.options[name] { return v }; return nil }
        if let mechanism = string("authMechanism"), mechanism != "SCRAM-SHA-256" {
            throw MongoError(.invalidConfiguration, "authMechanism \(mechanism) is not supported; use SCRAM-SHA-256")
        }
        if let username = parsed.username {
            credential = MongoCredential(username: username, password: parsed.password ?? "",
                                         source: string("authSource") ?? parsed.database ?? "admin")
        }
        replicaSet = string("replicaSet")
        directConnection = bool("directConnection")
        appName = string("appName")
        readConcernLevel = string("readConcernLevel")
        if let ms = int("connectTimeoutMS"), ms > 0 { connectTimeout = .milliseconds(ms) }
        if let ms = int("socketTimeoutMS"), ms > 0 { socketTimeout = .milliseconds(ms) }
        if let ms = int("serverSelectionTimeoutMS") { serverSelectionTimeout = .milliseconds(ms) }
        if let ms = int("heartbeatFrequencyMS") {
            guard ms >= 500 else { throw MongoError(.invalidConfiguration, "heartbeatFrequencyMS must be at least 500") }
            heartbeatFrequency = .milliseconds(ms)
        }
        if let ms = int("localThresholdMS") { localThreshold = .milliseconds(ms) }
        if let n = int("maxPoolSize") { maxPoolSize = n == 0 ? 100 : n }
        if let r = bool("retryWrites") { retryWrites = r }
        if let r = bool("retryReads") { retryReads = r }
        if bool("tls") == true {
            if bool("tlsAllowInvalidCertificates") == true {
                throw MongoError(.invalidConfiguration, "tlsAllowInvalidCertificates is not supported: give the server's CA with tlsCAFile")
            }
            if string("tlsCertificateKeyFilePassword") != nil {
                throw MongoError(.invalidConfiguration, "encrypted client keys (tlsCertificateKeyFilePassword) are not supported; use an unencrypted PEM key file readable by this process only")
            }
            let keyFile = string("tlsCertificateKeyFile")  // certificate and key in one PEM file, as the URI spec says
            let lax = bool("tlsAllowInvalidHostnames") == true || bool("tlsInsecure") == true
            try useTLS(TLSSettings(certificate: keyFile, privateKey: keyFile, ca: string("tlsCAFile"), verifyHostname: !lax))
        }
        var concern = BSONDocument()
        switch parsed.options["w"] {
        case .int(let n)?: concern["w"] = .int32(Int32(clamping: n))
        case .string(let s)?: concern["w"] = .string(s)
        default: break
        }
        if let j = bool("journal") { concern["j"] = .bool(j) }
        if let wt = int("wTimeoutMS") { concern["wtimeout"] = .int64(Int64(wt)) }
        writeConcern = concern.isEmpty ? nil : concern
        if let mode = string("readPreference").flatMap(MongoReadPreference.Mode.init(rawValue:)) {
            var tags: [[String: String]] = []
            if case .tagSets(let sets)? = parsed.options["readPreferenceTags"] { tags = sets }
            let staleness = int("maxStalenessSeconds").flatMap { $0 == -1 ? nil : $0 }
            readPreference = MongoReadPreference(mode, tagSets: tags, maxStalenessSeconds: staleness)
        }
        try validate()
    }

    /// Turns on TLS to every server with `settings` (CA, client certificate for mutual TLS, name checks).
    /// - Throws: ``MongoError`` of kind `invalidConfiguration` naming the file or setting to fix.
    public mutating func useTLS(_ settings: TLSSettings) throws(MongoError) {
        do { tls = try TLSClientConfiguration(settings) } catch {
            throw MongoError(.invalidConfiguration, "tls: \((error as? TLSError)?.message ?? "\(error)")", underlying: error)
        }
    }

    /// Checks the settings; called by the initializer and by the client before it starts.
    public func validate() throws(MongoError) {
        guard !hosts.isEmpty else { throw MongoError(.invalidConfiguration, "no hosts") }
        guard maxPoolSize > 0 else { throw MongoError(.invalidConfiguration, "maxPoolSize must be positive") }
        if directConnection == true, hosts.count > 1 {
            throw MongoError(.invalidConfiguration, "directConnection=true needs exactly one host")
        }
        if let staleness = readPreference.maxStalenessSeconds {
            guard staleness >= 90 else { throw MongoError(.invalidConfiguration, "maxStalenessSeconds must be at least 90") }
            guard readPreference.mode != .primary else { throw MongoError(.invalidConfiguration, "maxStalenessSeconds is not allowed with readPreference=primary") }
        }
        if readPreference.mode == .primary, !readPreference.tagSets.filter({ !$0.isEmpty }).isEmpty {
            throw MongoError(.invalidConfiguration, "tag sets are not allowed with readPreference=primary")
        }
    }

    static func clientMetadata(appName: String?) -> BSONDocument {
        var doc: BSONDocument = [
            "driver": ["name": "troupe-mongo", "version": "0.1.0"],
            "os": ["type": .string(osType)],
            "platform": "Swift 6 / SwiftNIO",
        ]
        if let appName { doc["application"] = ["name": .string(appName)] }
        return doc
    }

    #if os(Linux)
    static let osType = "Linux"
    #elseif os(macOS)
    static let osType = "Darwin"
    #else
    static let osType = "unknown"
    #endif
}
