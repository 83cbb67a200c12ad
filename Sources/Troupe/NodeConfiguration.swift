import TroupeCore
import Foundation
public import Logging
public import TroupeActors
public import TroupeMongo
public import TroupeRedis
public import TroupeTLS

/// The configuration file of `troupe node` (JSON).
///
/// ```json
/// {
///   "cluster": "shop", "node": "node-1", "host": "127.0.0.1", "port": 7101,
///   "secretEnv": "TROUPE_SECRET",
///   "members": [
///     {"node": "node-1", "host": "127.0.0.1", "port": 7101},
///     {"node": "node-2", "host": "127.0.0.1", "port": 7102}
///   ],
///   "callTimeoutMs": 5000, "idleTimeoutSeconds": 300
/// }
/// ```
///
/// With a `tls` section (`troupe certs` makes the files), the cluster transport runs mutual TLS 1.3 and the
/// same identity is used for `https://` etcd endpoints, `rediss://` Redis and `tls=true` MongoDB, unless a
/// link has its own `tls` section:
///
/// ```json
/// "tls": {"certificate": "certs/node-1.pem", "privateKey": "certs/node-1-key.pem", "ca": "certs/ca.pem"}
/// ```
public struct NodeConfiguration: Codable, Sendable, Equatable {
    /// A member of the static list: its name, address and the virtual actor types it hosts.
    public struct Member: Codable, Sendable, Equatable {
        /// The member's node name.
        public var node: String
        /// The address it listens on.
        public var host: String
        /// Its cluster port.
        public var port: Int
        /// Virtual actor types the member hosts; absent: all.
        public var actorTypes: [String]?
    }

    /// The cluster's name: nodes of another cluster are refused at the handshake.
    public var cluster: String
    /// This node's name, unique in the cluster.
    public var node: String
    /// The address the cluster transport listens on and the others dial.
    public var host: String
    /// The cluster port (fixed for members; 0 for a client of the cluster).
    public var port: Int
    /// The cluster secret itself (discouraged outside development)…
    public var secret: String?
    /// …or the name of the environment variable that holds it.
    public var secretEnv: String?
    /// The static member list, used when ``etcd`` is absent.
    public var members: [Member]?
    /// Membership through etcd: every node registers itself under a lease and watches the others.
    public var etcd: Etcd?
    /// This node's TLS identity and the cluster CA: mutual TLS on the cluster transport, and the default
    /// for the TLS links to etcd, Redis and MongoDB. Absent: plaintext (run on a private network only).
    public var tls: TLSSettings?
    /// The process's log level (trace, debug, info, notice, warning, error, critical) unless `--log-level` or the
    /// `TROUPE_LOG_LEVEL` environment variable says otherwise; info when absent.
    public var logLevel: String?

    /// ``logLevel`` as a level (nil when absent; `validate` refuses an unknown name).
    public var level: Logger.Level? { logLevel.flatMap { Logger.Level(rawValue: $0.lowercased()) } }

    /// The `etcd` section: membership, service registration, actor state and live configuration in etcd.
    public struct Etcd: Codable, Sendable, Equatable {
        /// `host:port`, `http://…` or `https://…` (not mixed).
        public var endpoints: [String]
        /// The etcd user, when etcd requires authentication.
        public var username: String?
        /// The name of the environment variable holding the etcd password.
        public var passwordEnv: String?
        /// Time to live of this node's registration; a dead node disappears after it.
        public var ttlSeconds: Int?
        /// Keep actor state in etcd too (shared by every node, so it survives a node's death).
        public var actorState: Bool?
        /// TLS for `https://` endpoints when it differs from the node's ``NodeConfiguration/tls``.
        public var tls: TLSSettings?
        /// Live configuration from the etcd keys under `/config/{app}/{environment}/` (docs/configuration.md lists
        /// the keys): `{"app": "shop", "environment": "prod"}`. Absent: nothing changes without a restart.
        public var config: LiveSource?

