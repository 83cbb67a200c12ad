import Distributed
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TroupeActors
import TroupeCache
import TroupeCore
import TroupeGateway
import TroupeTestSupport
import TroupeTLS

/// `troupe bench actors --tls` and `troupe bench gateway --tls`: what TLS costs, next to plaintext, in
/// the same run, over alternating rounds (medians and ranges reported).
///
/// - actors: two nodes on loopback, remote calls (sequential p50, throughput with 64 callers), once with
///   plaintext and once with mutual TLS 1.3 (certificates from a fresh development CA), alternating.
/// - gateway: our gateway on HTTPS proxying to a plain upstream, next to nginx with `listen … ssl` and the
///   same certificate proxying to the same upstream, both driven by `wrk` over HTTPS with keep-alive.
public struct TLSBenchmark: Sendable {
    public struct Options: Sendable {
        public var rounds = 3
        public var sequentialCalls = 10_000
        public var throughputSeconds = 3.0
        public var callers = 64
        public var wrkThreads = 2
        public var wrkConnections = 64
        public var wrkSeconds = 10
        public init() {}
    }

    public let options: Options

    public init(options: Options = Options()) {
        self.options = options
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
    }

    static func record(_ report: inout BenchmarkReport, _ name: String, _ values: [Double]) {
        report[name] = median(values)
        report[name + "_min"] = values.min() ?? .nan
        report[name + "_max"] = values.max() ?? .nan
    }

    // MARK: - Actors

    public func runActors(progress: @Sendable (String) -> Void) async throws -> BenchmarkReport {
        var report = BenchmarkReport(suite: "actors-tls")
        let certificates = try TestCertificates()  // its directory goes with it
        defer { withExtendedLifetime(certificates) {} }
        let authority = certificates.authority
        func identity(_ name: String) throws -> TLSSettings {
            let issued = try authority.issue(name: name, hosts: ["127.0.0.1"])
            return TLSSettings(certificate: issued.certificate, privateKey: issued.privateKey, ca: authority.certificatePath)
        }
        let tls = (a: try identity("bench-a"), b: try identity("bench-b"))
        var figures: [String: [Double]] = [:]
        for round in 1 ... options.rounds {
            for secure in [false, true] {
                let mode = secure ? "tls" : "plaintext"
                progress("round \(round): remote calls, \(mode)")
                let (p50, throughput) = try await remotePair(tls: secure ? tls : nil)
                figures["\(mode)_p50_us", default: []].append(p50)
                figures["\(mode)_calls_per_s_\(options.callers)", default: []].append(throughput)
            }
        }
        for mode in ["plaintext", "tls"] {
            Self.record(&report, "\(mode)_p50_us", figures["\(mode)_p50_us"] ?? [])
            Self.record(&report, "\(mode)_calls_per_s_\(options.callers)", figures["\(mode)_calls_per_s_\(options.callers)"] ?? [])
        }
        let ratios = zip(figures["tls_calls_per_s_\(options.callers)"] ?? [], figures["plaintext_calls_per_s_\(options.callers)"] ?? []).map { $0 / $1 }
        Self.record(&report, "tls_over_plaintext_throughput", ratios)
        report["tls_over_plaintext_p50"] = (report["tls_p50_us"] ?? .nan) / (report["plaintext_p50_us"] ?? .nan)
        report["rounds"] = Double(options.rounds)
        return report
    }

    /// Two fresh nodes (with `tls`: mutual TLS); the sequential p50 (µs) and the throughput with `callers` callers.
    func remotePair(tls: (a: TLSSettings, b: TLSSettings)?) async throws -> (Double, Double) {
        var cluster = LocalCluster(clusterName: "bench", secret: Array("benchmark-secret-benchmark-secret".utf8), callTimeout: .seconds(30))
        if let tls { cluster.tls = { name in name == "node-1" ? tls.a : tls.b } }
        return try await cluster.run(nodes: 2, register: { $0.register(Pinger.self) }) { [options] systems in
            let (a, b) = (systems[0], systems[1])
            let remote = try await a.actor(Pinger.self, key: b.firstKeyOwned(type: Pinger.virtualTypeName))
            for index in 0 ..< 2_000 { _ = try await remote.ping(index) }
            var latencies: [Double] = []
            latencies.reserveCapacity(options.sequentialCalls)
            for index in 0 ..< options.sequentialCalls {
                let began = ContinuousClock.now
                _ = try await remote.ping(index)
                latencies.append((ContinuousClock.now - began).seconds * 1e6)
            }
            latencies.sort()
            let keys = (0 ..< options.callers).map { b.firstKeyOwned(type: Pinger.virtualTypeName, prefix: "c\($0)") }
            var throughputOptions = ActorsBenchmark.Options()
            throughputOptions.throughputSeconds = options.throughputSeconds
            let throughput = try await ActorsBenchmark(options: throughputOptions).throughput(a, keys: keys)
            return (ActorsBenchmark.percentile(latencies, 0.5), throughput)
        }
    }

    // MARK: - Gateway

