import Foundation
import TroupeBus
import TroupeCore
import TroupeRedis
import TroupeTestSupport

/// `troupe bench bus`: produce → consume → ack through the bus on Redis Streams (1 KB bodies, 4 producers,
/// 4 consumer members), next to `redis-benchmark` doing raw XADD with the same 4 clients on the same
/// server (alternating rounds, each side's best); then latency at half of the measured maximum rate; then
/// the embedded engine.
public struct BusBenchmark: Sendable {
    /// Messages in each maximum-rate phase; TROUPE_BENCH_BUS_MESSAGES overrides (longer runs for profiling).
    public var messages = Int(ProcessInfo.processInfo.environment["TROUPE_BENCH_BUS_MESSAGES"] ?? "") ?? 40_000
    public var latencySeconds = 5.0
    public var producers = 4
    public var consumers = 4
    public var bodyBytes = 1024
    /// Sends each producer keeps outstanding in the extra, asynchronous-send phase.
    public var inFlight = 16
    /// Alternating rounds of the peer and of our maximum-rate phase; each side's best is reported (single
    /// runs on this shared 2-core machine swing by ±10–20 %, either side). TROUPE_BENCH_BUS_ROUNDS overrides.
    public var rounds = max(1, Int(ProcessInfo.processInfo.environment["TROUPE_BENCH_BUS_ROUNDS"] ?? "") ?? 2)

    public init() {}

    public func run(progress: @Sendable (String) -> Void) async throws -> BenchmarkReport {
        var report = BenchmarkReport(suite: "bus")
        guard TestEnv.which("redis-benchmark") != nil else { throw BenchmarkError("redis-benchmark is not installed (apt-get install redis-tools)") }
        let server = try await ServerProcess.redis()
        defer { server.terminate() }
        var configured = try RedisConfiguration(url: server.redisURL)
        // TROUPE_BENCH_BUS_POOL=N: the Redis client's pool size (default 4).
        if let pool = ProcessInfo.processInfo.environment["TROUPE_BENCH_BUS_POOL"].flatMap(Int.init) { configured.poolSize = pool }
        let configuration = configured
        let figures = try await withRedisClient(configuration) { redis in
            let engine = RedisBusEngine(redis: redis, blockingReads: configuration)
            defer { Task { await engine.close() } }
            return try await measure(engine: engine, label: "redis", progress: progress) { round in
                let rate = try peerXAdd(port: server.port)
                _ = try await redis.send(["DEL", "peer-bench"])  // each round starts from the same server state
                return rate
            }
        }
        report["peer_xadd_per_s"] = figures.peerRate
        report["e2e_msgs_per_s"] = figures.rate
        report["ratio_e2e_over_xadd"] = figures.rate / (report["peer_xadd_per_s"] ?? .nan)
        report["e2e_p50_ms"] = figures.p50
        report["e2e_p99_ms"] = figures.p99
        report["latency_test_rate_per_s"] = figures.pacedRate
        report["e2e_async16_msgs_per_s"] = figures.pipelinedRate
        report["ratio_async16_over_xadd"] = figures.pipelinedRate / (report["peer_xadd_per_s"] ?? .nan)
        let embedded = try await measure(engine: InMemoryBusEngine(), label: "embedded", progress: progress)
        report["embedded_msgs_per_s"] = embedded.rate
        report["embedded_p50_ms"] = embedded.p50
        report["embedded_p99_ms"] = embedded.p99
        report["embedded_async16_msgs_per_s"] = embedded.pipelinedRate
        return report
    }

    struct Figures {
        var rate = 0.0, p50 = 0.0, p99 = 0.0, pacedRate = 0.0, pipelinedRate = 0.0, peerRate = Double.nan
    }

    static func monotonicNanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// `peer`, given a round number, runs the peer and returns its rate; it runs before each of our rounds.
    private func measure(engine: any BusEngine, label: String, progress: @Sendable (String) -> Void,
                         peer: ((Int) async throws -> Double)? = nil) async throws -> Figures {
        var busConfiguration = BusConfiguration()
        busConfiguration.maxBodyBytes = 1 << 20
        // The consumers' pull batch wait is the default unless TROUPE_BENCH_BUS_PULL_WAIT_US says otherwise (0: none).
        if let wait = ProcessInfo.processInfo.environment["TROUPE_BENCH_BUS_PULL_WAIT_US"].flatMap(Int.init) {
            busConfiguration.pullBatchWait = .microseconds(wait)
        }
        let bus = try Bus(engine: engine, configuration: busConfiguration)
        let topic = "bench-\(label)"
        try await bus.createTopic(topic, queues: 8)
        let consumed = Locked(0)
        let latencies = Locked<[Double]>([])
        let recording = Locked(false)
        // TROUPE_BENCH_BUS_CONSUMERS_ON_LOOPS=1: consumers on the engine's event loops (`ConsumerExecution.engine`)
        // instead of the default, the cooperative pool.
        let onLoops = ProcessInfo.processInfo.environment["TROUPE_BENCH_BUS_CONSUMERS_ON_LOOPS"] == "1"
        let members = (0..<consumers).map { index in
            BusConsumer(bus: bus, group: "bench", topic: topic, listener: .concurrent { message in
                let sent = UInt64(message.properties["t"] ?? "0") ?? 0
                let latency = Double(Self.monotonicNanoseconds() &- sent) / 1e6
                if recording.withLock({ $0 }) { latencies.withLock { $0.append(latency) } }
                consumed.withLock { $0 += 1 }
                return .success
            }, instanceName: "m\(index)", concurrency: 64, execution: onLoops ? .engine : .globalPool)
        }
        let body = [UInt8](repeating: 0x61, count: bodyBytes)
        let producer = bus.producer(group: "bench")
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await bus.run() }
            for member in members { group.addTask { try await member.run() } }
            defer { group.cancelAll() }
            try await Task.sleep(for: .milliseconds(300))

