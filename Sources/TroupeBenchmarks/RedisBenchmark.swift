import Foundation
import NIOCore
import TroupeRESP
import TroupeRedis
import TroupeTestSupport
import TroupeCore

/// `troupe bench redis`: our client and `redis-benchmark` against the same local redis-server, in one
/// run, with the same number of concurrent clients (50) and pipeline depth (1 and 16).
public struct RedisBenchmark: Sendable {
    public struct Options: Sendable {
        public var clients = 50
        public var seconds = 3.0
        public var requests = 300_000
        /// Alternating rounds per pipeline depth (ours, then the peer's); the best round of each is reported.
        public var rounds = 2
        public var poolSize = Int(ProcessInfo.processInfo.environment["TROUPE_BENCH_REDIS_POOL"] ?? "") ?? 4
        public init() {}
    }

    public let options: Options

    public init(options: Options = Options()) {
        self.options = options
    }

    public func run(progress: @Sendable (String) -> Void) async throws -> BenchmarkReport {
        guard TestEnv.which("redis-benchmark") != nil else {
            throw BenchmarkError("redis-benchmark is not installed (apt-get install redis-tools)")
        }
        var report = BenchmarkReport(suite: "redis")
        let server = try await ServerProcess.redis()
        do {
            var configuration = try RedisConfiguration(url: server.redisURL)
            configuration.poolSize = options.poolSize
            report["troupe_pool_connections"] = Double(options.poolSize)
            report["clients"] = Double(options.clients)
            let figures = try await withRedisClient(configuration) { redis in
                var figures: [(String, Double)] = []
                for depth in [1, 16] {
                    // Alternating rounds, the best of each side kept: the machine is shared and one
                    // unlucky run of either side would otherwise decide the ratio.
                    var ours = 0.0, peer = 0.0
                    for round in 1...options.rounds {
                        progress("round \(round): troupe client, \(options.clients) callers, pipeline \(depth)")
                        ours = max(ours, try await measure(redis, depth: depth))
                        progress("round \(round): redis-benchmark -c \(options.clients) -P \(depth)")
                        peer = max(peer, try peerOpsPerSecond(port: server.port, depth: depth))
                    }
                    figures += [("troupe_ops_per_s_p\(depth)", ours), ("peer_ops_per_s_p\(depth)", peer), ("ratio_p\(depth)", ours / peer)]
                }
                return figures
            }
            for (name, value) in figures { report[name] = value }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
        return report
    }

    /// Callers alternate SET and GET (like `redis-benchmark -t set,get`, 3-byte values) for `seconds`.
    private func measure(_ redis: RedisClient, depth: Int) async throws -> Double {
        let value = ByteBuffer(string: "xxx")
        let deadline = ContinuousClock.now + .milliseconds(Int(options.seconds * 1000))
        let start = ContinuousClock.now
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for caller in 0..<options.clients {
                group.addTask {
                    var operations = 0
                    let key = "key:\(caller)"
                    while ContinuousClock.now < deadline {
                        if depth == 1 {
                            if operations.isMultiple(of: 2) {
                                _ = try await redis.send(["SET", key, value])
                            } else {
                                _ = try await redis.send(["GET", key])
                            }
                            operations += 1
                        } else {
                            let commands: [[any RESPArgument]] = (0..<depth).map { index in
                                index.isMultiple(of: 2) ? ["SET", key, value] : ["GET", key]
                            }
                            let replies = try await redis.pipeline(commands)
                            guard replies.count == depth, !replies.contains(where: \.isError) else {
                                throw BenchmarkError("a pipelined command failed")
                            }
                            operations += depth
                        }
                    }
                    return operations
                }
            }
            return try await group.reduce(0, +)
        }
        return Double(total) / (ContinuousClock.now - start).seconds
    }

    /// `redis-benchmark -t set,get`: total requests over total time of both tests.
    private func peerOpsPerSecond(port: Int, depth: Int) throws -> Double {
        let output = try ErlangPeerBenchmark.execute([
            "redis-benchmark", "-h", "127.0.0.1", "-p", String(port), "-c", String(options.clients),
            "-n", String(options.requests * (depth == 1 ? 1 : 4)), "-P", String(depth), "-t", "set,get", "--csv",
        ])
        let rates = output.split(separator: "\n").compactMap { line -> Double? in
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            guard fields.count >= 2, fields[0] == "SET" || fields[0] == "GET" else { return nil }
            return Double(fields[1])
        }
        guard rates.count == 2 else { throw BenchmarkError("unexpected redis-benchmark output: \(output.prefix(400))") }
        return 2 / (1 / rates[0] + 1 / rates[1])
    }
}
