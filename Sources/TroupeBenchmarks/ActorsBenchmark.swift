import Distributed
import Logging
import TroupeActors
import TroupeCore
import TroupeTestSupport

/// `troupe bench actors`: native actor calls, same-node virtual actor calls, remote calls over
/// loopback TCP (sequential latency, throughput with 1 and 64 callers), and the raw TCP echo floor.
public struct ActorsBenchmark: Sendable {
    public struct Options: Sendable {
        public var localCalls = 2_000_000
        public var sequentialCalls = 20_000
        public var throughputSeconds = 3.0
        public var concurrentCallers = 64
        public var echoRoundTrips = 20_000
        public init() {}
    }

    public let options: Options

    public init(options: Options = Options()) {
        self.options = options
    }

    public func run(progress: @Sendable (String) -> Void) async throws -> BenchmarkReport {
        var report = BenchmarkReport(suite: "actors")

        progress("native actor calls")
        let native = try await nativeActorCallNanoseconds()
        report["native_actor_call_ns"] = native

        // Two nodes of one cluster on loopback TCP in this process (the same set-up as troupe-instructions).
        let cluster = LocalCluster(clusterName: "bench", secret: Array("benchmark-secret-benchmark-secret".utf8), callTimeout: .seconds(30))
        report = try await cluster.run(nodes: 2, register: { $0.register(Pinger.self) }) { [report, options] systems in
            var report = report
            let (a, b) = (systems[0], systems[1])

            progress("same-node virtual actor calls")
            let localKey = a.firstKeyOwned(type: Pinger.virtualTypeName)
            let local = try await a.actor(Pinger.self, key: localKey)
            report["local_virtual_call_ns"] = try await localVirtualCallNanoseconds(local)
            let routedLocal = try a.reference(Pinger.self, key: localKey)
            report["local_routed_call_ns"] = try await localVirtualCallNanoseconds(routedLocal, calls: options.localCalls / 20)

            progress("remote calls, sequential")
            let remote = try await a.actor(Pinger.self, key: b.firstKeyOwned(type: Pinger.virtualTypeName))
            for index in 0..<2_000 { _ = try await remote.ping(index) }  // warm-up
            var latencies: [Double] = []
            latencies.reserveCapacity(options.sequentialCalls)
            let sequentialStart = ContinuousClock.now
            for index in 0..<options.sequentialCalls {
                let began = ContinuousClock.now
                _ = try await remote.ping(index)
                latencies.append((ContinuousClock.now - began).seconds * 1e6)
            }
            let sequentialSeconds = (ContinuousClock.now - sequentialStart).seconds
            latencies.sort()
            report["remote_call_p50_us"] = Self.percentile(latencies, 0.50)
            report["remote_call_p99_us"] = Self.percentile(latencies, 0.99)
            report["remote_calls_per_s_1"] = Double(options.sequentialCalls) / sequentialSeconds

            progress("remote calls, \(options.concurrentCallers) callers")
            // Callers spread over many keys owned by the other node, as real traffic would be.
            let keys = (0..<options.concurrentCallers).map { b.firstKeyOwned(type: Pinger.virtualTypeName, prefix: "c\($0)") }
            report["remote_calls_per_s_\(options.concurrentCallers)"] = try await throughput(a, keys: keys)
            return report
        }

        progress("raw TCP echo")
        let echo = try await TCPEchoBenchmark(roundTrips: options.echoRoundTrips).run()
        report["tcp_echo_p50_us"] = echo.p50
        report["tcp_echo_p99_us"] = echo.p99

        if ErlangPeerBenchmark.isAvailable {
            progress("Erlang/OTP distribution ping-pong (peer)")
            let erlang = try ErlangPeerBenchmark(
                sequentialCalls: options.sequentialCalls, callers: options.concurrentCallers, seconds: Int(options.throughputSeconds.rounded())
            ).run()
            report["erlang_p50_us"] = erlang.p50Microseconds
            report["erlang_p99_us"] = erlang.p99Microseconds
            report["erlang_calls_per_s_1"] = erlang.sequentialPerSecond
            report["erlang_calls_per_s_\(options.concurrentCallers)"] = erlang.concurrentPerSecond
            report["remote_p50_over_erlang_p50"] = (report["remote_call_p50_us"] ?? .nan) / erlang.p50Microseconds
            report["remote_throughput_over_erlang"] =
                (report["remote_calls_per_s_\(options.concurrentCallers)"] ?? .nan) / erlang.concurrentPerSecond
        } else {
            progress("Erlang/OTP not installed (apt-get install erlang-nox): its peer figures are left out")
        }

        report["local_virtual_over_native"] = (report["local_virtual_call_ns"] ?? .nan) / native
        report["remote_p50_over_tcp_echo_p50"] = (report["remote_call_p50_us"] ?? .nan) / echo.p50
        return report
    }

    private func nativeActorCallNanoseconds() async throws -> Double {
        let counter = NativeCounter()
        for _ in 0..<10_000 { _ = await counter.ping(1) }
        let start = ContinuousClock.now
        var sum = 0
        for index in 0..<options.localCalls { sum &+= await counter.ping(index) }
        let elapsed = ContinuousClock.now - start
        precondition(sum != 42, "keeps the loop from being optimised away")
        return elapsed.seconds * 1e9 / Double(options.localCalls)
    }

    private func localVirtualCallNanoseconds(_ pinger: Pinger, calls: Int? = nil) async throws -> Double {
        let calls = calls ?? options.localCalls
        for index in 0..<10_000 { _ = try await pinger.ping(index) }
        let start = ContinuousClock.now
        var sum = 0
        for index in 0..<calls { sum &+= try await pinger.ping(index) }
        let elapsed = ContinuousClock.now - start
        precondition(sum != 42, "keeps the loop from being optimised away")
        return elapsed.seconds * 1e9 / Double(calls)
    }

    func throughput(_ caller: ClusterActorSystem, keys: [String]) async throws -> Double {
        let duration = Duration.seconds(options.throughputSeconds)
        let pingers = try await withThrowingTaskGroup(of: Pinger.self) { group in
            for key in keys { group.addTask { try await caller.actor(Pinger.self, key: key) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for pinger in pingers { _ = try await pinger.ping(0) }
        let start = ContinuousClock.now
        let deadline = start + duration
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for pinger in pingers {
                group.addTask {
                    var calls = 0
                    while ContinuousClock.now < deadline {
                        _ = try await pinger.ping(calls)
                        calls += 1
                    }
                    return calls
                }
            }
            return try await group.reduce(0, +)
        }
        return Double(total) / (ContinuousClock.now - start).seconds
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}

/// The peer of the same-node figures: a plain Swift actor.
actor NativeCounter {
    var total = 0
    func ping(_ value: Int) -> Int {
        total &+= value
        return total
    }
}

/// The benchmark's virtual actor: one argument in, one result out.
distributed actor Pinger: VirtualActor {
    typealias ActorSystem = ClusterActorSystem
    var total = 0

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    distributed func ping(_ value: Int) -> Int {
        total &+= value
        return total
    }
}
