/// A host of a connection string.
public struct MongoServerAddress: Sendable, Hashable, CustomStringConvertible {
    /// What the host is: an IPv4 address, an IP literal (`[::1]`), a host name, or a Unix socket path.
    public enum Kind: String, Sendable, Hashable {
        case ipv4, ipLiteral = "ip_literal", hostname, unix
    }

    /// The host name, address or socket path.
    public var host: String
    /// The port (27017 when not given).
    public var port: Int
    /// What the host is.
    public var kind: Kind
    /// Whether the port was written in the string (vectors distinguish "27017" from absent).
    public var portGiven: Bool

    /// An address of `host:port`; `kind` is inferred from `host` when not given.
    public init(host: String, port: Int = 27017, kind: Kind? = nil, portGiven: Bool = true) {
        self.host = host
        self.port = port
        self.kind = kind ?? MongoServerAddress.classify(host)
        self.portGiven = portGiven
    }

    /// Parses `host`, `host:port` or `[v6]:port`.
    public init?(parsing text: String) {
        guard let parsed = try? MongoConnectionString.parseHost(text) else { return nil }
        self = parsed
    }

    static func classify(_ host: String) -> Kind {
        if host.hasSuffix(".sock"), host.contains("/") { return .unix }
        if host.contains(":") { return .ipLiteral }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) { return .ipv4 }
        return .hostname
    }

    public var description: String {
        kind == .ipLiteral ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public static func == (a: MongoServerAddress, b: MongoServerAddress) -> Bool {
        a.host.lowercased() == b.host.lowercased() && a.port == b.port
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(host.lowercased())
        hasher.combine(port)
    }
}

/// An option value of a connection string, typed as the URI options specification says.
public enum MongoOptionValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case bool(Bool)
    /// `readPreferenceTags` (one entry per occurrence) — each a tag set.
    case tagSets([[String: String]])
    /// `authMechanismProperties`.
    case properties([String: String])
    /// `compressors` and similar lists.
    case list([String])
}

/// A parsed `mongodb://` connection string: hosts, credentials, auth database and typed options.
/// Invalid strings throw ``MongoError/Kind/invalidConfiguration``; invalid option values are dropped
/// with a warning (as the specification requires), listed in ``warnings``.
public struct MongoConnectionString: Sendable {
    /// The hosts, in the order written.
    public var hosts: [MongoServerAddress]
    /// The user name, percent-decoded.
    public var username: String?
    /// The password, percent-decoded.
    public var password: String?
    /// The database after the hosts (`/db`), the default for authentication.
    public var database: String?
    /// Options by their canonical name (`replicaSet`, `readPreference`, `wTimeoutMS`, ...).
    public var options: [String: MongoOptionValue]
    /// Why option values were dropped, one line each.
    public var warnings: [String]
    /// `mongodb+srv://`: parsed and validated, but the client refuses it (no DNS SRV lookups here).
    public var isSRV = false

    enum OptionType {
        case string, int, bool, tagSets, properties, list
        case nonNegativeInt, positiveInt
        case choice([String])
    }

    /// The options this driver knows, by lowercased name → (canonical name, type).
    static let knownOptions: [String: (String, OptionType)] = {
        let table: [(String, OptionType)] = [
            ("appName", .string), ("authMechanism", .choice(["SCRAM-SHA-256", "SCRAM-SHA-1", "MONGODB-X509", "GSSAPI", "PLAIN", "MONGODB-AWS", "MONGODB-OIDC", "MONGODB-CR"])),
            ("authMechanismProperties", .properties), ("authSource", .string), ("compressors", .list),
            ("connectTimeoutMS", .nonNegativeInt), ("directConnection", .bool), ("heartbeatFrequencyMS", .nonNegativeInt),
            ("journal", .bool), ("loadBalanced", .bool), ("localThresholdMS", .nonNegativeInt),
            ("maxIdleTimeMS", .nonNegativeInt), ("maxPoolSize", .nonNegativeInt), ("maxConnecting", .positiveInt),
            ("maxStalenessSeconds", .int), ("minPoolSize", .nonNegativeInt), ("readConcernLevel", .string),
            ("readPreference", .choice(["primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"])),
            ("readPreferenceTags", .tagSets), ("replicaSet", .string), ("retryReads", .bool), ("retryWrites", .bool),
            ("serverSelectionTimeoutMS", .nonNegativeInt), ("serverSelectionTryOnce", .bool), ("socketTimeoutMS", .nonNegativeInt),
            ("tls", .bool), ("ssl", .bool), ("tlsAllowInvalidCertificates", .bool), ("tlsAllowInvalidHostnames", .bool),
            ("tlsCAFile", .string), ("tlsCertificateKeyFile", .string), ("tlsCertificateKeyFilePassword", .string),
            ("tlsDisableCertificateRevocationCheck", .bool), ("tlsDisableOCSPEndpointCheck", .bool), ("tlsInsecure", .bool),
            ("w", .string), ("waitQueueTimeoutMS", .nonNegativeInt), ("wTimeoutMS", .nonNegativeInt),
            ("zlibCompressionLevel", .int), ("srvMaxHosts", .nonNegativeInt), ("srvServiceName", .string),
            ("timeoutMS", .nonNegativeInt), ("proxyHost", .string), ("proxyPort", .nonNegativeInt),
            ("proxyUsername", .string), ("proxyPassword", .string), ("serverMonitoringMode", .choice(["stream", "poll", "auto"])),
            ("maxAdaptiveRetries", .nonNegativeInt), ("enableOverloadRetargeting", .bool),
        ]
        var map = [String: (String, OptionType)]()
        for (name, type) in table { map[name.lowercased()] = (name, type) }
        return map
    }()