            // 1. Maximum rate: everything sent as fast as the producers can, until all is acknowledged; in
            //    rounds alternating with the peer's, the best of each side kept.
            var figures = Figures()
            for round in 1...(peer == nil ? 1 : rounds) {
                var peerRate = Double.nan
                if let peer {
                    progress("round \(round): redis-benchmark XADD, \(producers) clients")
                    peerRate = try await peer(round)
                    figures.peerRate = max(figures.peerRate.isNaN ? 0 : figures.peerRate, peerRate)
                }
                progress("\(label): \(messages) messages, \(producers) producers, \(consumers) consumers")
                let before = consumed.withLock { $0 }
                let start = ContinuousClock.now
                let total = try await sendAll(producer, engine: engine, topic: topic, body: body, sendersPerProducer: 1)
                try await waitFor(before + total, consumed: consumed, timeout: .seconds(300))
                let rate = Double(total) / (ContinuousClock.now - start).seconds
                figures.rate = max(figures.rate, rate)
                if peer != nil { progress("round \(round): \(Int(rate)) msgs/s against \(Int(peerRate)) XADD/s (\(String(format: "%.3f", rate / peerRate)))") }
            }

            // 2. Latency at half of that rate, paced per producer.
            let paced = figures.rate / 2
            figures.pacedRate = paced
            progress("\(label): latency at \(Int(paced)) msgs/s for \(latencySeconds) s")
            recording.withLock { $0 = true }
            let before = consumed.withLock { $0 }
            let perProducer = Int(paced * latencySeconds) / producers
            let interval = Duration.seconds(Double(producers) / paced)
            try await withThrowingTaskGroup(of: Void.self) { senders in
                for _ in 0..<producers {
                    senders.addTask {
                        var next = ContinuousClock.now
                        for _ in 0..<perProducer {
                            next += interval
                            try await producer.send(OutgoingMessage(topic: topic, properties: ["t": String(Self.monotonicNanoseconds())], body: body))
                            if next > ContinuousClock.now { try await Task.sleep(until: next, clock: .continuous) }
                        }
                    }
                }
                try await senders.waitForAll()
            }
            try await waitFor(before + perProducer * producers, consumed: consumed, timeout: .seconds(120))
            recording.withLock { $0 = false }
            let sorted = latencies.withLock { $0 }.sorted()
            figures.p50 = sorted.isEmpty ? .nan : sorted[sorted.count / 2]
            figures.p99 = sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]

            // 3. For context, not the specified workload: each producer keeps `inFlight` sends outstanding
            //    (RocketMQ's asynchronous send; here concurrent `send` calls, pipelined on the connections).
            let inFlight = self.inFlight
            progress("\(label): \(messages) messages, \(producers) producers with \(inFlight) sends in flight each")
            let pipelinedBefore = consumed.withLock { $0 }
            let pipelinedStart = ContinuousClock.now
            let pipelined = try await sendAll(producer, engine: engine, topic: topic, body: body, sendersPerProducer: inFlight)
            try await waitFor(pipelinedBefore + pipelined, consumed: consumed, timeout: .seconds(300))
            figures.pipelinedRate = Double(pipelined) / (ContinuousClock.now - pipelinedStart).seconds
            return figures
        }
    }

    /// Sends `messages` (rounded down to a multiple of the senders) as fast as possible from `producers` ×
    /// `sendersPerProducer` concurrent loops, each producer's loops on one of the engine's preferred executors;
    /// returns how many were sent.
    private func sendAll(_ producer: BusProducer, engine: any BusEngine, topic: String, body: [UInt8], sendersPerProducer: Int) async throws -> Int {
        let perSender = messages / (producers * sendersPerProducer)
        try await withThrowingTaskGroup(of: Void.self) { senders in
            for _ in 0..<producers {
                let executor = engine.preferredExecutor
                for _ in 0..<sendersPerProducer {
                    senders.addTask(executorPreference: executor) {
                        for _ in 0..<perSender {
                            try await producer.send(OutgoingMessage(topic: topic, properties: ["t": String(Self.monotonicNanoseconds())], body: body))
                        }
                    }
                }
            }
            try await senders.waitForAll()
        }
        return perSender * producers * sendersPerProducer
    }

    /// Polls every millisecond (at most 1 ms added to a phase of about a second). A signal from the listener
    /// per message woke this task and set a timer each time — a cost of the benchmark, not of the bus.
    private func waitFor(_ count: Int, consumed: Locked<Int>, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while consumed.withLock({ $0 }) < count {
            guard ContinuousClock.now < deadline else { throw BenchmarkError("only \(consumed.withLock { $0 }) of \(count) messages consumed in \(timeout)") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// `redis-benchmark -c 4 XADD` with a 1 KB field, requests per second.
    private func peerXAdd(port: Int) throws -> Double {
        let value = String(repeating: "a", count: bodyBytes)
        let output = try ErlangPeerBenchmark.execute([
            "redis-benchmark", "-h", "127.0.0.1", "-p", String(port), "-c", String(producers), "-n", "100000", "--csv",
            "XADD", "peer-bench", "*", "m", value,
        ])
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            if fields.count >= 2, fields[0].hasPrefix("XADD"), let rate = Double(fields[1]) { return rate }
        }
        throw BenchmarkError("unexpected redis-benchmark output: \(output.prefix(400))")
    }
}
