import Foundation

/// A Redis Cluster of `masters` primaries (no replicas) on loopback, built with `redis-cli --cluster create`.
public final class RedisClusterFixture: Sendable {
    public let servers: [ServerProcess]

    private init(servers: [ServerProcess]) {
        self.servers = servers
    }

    public var ports: [Int] { servers.map(\.port) }

    public static func start(masters: Int = 3) async throws -> RedisClusterFixture {
        var servers: [ServerProcess] = []
        do {
            for _ in 0..<masters {
                // The cluster bus gets a free port of its own (by default it is port + 10000, which another
                // process may hold); a start that still loses a port race is tried again on new ports.
                var attempt = 0
                while true {
                    attempt += 1
                    do {
                        let busPort = try await ServerProcess.freePort()
                        servers.append(try await ServerProcess.redis(extraArguments: [
                            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                            "--cluster-port", String(busPort),
                        ]))
                        break
                    } catch where attempt < 3 {
                        continue
                    }
                }
            }
            let fixture = RedisClusterFixture(servers: servers)
            _ = try await run(["redis-cli", "--cluster", "create"] + servers.map { "127.0.0.1:\($0.port)" }
                + ["--cluster-replicas", "0", "--cluster-yes"])
            try await fixture.waitUntilHealthy()
            return fixture
        } catch {
            for server in servers { await server.shutdown() }
            throw error
        }
    }

    /// Waits until every node reports `cluster_state:ok`.
    public func waitUntilHealthy(timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            var healthy = true
            for server in servers where healthy {
                healthy = try await Self.cli(server.port, ["CLUSTER", "INFO"]).contains("cluster_state:ok")
            }
            if healthy { return }
            guard ContinuousClock.now < deadline else {
                throw ServerProcess.LaunchError(description: "the Redis cluster did not become healthy")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Runs `redis-cli -p port args…` and returns its output.
    @discardableResult
    public static func cli(_ port: Int, _ arguments: [String]) async throws -> String {
        try await run(["redis-cli", "-p", String(port)] + arguments)
    }

    public func shutdown() async {
        for server in servers { await server.shutdown() }
    }

    @discardableResult
    static func run(_ arguments: [String]) async throws -> String {
        // On a thread of its own: `--cluster create` sleeps while the nodes join, and a blocked cooperative
        // thread (one of two here) stalls every other suite running meanwhile.
        try await Command.runDetached(arguments, timeout: .seconds(120))
    }
}