        /// Where the live configuration is read: the keys under `/config/{app}/{environment}/`.
        public struct LiveSource: Codable, Sendable, Equatable {
            /// The application's name in the key prefix.
            public var app: String
            /// The environment's name in the key prefix (prod, staging, dev).
            public var environment: String
        }
    }
    /// MongoDB for actor state (and the document store): `{"uriEnv": "MONGO_URI", "database": "shop"}`.
    public var mongo: Mongo?

    /// The `mongo` section: the connection, the database, and whether actor state lives there.
    public struct Mongo: Codable, Sendable, Equatable {
        /// The connection string itself (it may hold a password: prefer ``uriEnv``)…
        public var uri: String?
        /// …or the name of the environment variable that holds it.
        public var uriEnv: String?
        /// The database of the actor states and documents.
        public var database: String
        /// Keep actor state in this database (default true).
        public var actorState: Bool?
        /// Indexes on the actor states' fields, by their path in the document (`"state.info.status"`; several fields of
        /// one index joined by commas): MongoDB's own queries on the states (`find({"state.info.status": "paid"})`).
        public var stateIndexes: [String]?
        /// TLS settings (separate files) when the link differs from the node's ``NodeConfiguration/tls``; a
        /// connection string with `tls=true` and no `tlsCAFile` uses the node's.
        public var tls: TLSSettings?

        /// The client settings: the connection string, TLS from it, from ``tls``, or from the node's `tls`.
        public func settings(environment: [String: String], nodeTLS: TLSSettings?) throws -> MongoClientSettings {
            do {
                var settings = try MongoClientSettings(try connectionString(environment: environment))
                if let own = tls {
                    try settings.useTLS(own)
                } else if let tls = settings.tls, tls.settings.ca == nil, tls.settings.certificate == nil, let nodeTLS {
                    var inherited = nodeTLS
                    inherited.verifyHostname = tls.settings.verifyHostname
                    try settings.useTLS(inherited)
                }
                return settings
            } catch let error as MongoError {
                throw ConfigurationError("mongo: \(error.message)", underlying: error)
            }
        }

        /// The connection string, from ``uri`` or the variable named by ``uriEnv``.
        public func connectionString(environment: [String: String]) throws -> String {
            if let uriEnv {
                guard let value = environment[uriEnv], !value.isEmpty else {
                    throw ConfigurationError("mongo.uriEnv names \(uriEnv), which is not set")
                }
                return value
            }
            guard let uri, !uri.isEmpty else { throw ConfigurationError("set mongo.uriEnv (or mongo.uri) to a mongodb:// connection string") }
            return uri
        }
    }

    /// Redis for the cache, sessions, idempotency keys, rate limits and the bus:
    /// `{"url": "redis://127.0.0.1:6379"}` or `{"urlEnv": "REDIS_URL"}`.
    public var redis: Redis?

    /// The `redis` section: the connection of the bus, sessions, idempotency keys, limits and caches.
    public struct Redis: Codable, Sendable, Equatable {
        /// A `redis://` or `rediss://` URL (it may hold a password: prefer ``urlEnv``)…
        public var url: String?
        /// …or the name of the environment variable that holds it.
        public var urlEnv: String?
        /// TLS for a `rediss://` URL when it differs from the node's ``NodeConfiguration/tls``.
        public var tls: TLSSettings?
        /// Commands fail at once while Redis cannot be reached instead of waiting for the reconnection
        /// (`RedisConfiguration.failFastWhileDown`). Default: on for `troupe gateway` (whatever it asks Redis has a
        /// fallback: sessions stale-if-error, local rate limits, the catalog from its store), off for nodes.
        public var failFastWhileDown: Bool?

        /// The Redis URL, from ``url`` or the variable named by ``urlEnv``.
        public func connectionURL(environment: [String: String]) throws -> String {
            if let urlEnv {
                guard let value = environment[urlEnv], !value.isEmpty else {
                    throw ConfigurationError("redis.urlEnv names \(urlEnv), which is not set")
                }
                return value
            }
            guard let url, !url.isEmpty else { throw ConfigurationError("set redis.urlEnv (or redis.url) to a redis:// URL") }
            return url
        }

