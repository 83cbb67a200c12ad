import Foundation
import TroupeCore
import TroupeEtcd
import TroupeTestSupport

/// `troupe bench etcd`: put and range round trips with 1 and 32 callers against a local etcd, watch
/// delivery latency (put → event), and `etcdctl` timings of the same operations in the same run.
public struct EtcdBenchmark: Sendable {
    public var seconds = 3.0

    public init() {}

    public func run(progress: @Sendable (String) -> Void) async throws -> BenchmarkReport {
        var report = BenchmarkReport(suite: "etcd")
        let server = try await ServerProcess.etcd()
        do {
            let configuration = try EtcdConfiguration(endpoints: [server.endpoint])
            let figures = try await withEtcdClient(configuration) { etcd in
                var figures: [(String, Double)] = []
                try await etcd.put("/bench/key", "value")
                for callers in [1, 32] {
                    progress("put, \(callers) callers")
                    figures.append(("put_per_s_\(callers)", try await rate(callers: callers) { caller, index in
                        try await etcd.put("/bench/\(caller)", String(index))
                    }))
                    progress("range, \(callers) callers")
                    figures.append(("range_per_s_\(callers)", try await rate(callers: callers) { _, _ in
                        _ = try await etcd.get("/bench/key")
                    }))
                }
                progress("watch latency")
                let latencies = try await watchLatencies(etcd, count: 500)
                figures.append(("watch_p50_ms", Self.percentile(latencies, 0.5)))
                figures.append(("watch_p99_ms", Self.percentile(latencies, 0.99)))
                return figures
            }
            for (name, value) in figures { report[name] = value }
            progress("etcdctl")
            report["etcdctl_put_ms"] = try etcdctlMilliseconds(server.endpoint, ["put", "/bench/ctl", "v"])
            report["etcdctl_get_ms"] = try etcdctlMilliseconds(server.endpoint, ["get", "/bench/ctl"])
            report["troupe_put_ms_1"] = 1000 / (report["put_per_s_1"] ?? .nan)
            report["troupe_get_ms_1"] = 1000 / (report["range_per_s_1"] ?? .nan)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
        return report
    }

    private func rate(callers: Int, _ operation: @escaping @Sendable (Int, Int) async throws -> Void) async throws -> Double {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let start = ContinuousClock.now
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for caller in 0..<callers {
                group.addTask {
                    var count = 0
                    while ContinuousClock.now < deadline {
                        try await operation(caller, count)
                        count += 1
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        return Double(total) / (ContinuousClock.now - start).seconds
    }

    /// Put → watch event latency, one put at a time.
    private func watchLatencies(_ etcd: EtcdClient, count: Int) async throws -> [Double] {
        let arrivals = Locked<[String: ContinuousClock.Instant]>([:])
        var latencies: [Double] = []
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await etcd.watch("/watch-bench/", prefix: true) { update in
                    guard case .events(let events, _) = update else { return }
                    let now = ContinuousClock.now
                    arrivals.withLock { for event in events { $0[event.key] = now } }
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            for index in 0..<count {
                let key = "/watch-bench/\(index)"
                let sent = ContinuousClock.now
                try await etcd.put(key, "x")
                let deadline = ContinuousClock.now + .seconds(5)
                while arrivals.withLock({ $0[key] }) == nil {
                    guard ContinuousClock.now < deadline else { throw BenchmarkError("no watch event for \(key)") }
                    try await Task.sleep(for: .microseconds(50))
                }
                if let arrived = arrivals.withLock({ $0[key] }) { latencies.append((arrived - sent).seconds * 1000) }
            }
            group.cancelAll()
        }
        return latencies.sorted()
    }

    /// Median wall time of one `etcdctl` invocation (process start included: that is what a shell script pays).
    private func etcdctlMilliseconds(_ endpoint: String, _ arguments: [String]) throws -> Double {
        var times: [Double] = []
        for _ in 0..<15 {
            let start = ContinuousClock.now
            _ = try ErlangPeerBenchmark.execute(["etcdctl", "--endpoints=\(endpoint)"] + arguments)
            times.append((ContinuousClock.now - start).seconds * 1000)
        }
        return Self.percentile(times.sorted(), 0.5)
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}
