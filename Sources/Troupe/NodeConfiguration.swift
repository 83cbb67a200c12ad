import Foundation
import Logging
import TroupeActors
import TroupeMongo

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
public struct NodeConfiguration: Codable, Sendable, Equatable {
    public struct Member: Codable, Sendable, Equatable {
        public var node: String
        public var host: String
        public var port: Int
        /// Virtual actor types the member hosts; absent: all.
        public var actorTypes: [String]?
    }

    public var cluster: String
    public var node: String
    public var host: String
    public var port: Int
    /// The cluster secret itself (discouraged outside development)…
    public var secret: String?
    /// …or the name of the environment variable that holds it.
    public var secretEnv: String?
    /// The static member list, used when ``etcd`` is absent.
    public var members: [Member]?
    /// Membership through etcd: every node registers itself under a lease and watches the others.
    public var etcd: Etcd?

    public struct Etcd: Codable, Sendable, Equatable {
        public var endpoints: [String]
        public var username: String?
        /// The name of the environment variable holding the etcd password.
        public var passwordEnv: String?
        /// Time to live of this node's registration; a dead node disappears after it.
        public var ttlSeconds: Int?
        /// Keep actor state in etcd too (shared by every node, so it survives a node's death).
        public var actorState: Bool?
    }
    /// MongoDB for actor state (and the document store): `{"uriEnv": "MONGO_URI", "database": "shop"}`.
    public var mongo: Mongo?

    public struct Mongo: Codable, Sendable, Equatable {
        /// The connection string itself (it may hold a password: prefer ``uriEnv``)…
        public var uri: String?
        /// …or the name of the environment variable that holds it.
        public var uriEnv: String?
        public var database: String
        /// Keep actor state in this database (default true).
        public var actorState: Bool?

        /// The connection string, from ``uri`` or the variable named by ``uriEnv``.
        public func connectionString(environment: [String: String]) throws -> String {
            if let uriEnv {
                guard let value = environment[uriEnv], !value.isEmpty else {
                    throw ActorSystemError(.invalidConfiguration, "mongo.uriEnv names \(uriEnv), which is not set")
                }
                return value
            }
            guard let uri, !uri.isEmpty else { throw ActorSystemError(.invalidConfiguration, "set mongo.uriEnv (or mongo.uri) to a mongodb:// connection string") }
            return uri
        }
    }

    public var callTimeoutMs: Int?
    public var idleTimeoutSeconds: Int?
    public var maxFrameBytes: Int?

    /// Reads and validates a configuration file.
    /// - Throws: ``ActorSystemError/Code/invalidConfiguration`` saying what to fix.
    public static func load(path: String, environment: [String: String]) throws -> NodeConfiguration {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ActorSystemError(.invalidConfiguration, "cannot read the configuration file \(path)", underlying: error)
        }
        let configuration: NodeConfiguration
        do {
            configuration = try JSONDecoder().decode(NodeConfiguration.self, from: data)
        } catch {
            throw ActorSystemError(.invalidConfiguration, "\(path) is not a valid node configuration: \(error)", underlying: error)
        }
        _ = try configuration.clusterConfiguration(environment: environment, logger: Logger(label: "troupe.config"))
        return configuration
    }

    /// The secret bytes, from ``secret`` or the variable named by ``secretEnv``.
    func secretBytes(environment: [String: String]) throws -> [UInt8] {
        if let name = secretEnv {
            guard let value = environment[name], !value.isEmpty else {
                throw ActorSystemError(.invalidConfiguration, "secretEnv names \(name), which is not set")
            }
            return Array(value.utf8)
        }
        guard let secret, !secret.isEmpty else {
            throw ActorSystemError(.invalidConfiguration, "set secretEnv (or secret) to the cluster's shared secret")
        }
        return Array(secret.utf8)
    }

    /// The actor system configuration this file describes.
    public func clusterConfiguration(environment: [String: String], logger: Logger) throws -> ClusterConfiguration {
        if let etcd {
            guard !etcd.endpoints.isEmpty else { throw ActorSystemError(.invalidConfiguration, "etcd.endpoints must not be empty") }
            if let ttl = etcd.ttlSeconds, ttl < 1 { throw ActorSystemError(.invalidConfiguration, "etcd.ttlSeconds must be at least 1") }
        } else {
            guard let members, !members.isEmpty else {
                throw ActorSystemError(.invalidConfiguration, "set either etcd (dynamic membership) or members (a static list)")
            }
            guard members.contains(where: { $0.node == node }) else {
                throw ActorSystemError(.invalidConfiguration, "members must list this node (\(node))")
            }
            guard Set(members.map(\.node)).count == members.count else {
                throw ActorSystemError(.invalidConfiguration, "member names must be unique")
            }
            for member in members where !(1...65535).contains(member.port) {
                throw ActorSystemError(.invalidConfiguration, "member \(member.node) has invalid port \(member.port)")
            }
        }
        if let mongo {
            do {
                _ = try MongoClientSettings(try mongo.connectionString(environment: environment))
            } catch let error as MongoError {
                throw ActorSystemError(.invalidConfiguration, "mongo: \(error.message)", underlying: error)
            }
            guard !mongo.database.isEmpty else { throw ActorSystemError(.invalidConfiguration, "mongo.database must not be empty") }
            if mongo.actorState != false, etcd?.actorState == true {
                throw ActorSystemError(.invalidConfiguration, "actor state can live in etcd or MongoDB, not both: set etcd.actorState or mongo.actorState to false")
            }
        }
        guard port != 0 else {
            throw ActorSystemError(.invalidConfiguration, "port must be fixed (not 0) so other members can reach this node")
        }
        var configuration = ClusterConfiguration(
            clusterName: cluster, nodeName: node, host: host, port: port,
            secret: try secretBytes(environment: environment), logger: logger
        )
        if let callTimeoutMs { configuration.defaultCallTimeout = .milliseconds(callTimeoutMs) }
        if let idleTimeoutSeconds { configuration.idleTimeout = .seconds(idleTimeoutSeconds) }
        if let maxFrameBytes { configuration.maxFrameSize = maxFrameBytes }
        try configuration.validate()
        return configuration
    }

    /// The configuration of a client-only node that calls the cluster's actors without hosting any:
    /// it listens on an ephemeral port and is not a member.
    public func clientConfiguration(name: String, environment: [String: String], logger: Logger) throws -> ClusterConfiguration {
        var configuration = ClusterConfiguration(
            clusterName: cluster, nodeName: name, host: host, port: 0,
            secret: try secretBytes(environment: environment), logger: logger
        )
        if let callTimeoutMs { configuration.defaultCallTimeout = .milliseconds(callTimeoutMs) }
        try configuration.validate()
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