        /// The client configuration; a `rediss://` URL uses ``tls`` or else `nodeTLS`.
        public func configuration(environment: [String: String], logger: Logger, nodeTLS: TLSSettings? = nil) throws -> RedisConfiguration {
            do {
                let url = try connectionURL(environment: environment)
                var configuration = try RedisConfiguration(url: url, tls: url.hasPrefix("rediss://") ? tls ?? nodeTLS : tls)
                configuration.logger = logger
                configuration.failFastWhileDown = failFastWhileDown ?? false
                return configuration
            } catch let error as ConfigurationError {
                throw error
            } catch {
                throw ConfigurationError("redis: \(error)", underlying: error)
            }
        }
    }

    /// The HTTP gateway (`troupe gateway`): where it listens and how it signs tokens.
    public var gateway: Gateway?

    /// The `gateway` section: the HTTP listener, its tokens, limits, admin listener and upstream services.
    public struct Gateway: Codable, Sendable, Equatable {
        /// Listen address (default 127.0.0.1).
        public var host: String?
        /// The public listener's port.
        public var port: Int
        /// The name of the environment variable holding the HS256 token secret (at least 32 bytes)…
        public var jwtSecretEnv: String?
        /// …or the secret itself (discouraged outside development).
        public var jwtSecret: String?
        /// Token issuer (default "troupe") and audience (default the cluster name).
        public var issuer: String?
        /// The tokens' audience (default: the cluster's name).
        public var audience: String?
        /// Requests in progress beyond this are shed with 503 (default 1024).
        public var maxInFlight: Int?
        /// Proxy public upstream routes' common requests from bytes to bytes before NIO's HTTP/1 codec
        /// (default true; false sends every request through the codec).
        public var byteLevelProxy: Bool?
        /// Seconds before an idle client connection is closed (default 75) and within which a begun request
        /// must arrive whole (default 60; 408 otherwise).
        public var idleTimeoutSeconds: Double?
        /// Seconds within which a begun request must arrive whole (default 60; 408 otherwise).
        public var requestReadTimeoutSeconds: Double?
        /// Token-bucket limits; absent: unlimited.
        public var userRequestsPerSecond: Int?
        /// The gateway-wide token bucket, requests a second (absent: unlimited).
        public var globalRequestsPerSecond: Int?
        /// Login attempts a minute per account (default 10) and per client address (default 100), shared by the
        /// gateways through Redis.
        public var loginAttemptsPerMinute: Int?
        /// Login attempts a minute per client address (default 100).
        public var loginAttemptsPerAddressPerMinute: Int?
        /// The Snowflake worker id when etcd is not configured (with etcd, a leased one is used).
        public var workerID: Int?
        /// The admin listener: `/metrics`, `/dashboard`, `/dashboard.json`, `/health`, `/ready` without a token,
        /// on an address of its own (keep it private: default host 127.0.0.1). Absent: no admin listener.
        public var admin: Admin?

        /// The admin listener's address (`/metrics`, `/dashboard`, `/health`, `/ready` without a token).
        public struct Admin: Codable, Sendable, Equatable {
            /// Its address (default 127.0.0.1: keep it private).
            public var host: String?
            /// Its port (not the public listener's).
            public var port: Int
        }

        /// Also serve `/metrics` on the public listener (default false; prefer ``admin``).
        public var publicMetrics: Bool?
        /// Serve `/dashboard` and `/dashboard.json` on the public listener without a token (default false;
        /// prefer ``admin``, which always serves them).
        public var dashboard: Bool?
        /// HTTPS: the gateway's certificate and key (PEM; renewed files are picked up within 10 s, no
        /// restart). Absent: plain HTTP (behind a TLS-terminating edge).
        public var https: TLSSettings?
        /// Plain HTTP services behind the gateway: requests under `prefix` go to the instances of
        /// `service` registered in etcd at `/services/{service}/{id}` (or to a fixed `instances` list).
        public var upstreams: [Upstream]?

        /// An HTTP service behind the gateway: a path prefix routed to the instances of a registered service.
        public struct Upstream: Codable, Sendable, Equatable {
            /// The path prefix routed to the service (`/billing`).
            public var prefix: String
            /// The service's name in the registry (`/services/{service}/{id}`).
            public var service: String
            /// "host:port" entries used instead of the registry.
            public var instances: [String]?
            /// Whether a token is needed (default true).
            public var requiresAuth: Bool?
            /// The deadline of one upstream request, in milliseconds (default 10,000).
            public var timeoutMs: Int?