    /// The alternating wrk rounds against our HTTPS gateway on `port` and nginx on `proxyPort`: requests/s and p99 by name.
    private func measureHTTPS(port: Int, proxyPort: Int, authority: DevelopmentCertificateAuthority,
                              progress: @Sendable (String) -> Void) async throws -> ([String: [Double]], [String: [Double]]) {
        try await GatewayBenchmark.waitUntilListening(port)
        let ours = "https://127.0.0.1:\(port)/up/ping"
        let theirs = "https://127.0.0.1:\(proxyPort)/up/ping"
        for url in [ours, theirs] {
            let reply = try await Command.runDetached(["curl", "-s", "--cacert", authority.certificatePath, url], timeout: .seconds(10))
            guard reply == GatewayBenchmark.body else { throw BenchmarkError("\(url) answered \(reply.debugDescription), not the upstream's 64 bytes") }
        }
        var wrkOptions = GatewayBenchmark.Options()
        wrkOptions.threads = options.wrkThreads
        wrkOptions.connections = options.wrkConnections
        let wrk = GatewayBenchmark(options: wrkOptions)
        progress("warm-up")
        _ = try await wrk.wrk(ours, seconds: 2)
        _ = try await wrk.wrk(theirs, seconds: 2)
        var rates: [String: [Double]] = [:], p99s: [String: [Double]] = [:]
        for round in 1 ... options.rounds {
            for (name, url) in [("nginx", theirs), ("troupe", ours)] {
                progress("round \(round): wrk -t\(options.wrkThreads) -c\(options.wrkConnections) -d\(options.wrkSeconds)s against \(name) (HTTPS)")
                let result = try await wrk.wrk(url, seconds: options.wrkSeconds)
                guard result.errors == 0 else { throw BenchmarkError("\(name): \(result.errors) errors or non-2xx responses under load") }
                rates[name, default: []].append(result.requestsPerSecond)
                p99s[name, default: []].append(result.p99Milliseconds)
            }
        }
        return (rates, p99s)
    }

    public func runGateway(progress: @Sendable (String) -> Void) async throws -> BenchmarkReport {
        guard TestEnv.which("wrk") != nil else { throw BenchmarkError("wrk is not installed (apt-get install wrk)") }
        guard let nginx = GatewayBenchmark.nginxExecutable() else { throw BenchmarkError("nginx is not installed (apt-get install nginx-light)") }
        var report = BenchmarkReport(suite: "gateway-tls")
        let certificates = try TestCertificates()  // its directory goes with it
        defer { withExtendedLifetime(certificates) {} }
        let authority = certificates.authority
        let issued = try authority.issue(name: "gateway", hosts: ["127.0.0.1", "localhost"])
        let upstream = try await GatewayBenchmark.launchUpstream(nginx: nginx)
        defer { upstream.terminate() }
        let proxy = try await ServerProcess.launch("nginx", installHint: "apt-get install nginx-light", executable: nginx) { port, directory in
            let conf = directory.appendingPathComponent("nginx.conf")
            try? GatewayBenchmark.nginxConfiguration(directory: directory, workers: "auto", server: """
                upstream backend { server 127.0.0.1:\(upstream.port); keepalive 128; }
                server {
                  listen 127.0.0.1:\(port) ssl;
                  ssl_certificate \(issued.certificate); ssl_certificate_key \(issued.privateKey);
                  ssl_protocols TLSv1.2 TLSv1.3;
                  location /up/ { proxy_pass http://backend/; proxy_http_version 1.1; proxy_set_header Connection ""; }
                }
                """).write(to: conf, atomically: true, encoding: .utf8)
            return ["-p", directory.path, "-c", conf.path, "-e", directory.appendingPathComponent("error.log").path]
        }
        defer { proxy.terminate() }

        let logger = Logger(label: "bench.gateway", factory: { _ in SwiftLogNoOpLogHandler() })
        let gateway = try await GatewayBenchmark.proxyingGateway(upstreamPort: upstream.port)
        let https = try Gateway.httpsContext(TLSSettings(certificate: issued.certificate, privateKey: issued.privateKey), logger: logger)
        let port = try await ServerProcess.freePort()
        let group = ServiceGroup(configuration: .init(services: [gateway.application(port: port, tls: https, logger: logger)], logger: logger))
        // The gateway runs in a child task of this measurement and is shut down before it returns.
        let (rates, p99s) = try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let figures = try await measureHTTPS(port: port, proxyPort: proxy.port, authority: authority, progress: progress)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return figures
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
        }
        Self.record(&report, "troupe_https_rps", rates["troupe"] ?? [])
        Self.record(&report, "nginx_https_rps", rates["nginx"] ?? [])
        Self.record(&report, "ratio", zip(rates["troupe"] ?? [], rates["nginx"] ?? []).map { $0 / $1 })
        report["troupe_https_p99_ms"] = Self.median(p99s["troupe"] ?? [])
        report["nginx_https_p99_ms"] = Self.median(p99s["nginx"] ?? [])
        report["rounds"] = Double(options.rounds)
        return report
    }
}