    /// Parses `text`.
    /// - Throws: ``MongoError`` with kind `invalidConfiguration` for a string that is not a valid connection string.
    public init(_ text: String) throws(MongoError) {
        func invalid(_ why: String) -> MongoError {
            MongoError(.invalidConfiguration, "invalid connection string: \(why)")
        }
        let scheme: String
        if text.hasPrefix("mongodb://") {
            scheme = "mongodb://"
        } else if text.hasPrefix("mongodb+srv://") {
            scheme = "mongodb+srv://"
            isSRV = true
        } else {
            throw invalid("it must start with mongodb://")
        }
        var rest = Substring(text.dropFirst(scheme.count))
        // Options: after the first "?" (which must follow "/").
        var optionText: Substring?
        if let q = rest.firstIndex(of: "?") {
            optionText = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        // Userinfo ends at the last "@" before the path.
        var authority: Substring
        var path: Substring?
        // The host part cannot contain an unescaped "/" except for a unix socket ending in .sock (which must be escaped).
        let atIndex = rest.lastIndex(of: "@")
        let searchStart = atIndex.map { rest.index(after: $0) } ?? rest.startIndex
        if let slash = rest[searchStart...].firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
        }
        if let at = authority.lastIndex(of: "@") {
            let userinfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            let userPart: Substring
            var passwordPart: Substring?
            if let colon = userinfo.firstIndex(of: ":") {
                userPart = userinfo[..<colon]
                passwordPart = userinfo[userinfo.index(after: colon)...]
            } else {
                userPart = userinfo
            }
            for part in [userPart, passwordPart ?? ""] where part.contains(where: { ":/?#[]@".contains($0) }) {
                throw invalid("user name and password must percent-encode : / ? # [ ] @")
            }
            guard let user = Self.percentDecode(userPart) else { throw invalid("bad percent-encoding in the user name") }
            guard !user.isEmpty else { throw invalid("empty user name") }
            username = user
            if let passwordPart {
                guard let pw = Self.percentDecode(passwordPart) else { throw invalid("bad percent-encoding in the password") }
                password = pw
            }
        }
        guard !authority.isEmpty else { throw invalid("no host") }
        hosts = []
        for hostText in authority.split(separator: ",", omittingEmptySubsequences: false) {
            guard !hostText.isEmpty else { throw invalid("empty host in the host list") }
            hosts.append(try Self.parseHost(String(hostText)))
        }
        if isSRV {
            guard hosts.count == 1, !hosts[0].portGiven, hosts[0].kind == .hostname else {
                throw invalid("mongodb+srv:// takes exactly one host name without a port")
            }
        }
        if let path, !path.isEmpty {
            guard let db = Self.percentDecode(path) else { throw invalid("bad percent-encoding in the database name") }
            guard !db.contains(where: { "/\\ \"$".contains($0) }) else { throw invalid("database name \"\(db)\" has a forbidden character") }
            database = db
        }
        options = [:]
        warnings = []
        if let optionText, !optionText.isEmpty {
            try parseOptions(optionText)
        }
        try validate()
    }