            /// The fixed instances as (host, port).
            public func fixedInstances() throws -> [(host: String, port: Int)] {
                try (instances ?? []).map { entry in
                    guard let colon = entry.lastIndex(of: ":"), let port = Int(entry[entry.index(after: colon)...]), (1...65535).contains(port),
                          colon != entry.startIndex else {
                        throw ConfigurationError("gateway.upstreams: \"\(entry)\" is not host:port")
                    }
                    return (String(entry[..<colon]), port)
                }
            }
        }

        /// The token secret bytes.
        public func secretBytes(environment: [String: String]) throws -> [UInt8] {
            let secret: String
            if let jwtSecretEnv {
                guard let value = environment[jwtSecretEnv], !value.isEmpty else {
                    throw ConfigurationError("gateway.jwtSecretEnv names \(jwtSecretEnv), which is not set")
                }
                secret = value
            } else if let jwtSecret, !jwtSecret.isEmpty {
                secret = jwtSecret
            } else {
                throw ConfigurationError("set gateway.jwtSecretEnv (or gateway.jwtSecret) to a secret of at least 32 bytes")
            }
            guard secret.utf8.count >= 32 else {
                throw ConfigurationError("the gateway's token secret must be at least 32 bytes (it has \(secret.utf8.count))")
            }
            return Array(secret.utf8)
        }
    }

    /// The deadline of actor calls that set none, in milliseconds (default 5,000; live: `callTimeoutMs`).
    public var callTimeoutMs: Int?
    /// Seconds an activation may stay unused before it is passivated (default 300; live: `idleTimeoutSeconds`).
    public var idleTimeoutSeconds: Int?
    /// The largest frame the cluster transport accepts, in bytes (default 4 MiB).
    public var maxFrameBytes: Int?
    /// Activations a node keeps at most (default 100,000; the least recently used are passivated past it).
    public var maxActivations: Int?

    /// What a configuration file is loaded for: a member node, or a gateway (a client of the cluster).
    public enum Role: Sendable {
        case node, gateway
    }

    /// Reads and validates a configuration file.
    /// - Throws: `ConfigurationError` saying what to fix.
    public static func load(path: String, environment: [String: String], role: Role = .node) throws -> NodeConfiguration {
        try load(path: path, environment: environment, role: role, section: nil, as: NoSection.self).configuration
    }

