import Foundation
import TroupeTestSupport

/// The processes of a fault-injection run: etcd, Redis (AOF on disk) and SecantusDB (on disk), then three
/// `troupe node` and two `troupe gateway` processes of this same executable, each on its own ports with its
/// own configuration file. Every process can be killed, frozen and restarted on the same data. With a
/// ``ChaosNetwork`` each node runs in a network namespace of its own and can be partitioned away; without
/// one everything is on the loopback.
final class ChaosCluster: Sendable {
    static let cluster = "chaos"
    static let membershipTTL = 5

    let etcd: ServerProcess
    let redis: ServerProcess
    let mongo: ServerProcess
    let nodes: [ServerProcess]
    let gateways: [ServerProcess]
    let directory: URL
    let paymentTimeoutSeconds: Int
    let network: ChaosNetwork?

    private init(etcd: ServerProcess, redis: ServerProcess, mongo: ServerProcess, nodes: [ServerProcess], gateways: [ServerProcess],
                 directory: URL, paymentTimeoutSeconds: Int, network: ChaosNetwork?) {
        self.network = network
        self.etcd = etcd
        self.redis = redis
        self.mongo = mongo
        self.nodes = nodes
        self.gateways = gateways
        self.directory = directory
        self.paymentTimeoutSeconds = paymentTimeoutSeconds
    }

    /// The `troupe` executable that runs the nodes and gateways (this process's own binary).
    static var executable: String { URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path }

    /// Secrets the nodes and gateways read from the environment (inherited by the processes launched).
    static func exportSecrets() {
        setenv("TROUPE_CHAOS_SECRET", "chaos-cluster-secret-0123456789abcdef", 1)
        setenv("TROUPE_CHAOS_JWT_SECRET", "chaos-token-secret-0123456789abcdef0123", 1)
    }

    static func start(nodes nodeCount: Int = 3, gateways gatewayCount: Int = 2, paymentTimeoutSeconds: Int, namespaces: Bool,
                      progress: @Sendable (String) -> Void) async throws -> ChaosCluster {
        exportSecrets()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-chaos-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var network: ChaosNetwork?
        if namespaces {
            network = try ChaosNetwork.create(nodes: nodeCount)
            progress("network namespaces: nodes at \((1...nodeCount).compactMap { network?.address(ofNode: $0) }.joined(separator: ", ")), servers at \(network?.hub ?? "")")
        }
        let hub = network?.hub ?? "127.0.0.1"
        progress("starting etcd, Redis (AOF) and SecantusDB (on disk)")
        var servers: [ServerProcess] = []
        var nodes: [ServerProcess] = []
        var gateways: [ServerProcess] = []
        do {
            let etcd = try await ServerProcess.etcd(host: hub)
            servers.append(etcd)
            let redis = try await ServerProcess.redis(host: hub, extraArguments: ["--appendonly", "yes", "--appendfsync", "always"])
            servers.append(redis)
            let mongo = try await ServerProcess.mongo(host: hub)
            servers.append(mongo)
            let endpoints = Endpoints(etcd: etcd.endpoint, redis: redis.redisURL, mongo: mongo.mongoURL, paymentTimeoutSeconds: paymentTimeoutSeconds)
            for index in 1...nodeCount {
                progress("starting node-\(index)")
                nodes.append(try await launchTroupe(role: "node", name: "node-\(index)", directory: directory, endpoints: endpoints,
                                                    host: network?.address(ofNode: index) ?? "127.0.0.1", prefix: network?.prefix(forNode: index) ?? []))
            }
            for index in 1...gatewayCount {
                progress("starting gateway-\(index)")
                gateways.append(try await launchTroupe(role: "gateway", name: "gateway-\(index)", directory: directory, endpoints: endpoints,
                                                       host: hub, prefix: []))
            }
            return ChaosCluster(etcd: etcd, redis: redis, mongo: mongo, nodes: nodes, gateways: gateways, directory: directory,
                                paymentTimeoutSeconds: paymentTimeoutSeconds, network: network)
        } catch {
            for process in nodes + gateways + servers { await process.stop(signal: SIGKILL) }
            network?.remove()
            throw error
        }
    }

    /// Where the servers are, as the troupe processes' configuration names them.
    struct Endpoints: Sendable {
        var etcd: String
        var redis: String
        var mongo: String
        var paymentTimeoutSeconds: Int
    }

    var endpoints: Endpoints {
        Endpoints(etcd: etcd.endpoint, redis: redis.redisURL, mongo: mongo.mongoURL, paymentTimeoutSeconds: paymentTimeoutSeconds)
    }

    /// The JSON configuration of one process (the gateway's also serves as the audit's client configuration):
    /// its cluster transport on `host`, a gateway's HTTP listener on the loopback.
    static func configuration(role: String, name: String, host: String, clusterPort: Int, httpPort: Int?, endpoints: Endpoints) -> [String: Any] {
        var document: [String: Any] = [
            "cluster": cluster, "node": name, "host": host, "port": clusterPort, "secretEnv": "TROUPE_CHAOS_SECRET",
            "etcd": ["endpoints": [endpoints.etcd], "ttlSeconds": membershipTTL],
            "mongo": ["uri": endpoints.mongo, "database": "shop"],
            "redis": ["url": endpoints.redis],
            "shop": ["paymentTimeoutSeconds": endpoints.paymentTimeoutSeconds, "passwordRounds": 1_000],
            "callTimeoutMs": 5_000,
        ]
        if let httpPort {
            document["gateway"] = [
                "host": "127.0.0.1", "port": httpPort, "jwtSecretEnv": "TROUPE_CHAOS_JWT_SECRET", "issuer": "troupe", "audience": cluster,
                "maxInFlight": 1024, "loginAttemptsPerMinute": 600, "loginAttemptsPerAddressPerMinute": 6000,
            ] as [String: Any]
        }
        return document
    }