    static func parseHost(_ text: String) throws(MongoError) -> MongoServerAddress {
        func invalid(_ why: String) -> MongoError { MongoError(.invalidConfiguration, "invalid connection string: \(why)") }
        guard let decoded = percentDecode(Substring(text)) else { throw invalid("bad percent-encoding in host \(text)") }
        if decoded.hasSuffix(".sock"), decoded.contains("/") {
            guard !text.contains("/") else { throw invalid("unix socket paths must percent-encode \"/\"") }
            return MongoServerAddress(host: decoded, port: 27017, kind: .unix, portGiven: false)
        }
        var host: String
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw invalid("unterminated IPv6 literal \(text)") }
            host = String(text[text.index(after: text.startIndex)..<close])
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("junk after IPv6 literal in \(text)") }
                portText = after.dropFirst()
            }
            guard !host.isEmpty else { throw invalid("empty IPv6 literal") }
            let port = try parsePort(portText, text)
            return MongoServerAddress(host: host, port: port ?? 27017, kind: .ipLiteral, portGiven: port != nil)
        }
        let colons = text.filter { $0 == ":" }.count
        guard colons <= 1 else { throw invalid("IPv6 addresses must be in brackets: \(text)") }
        if let colon = text.firstIndex(of: ":") {
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
        } else {
            host = text
        }
        host = percentDecode(Substring(host)) ?? host
        guard !host.isEmpty else { throw invalid("empty host name in \(text)") }
        let port = try parsePort(portText, text)
        return MongoServerAddress(host: host.lowercased(), port: port ?? 27017, portGiven: port != nil)
    }

    private static func parsePort(_ text: Substring?, _ host: String) throws(MongoError) -> Int? {
        guard let text else { return nil }
        guard let port = Int(text), (1...65535).contains(port), text.allSatisfy(\.isNumber) else {
            throw MongoError(.invalidConfiguration, "invalid connection string: bad port in \(host)")
        }
        return port
    }

    static func percentDecode(_ text: Substring) -> String? {
        guard text.contains("%") else { return String(text) }
        var bytes = [UInt8]()
        var iterator = Array(text.utf8)[...]
        while let b = iterator.first {
            iterator = iterator.dropFirst()
            if b == UInt8(ascii: "%") {
                guard iterator.count >= 2, let hi = hexValue(iterator[iterator.startIndex]), let lo = hexValue(iterator[iterator.startIndex + 1]) else { return nil }
                bytes.append(hi << 4 | lo)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 65...70: c - 55
        case 97...102: c - 87
        default: nil
        }
    }

    private mutating func parseOptions(_ text: Substring) throws(MongoError) {
        var seen = Set<String>()
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            guard let eq = pair.firstIndex(of: "=") else {
                throw MongoError(.invalidConfiguration, "invalid connection string: option \"\(pair)\" has no value")
            }
            let rawKey = String(pair[..<eq])
            guard let value = Self.percentDecode(pair[pair.index(after: eq)...]) else {
                throw MongoError(.invalidConfiguration, "invalid connection string: bad percent-encoding in \(rawKey)")
            }
            let lower = rawKey.lowercased()
            guard let (name, type) = Self.knownOptions[lower] else {
                warnings.append("unknown option \(rawKey)")
                continue
            }
            if seen.contains(name), name.hasPrefix("proxy") {
                throw MongoError(.invalidConfiguration, "invalid connection string: \(name) given more than once")
            }
            if seen.contains(name), name != "readPreferenceTags" { warnings.append("option \(name) given more than once; the last wins") }
            seen.insert(name)
            switch type {
            case .string:
                options[name] = .string(value)
            case .int, .nonNegativeInt, .positiveInt:
                guard let n = Int(value), !value.hasPrefix("+") else { warnings.append("\(name)=\(value) is not an integer"); continue }
                if case .nonNegativeInt = type, n < 0 { warnings.append("\(name) must not be negative"); continue }
                if case .positiveInt = type, n <= 0 { warnings.append("\(name) must be positive"); continue }
                options[name] = .int(n)
            case .bool:
                switch value {
                case "true": options[name] = .bool(true)
                case "false": options[name] = .bool(false)
                default: warnings.append("\(name)=\(value) is neither true nor false")
                }
            case .choice(let choices):
                guard let match = choices.first(where: { $0.lowercased() == value.lowercased() }) else {
                    warnings.append("\(name)=\(value) is not one of \(choices)")
                    continue
                }
                options[name] = .string(match)
            case .list:
                options[name] = .list(value.split(separator: ",").map(String.init))
            case .properties:
                var properties = [String: String]()
                var ok = true
                for item in value.split(separator: ",") {
                    guard let colon = item.firstIndex(of: ":") else { ok = false; break }
                    properties[String(item[..<colon])] = String(item[item.index(after: colon)...])
                }
                if ok { options[name] = .properties(properties) } else { warnings.append("\(name) must be key:value pairs") }
            case .tagSets:
                var set = [String: String]()
                var ok = true
                for item in value.split(separator: ",") {
                    guard let colon = item.firstIndex(of: ":") else { ok = false; break }
                    set[String(item[..<colon])] = String(item[item.index(after: colon)...])
                }
                guard ok else { warnings.append("readPreferenceTags must be key:value pairs"); continue }
                if case .tagSets(var sets)? = options[name] { sets.append(set); options[name] = .tagSets(sets) } else { options[name] = .tagSets([set]) }
            }
        }
        if case .int(let level)? = options["zlibCompressionLevel"], !(-1...9).contains(level) {
            options["zlibCompressionLevel"] = nil
            warnings.append("zlibCompressionLevel must be between -1 and 9")
        }
        if case .int(let staleness)? = options["maxStalenessSeconds"], staleness != -1, staleness < 90 {
            options["maxStalenessSeconds"] = nil
            warnings.append("maxStalenessSeconds must be -1 or at least 90")
        }
        if case .string(let w)? = options["w"], let n = Int(w) {
            if n < 0 { options["w"] = nil; warnings.append("w must not be negative") } else { options["w"] = .int(n) }
        }
        // ssl is an alias of tls.
        if let ssl = options["ssl"] {
            if let tls = options["tls"], tls != ssl {
                throw MongoError(.invalidConfiguration, "invalid connection string: tls and ssl disagree")
            }
            options["tls"] = ssl
            options["ssl"] = nil
        }
    }

    private func validate() throws(MongoError) {
        func invalid(_ why: String) -> MongoError { MongoError(.invalidConfiguration, "invalid connection string: \(why)") }
        if options["directConnection"] == .bool(true), hosts.count > 1 { throw invalid("directConnection=true with several hosts") }
        if options["loadBalanced"] == .bool(true) {
            if hosts.count > 1 { throw invalid("loadBalanced=true with several hosts") }
            if options["replicaSet"] != nil { throw invalid("loadBalanced=true with replicaSet") }
            if options["directConnection"] == .bool(true) { throw invalid("loadBalanced=true with directConnection=true") }
        }
        if options["tlsInsecure"] != nil, options["tlsAllowInvalidCertificates"] != nil || options["tlsAllowInvalidHostnames"] != nil
            || options["tlsDisableOCSPEndpointCheck"] != nil || options["tlsDisableCertificateRevocationCheck"] != nil {
            throw invalid("tlsInsecure cannot be combined with the options it implies")
        }
        if options["tlsAllowInvalidCertificates"] != nil,
            options["tlsDisableOCSPEndpointCheck"] != nil || options["tlsDisableCertificateRevocationCheck"] != nil {
            throw invalid("tlsAllowInvalidCertificates cannot be combined with OCSP/revocation options")
        }
        if options["tlsDisableOCSPEndpointCheck"] != nil, options["tlsDisableCertificateRevocationCheck"] != nil {
            throw invalid("tlsDisableOCSPEndpointCheck cannot be combined with tlsDisableCertificateRevocationCheck")
        }
        if options["proxyHost"] == nil, options["proxyPort"] != nil || options["proxyUsername"] != nil || options["proxyPassword"] != nil {
            throw invalid("proxyPort, proxyUsername and proxyPassword need proxyHost")
        }
        if (options["proxyUsername"] == nil) != (options["proxyPassword"] == nil) {
            throw invalid("proxyUsername and proxyPassword go together")
        }
        if !isSRV, options["srvServiceName"] != nil || options["srvMaxHosts"] != nil {
            throw invalid("srvServiceName and srvMaxHosts apply to mongodb+srv:// only")
        }
        if case .int(let maxHosts)? = options["srvMaxHosts"], maxHosts > 0 {
            if options["replicaSet"] != nil { throw invalid("srvMaxHosts > 0 cannot be combined with replicaSet") }
            if options["loadBalanced"] == .bool(true) { throw invalid("srvMaxHosts > 0 cannot be combined with loadBalanced=true") }
        }
        if options["readPreference"] == .string("primary") {
            if options["readPreferenceTags"].map({ $0 != .tagSets([[:]]) }) ?? false { throw invalid("readPreference=primary cannot have tags") }
            if case .int(let s)? = options["maxStalenessSeconds"], s != -1 { throw invalid("readPreference=primary cannot have maxStalenessSeconds") }
        }
        if options["journal"] == .bool(true), options["w"] == .int(0) { throw invalid("w=0 with journal=true") }
        if case .string(let mechanism)? = options["authMechanism"] {
            if mechanism == "MONGODB-X509", password != nil { throw invalid("MONGODB-X509 takes no password") }
            if ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "GSSAPI", "MONGODB-CR"].contains(mechanism), username == nil {
                throw invalid("\(mechanism) needs a user name")
            }
        }
        if let username, username.isEmpty { throw invalid("empty user name") }
    }
}