    /// Reads and validates a configuration file that also holds an application's own section under the key
    /// `section` (decoded as `Section`, read as strictly as the rest: its unknown keys are errors too).
    /// - Returns: the node's configuration and the section (nil when the file has none).
    /// - Throws: `ConfigurationError` saying what to fix.
    public static func load<Section: Decodable>(
        path: String, environment: [String: String], role: Role = .node, section: String?, as type: Section.Type
    ) throws -> (configuration: NodeConfiguration, section: Section?) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ConfigurationError("cannot read the configuration file \(path)", underlying: error)
        }
        let loaded: (configuration: NodeConfiguration, section: Section?)
        do {
            loaded = try ConfigurationDecoder.decode(from: data, environment: environment) { decoder in
                let configuration = try NodeConfiguration(from: decoder)
                guard let section else { return (configuration, nil) }
                let container = try decoder.container(keyedBy: SectionKey.self)
                return (configuration, try container.decodeIfPresent(Section.self, forKey: SectionKey(stringValue: section)))
            }
        } catch {
            throw ConfigurationError("\(path): \(error.description)", underlying: error)
        }
        try loaded.configuration.validate(role: role, environment: environment)
        return loaded
    }

    private struct NoSection: Decodable {}

    private struct SectionKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Checks everything that can be checked before start-up.
    /// - Throws: `ConfigurationError` saying what to fix.
    public func validate(role: Role, environment: [String: String]) throws {
        if let logLevel, level == nil {
            throw ConfigurationError(
                "logLevel \"\(logLevel)\" is not a level: use trace, debug, info, notice, warning, error or critical")
        }
        let logger = Logger(label: "troupe.config")
        switch role {
        case .node:
            _ = try clusterConfiguration(environment: environment, logger: logger)
        case .gateway:
            guard etcd != nil || !(members ?? []).isEmpty else {
                throw ConfigurationError("set either etcd (dynamic membership) or members (a static list)")
            }
            _ = try clientConfiguration(name: "gateway", environment: environment, logger: logger)
            try validateMongo(environment: environment)
            guard let gateway else { throw ConfigurationError("a gateway configuration needs a gateway section with at least a port") }
            guard (1...65535).contains(gateway.port) else { throw ConfigurationError("gateway.port must be 1…65535") }
            _ = try gateway.secretBytes(environment: environment)
            if let inFlight = gateway.maxInFlight, inFlight < 1 { throw ConfigurationError("gateway.maxInFlight must be at least 1") }
            for (name, rate) in [("userRequestsPerSecond", gateway.userRequestsPerSecond), ("globalRequestsPerSecond", gateway.globalRequestsPerSecond)] {
                if let rate, rate < 1 { throw ConfigurationError("gateway.\(name) must be at least 1") }
            }
            if etcd == nil, gateway.workerID == nil {
                throw ConfigurationError("without etcd, set gateway.workerID (0…1023, unique per gateway) for order ids")
            }
            if let id = gateway.workerID, !(0...1023).contains(id) { throw ConfigurationError("gateway.workerID must be 0…1023") }
            if let admin = gateway.admin {
                guard (1...65535).contains(admin.port), admin.port != gateway.port || (admin.host ?? "127.0.0.1") != (gateway.host ?? "127.0.0.1") else {
                    throw ConfigurationError("gateway.admin.port must be 1…65535 and differ from the public listener's")
                }
            }
            for upstream in gateway.upstreams ?? [] {
                guard upstream.prefix.hasPrefix("/"), upstream.prefix.count >= 2 else {
                    throw ConfigurationError("gateway.upstreams: prefix \"\(upstream.prefix)\" must start with / and name a path")
                }
                guard !upstream.service.isEmpty else { throw ConfigurationError("gateway.upstreams: service must not be empty") }
                if try upstream.fixedInstances().isEmpty, etcd == nil {
                    throw ConfigurationError("gateway.upstreams: \(upstream.service) needs etcd (the registry) or a fixed instances list")
                }
                if let timeout = upstream.timeoutMs, timeout < 1 { throw ConfigurationError("gateway.upstreams: timeoutMs must be positive") }
            }
            guard redis != nil, mongo != nil else {
                throw ConfigurationError("the gateway needs redis (sessions, idempotency, limits, bus) and mongo (catalog, users)")
            }
        }
        if let redis { _ = try redis.configuration(environment: environment, logger: logger, nodeTLS: tls) }
        if let https = gateway?.https {
            guard https.certificate != nil, https.privateKey != nil else {
                throw ConfigurationError("gateway.https needs certificate and privateKey")
            }
            do { try https.validate() } catch { throw ConfigurationError("gateway.https: \(error)", underlying: error) }
        }
        if let etcd { _ = try etcdTLS(etcd) }
        if let live = etcd?.config {
            for (name, value) in [("app", live.app), ("environment", live.environment)] where value.isEmpty || value.contains("/") {
                throw ConfigurationError("etcd.config.\(name) must be non-empty and contain no / (it is \"\(value)\")")
            }
        }
    }

    /// The secret bytes, from ``secret`` or the variable named by ``secretEnv``.
    func secretBytes(environment: [String: String]) throws -> [UInt8] {
        if let name = secretEnv {
            guard let value = environment[name], !value.isEmpty else {
                throw ConfigurationError("secretEnv names \(name), which is not set")
            }
            return Array(value.utf8)
        }
        guard let secret, !secret.isEmpty else {
            throw ConfigurationError("set secretEnv (or secret) to the cluster's shared secret")
        }
        return Array(secret.utf8)
    }

    /// The actor system configuration this file describes.
    public func clusterConfiguration(environment: [String: String], logger: Logger) throws -> ClusterConfiguration {
        if let etcd {
            guard !etcd.endpoints.isEmpty else { throw ConfigurationError("etcd.endpoints must not be empty") }
            if let ttl = etcd.ttlSeconds, ttl < 1 { throw ConfigurationError("etcd.ttlSeconds must be at least 1") }
        } else {
            guard let members, !members.isEmpty else {
                throw ConfigurationError("set either etcd (dynamic membership) or members (a static list)")
            }
            guard members.contains(where: { $0.node == node }) else {
                throw ConfigurationError("members must list this node (\(node))")
            }
            guard Set(members.map(\.node)).count == members.count else {
                throw ConfigurationError("member names must be unique")
            }
            for member in members where !(1...65535).contains(member.port) {
                throw ConfigurationError("member \(member.node) has invalid port \(member.port)")
            }
        }
        try validateMongo(environment: environment)
        guard port != 0 else {
            throw ConfigurationError("port must be fixed (not 0) so other members can reach this node")
        }
        var configuration = ClusterConfiguration(
            clusterName: cluster, nodeName: node, host: host, port: port,
            secret: try secretBytes(environment: environment), logger: logger
        )
        if let callTimeoutMs { configuration.defaultCallTimeout = .milliseconds(callTimeoutMs) }
        if let idleTimeoutSeconds { configuration.idleTimeout = .seconds(idleTimeoutSeconds) }
        if let maxFrameBytes { configuration.maxFrameSize = maxFrameBytes }
        if let maxActivations { configuration.maxActivations = maxActivations }
        configuration.tls = tls
        try Self.checked(configuration)
        return configuration
    }

    /// The runtime's own checks of what the file describes, as configuration errors.
    static func checked(_ configuration: ClusterConfiguration) throws {
        do {
            try configuration.validate()
        } catch let error as ActorSystemError {
            throw ConfigurationError(error.message, underlying: error)
        }
    }

    /// The TLS of the etcd link: its own section, else the node's for `https://` endpoints, else none.
    public func etcdTLS(_ etcd: Etcd) throws -> TLSSettings? {
        let secure = etcd.endpoints.contains { $0.hasPrefix("https://") }
        if secure, etcd.tls == nil, tls == nil {
            throw ConfigurationError("etcd endpoints are https://: set tls (the node's identity and CA) or etcd.tls")
        }
        return secure ? etcd.tls ?? tls : etcd.tls
    }

    func validateMongo(environment: [String: String]) throws {
        if let mongo {
            _ = try mongo.settings(environment: environment, nodeTLS: tls)
            guard !mongo.database.isEmpty else { throw ConfigurationError("mongo.database must not be empty") }
            for index in mongo.stateIndexes ?? [] where index.split(separator: ",").contains(where: { !$0.hasPrefix("state.") && $0 != "type" && $0 != "key" }) {
                throw ConfigurationError("mongo.stateIndexes: \"\(index)\" must name fields of the state (state.…), type or key")
            }
            if mongo.actorState != false, etcd?.actorState == true {
                throw ConfigurationError("actor state can live in etcd or MongoDB, not both: set etcd.actorState or mongo.actorState to false")
            }
        }
    }

    /// The configuration of a client-only node that calls the cluster's actors without hosting any:
    /// it listens on an ephemeral port and is not a member.
    public func clientConfiguration(name: String, environment: [String: String], logger: Logger) throws -> ClusterConfiguration {
        var configuration = ClusterConfiguration(
            clusterName: cluster, nodeName: name, host: host, port: 0,
            secret: try secretBytes(environment: environment), logger: logger
        )
        if let callTimeoutMs { configuration.defaultCallTimeout = .milliseconds(callTimeoutMs) }
        configuration.tls = tls
        try Self.checked(configuration)
        return configuration
    }

    /// The static membership of ``members``; incarnations are learned at the handshake.
    public var membership: StaticMembership {
        StaticMembership(members: (members ?? []).map { member in
            ClusterMember(
                node: NodeID(name: member.node, host: member.host, port: member.port, incarnation: 0),
                actorTypes: member.actorTypes.map(Set.init)
            )
        })
    }
}