    static func write(_ document: [String: Any], to url: URL) throws {
        try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys]).write(to: url)
    }

    private static func launchTroupe(role: String, name: String, directory: URL, endpoints: Endpoints, host: String,
                                     prefix: [String]) async throws -> ServerProcess {
        let clusterPort = role == "gateway" ? try await ServerProcess.freePort() : nil
        let path = directory.appendingPathComponent("\(name).json")
        // The port `launch` waits on: the cluster port of a node (on its host), the HTTP port of a gateway (loopback).
        return try await ServerProcess.launch("troupe", installHint: "build the troupe executable", host: role == "gateway" ? "127.0.0.1" : host,
                                              prefix: prefix, executable: executable, startTimeout: .seconds(90)) { port, _ in
            let document = configuration(role: role, name: name, host: host, clusterPort: clusterPort ?? port, httpPort: role == "gateway" ? port : nil,
                                         endpoints: endpoints)
            try? write(document, to: path)
            // TROUPE_CHAOS_LOG_LEVEL=info (or debug) for a closer look at a run.
            return [role, "--config", path.path, "--log-level", ProcessInfo.processInfo.environment["TROUPE_CHAOS_LOG_LEVEL"] ?? "warning"]
        }
    }

    /// A configuration for an in-process client of the cluster (the seeding and the audit).
    func clientConfiguration(name: String) async throws -> String {
        let path = directory.appendingPathComponent("\(name).json")
        // The HTTP port is never listened on (the client runs without its listener).
        let document = Self.configuration(role: "gateway", name: name, host: network?.hub ?? "127.0.0.1", clusterPort: try await ServerProcess.freePort(),
                                          httpPort: 1, endpoints: endpoints)
        try Self.write(document, to: path)
        return path.path
    }

    /// Stops everything (SIGKILL for the troupe processes, which hold nothing that must be flushed).
    func shutdown(keepFiles: Bool) async {
        for process in gateways + nodes { await process.stop(signal: SIGKILL) }
        for process in [mongo, redis, etcd] { await process.stop() }
        network?.remove()
        if !keepFiles {
            for process in gateways + nodes + [mongo, redis, etcd] { try? FileManager.default.removeItem(at: process.directory) }
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// Where the processes' logs are (for a failed run).
    var logs: [String] {
        (nodes + gateways + [etcd, redis, mongo]).map { $0.directory.appendingPathComponent("server.log").path }
    }
}

/// One fault: how it is injected and undone.
public enum ChaosFault: String, Sendable, CaseIterable {
    /// SIGKILL of node-2, restarted after the membership TTL + 1 s.
    case node
    /// SIGKILL of gateway-1, restarted after 2 s (its users move to the other gateway meanwhile).
    case gateway
    /// SIGKILL of redis-server, restarted at once on the same AOF.
    case redis
    /// etcd stopped for 15 s, then restarted on the same data.
    case etcd
    /// SIGKILL of SecantusDB, restarted on the same data.
    case mongo
    /// node-3 cut off the network (its veth down: packets to and from it vanish) for the membership TTL + 5 s,
    /// then reconnected. Its membership lease expires, its keys move to the others; it keeps running, cannot
    /// reach etcd, Redis or MongoDB, and must not serve the keys it lost once it is back. Needs the nodes in
    /// network namespaces (root and iproute2).
    case partition
    /// node-3 frozen (SIGSTOP) for 10 s, then thawed: to the others it is gone — its membership lease expires
    /// and its keys move — and when it wakes it still believes it owns them, the stale owner that fencing
    /// exists for (a process pause, as under a long GC or a stalled VM).
    case pause

    /// Why this machine cannot inject the fault (nil when it can).
    public var unavailableReason: String? {
        self == .partition ? ChaosNetwork.unavailableReason : nil
    }

    func inject(_ cluster: ChaosCluster, progress: @Sendable (String) -> Void) async throws {
        switch self {
        case .node: try await Self.kill(cluster.nodes[1], "node-2", down: .seconds(ChaosCluster.membershipTTL + 1), progress: progress)
        case .gateway: try await Self.kill(cluster.gateways[0], "gateway-1", down: .seconds(2), progress: progress)
        case .redis: try await Self.kill(cluster.redis, "redis-server (restarted on its AOF)", down: .zero, progress: progress)
        case .etcd: try await Self.kill(cluster.etcd, "etcd", down: .seconds(15), progress: progress)
        case .mongo: try await Self.kill(cluster.mongo, "SecantusDB (restarted on its data)", down: .zero, progress: progress)
        case .partition:
            guard let network = cluster.network else { throw ChaosError("the partition fault needs the nodes in network namespaces") }
            let seconds = ChaosCluster.membershipTTL + 5
            progress("partitioning node-3 from the network for \(seconds) s")
            try network.partition(node: 3)
            try await Task.sleep(for: .seconds(seconds))
            progress("reconnecting node-3")
            try network.heal(node: 3)
        case .pause:
            progress("freezing node-3 for 10 s")
            cluster.nodes[2].send(SIGSTOP)
            try await Task.sleep(for: .seconds(10))
            progress("thawing node-3")
            cluster.nodes[2].send(SIGCONT)
        }
    }

    /// SIGKILL, `down` without the process, then the same process again (same ports, same data).
    private static func kill(_ process: ServerProcess, _ name: String, down: Duration, progress: @Sendable (String) -> Void) async throws {
        progress("SIGKILL \(name)")
        await process.stop(signal: SIGKILL)
        if down > .zero { try await Task.sleep(for: down) }
        progress("restarting \(name.split(separator: " ").first ?? "")")
        try await process.start()
    }
}
