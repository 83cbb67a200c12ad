import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TroupeCache
import TroupeGateway
import TroupeTestSupport

/// `troupe bench gateway`: requests per second and p99 through our gateway proxying to an HTTP upstream,
/// next to nginx `proxy_pass` to the same upstream, both driven by `wrk` with the same threads and
/// connections, in the same run. The upstream is a separate one-worker nginx answering 64 bytes. For context
/// the same rounds also drive a NIO byte relay (`NIORelay`: no HTTP parsing; the floor of any NIO proxy here).
public struct GatewayBenchmark: Sendable {
    public struct Options: Sendable {
        public var threads = 2
        public var connections = 64
        public var seconds = 10
        /// nginx proxy workers (auto = one per core, nginx's recommended setting).
        public var nginxWorkers = "auto"
        public var rounds = 2
        public init() {}
    }

    public let options: Options

    public init(options: Options = Options()) {
        self.options = options
    }

    static let body = String(repeating: "x", count: 64)

    static func nginxExecutable() -> String? {
        TestEnv.which("nginx") ?? ["/usr/sbin/nginx", "/usr/local/sbin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func nginxConfiguration(directory: URL, workers: String, server: String) -> String {
        let temp = directory.path
        return """
            daemon off;
            worker_processes \(workers);
            pid \(temp)/nginx.pid;
            error_log \(temp)/error.log warn;
            events { worker_connections 4096; }
            http {
              access_log off;
              client_body_temp_path \(temp)/body; proxy_temp_path \(temp)/proxy; fastcgi_temp_path \(temp)/fastcgi;
              uwsgi_temp_path \(temp)/uwsgi; scgi_temp_path \(temp)/scgi;
              keepalive_requests 1000000;
              \(server)
            }
            """
    }

    public func run(progress: @Sendable (String) -> Void) async throws -> BenchmarkReport {
        guard TestEnv.which("wrk") != nil else { throw BenchmarkError("wrk is not installed (apt-get install wrk)") }
        guard let nginx = Self.nginxExecutable() else { throw BenchmarkError("nginx is not installed (apt-get install nginx-light)") }
        var report = BenchmarkReport(suite: "gateway")
        let upstream = try await Self.launchUpstream(nginx: nginx)
        defer { upstream.terminate() }
        let proxy = try await ServerProcess.launch("nginx", installHint: "apt-get install nginx-light", executable: nginx) { port, directory in
            let conf = directory.appendingPathComponent("nginx.conf")
            try? Self.nginxConfiguration(directory: directory, workers: options.nginxWorkers, server: """
                upstream backend { server 127.0.0.1:\(upstream.port); keepalive 128; }
                server {
                  listen 127.0.0.1:\(port);
                  location /up/ { proxy_pass http://backend/; proxy_http_version 1.1; proxy_set_header Connection ""; }
                }
                """).write(to: conf, atomically: true, encoding: .utf8)
            return ["-p", directory.path, "-c", conf.path, "-e", directory.appendingPathComponent("error.log").path]
        }
        defer { proxy.terminate() }

        // Our gateway, in this process: the same route, no authentication, default protections on.
        let logger = Logger(label: "bench.gateway", factory: { _ in SwiftLogNoOpLogHandler() })
        let upstreamPort = upstream.port
        let gateway = try await Self.proxyingGateway(upstreamPort: upstreamPort)
        let port = try await ServerProcess.freePort()
        let app = gateway.application(port: port, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let server = Task { try await group.run() }
        defer { server.cancel() }
        try await Self.waitUntilListening(port)

        let ours = "http://127.0.0.1:\(port)/up/ping"
        let theirs = "http://127.0.0.1:\(proxy.port)/up/ping"
        for url in [ours, theirs] {
            let reply = try await Command.runDetached(["curl", "-s", url], timeout: .seconds(10))
            guard reply == Self.body else { throw BenchmarkError("\(url) answered \(reply.debugDescription), not the upstream's 64 bytes") }
        }
        progress("warm-up")
        _ = try await wrk(ours, seconds: 2)
        _ = try await wrk(theirs, seconds: 2)
        // For context: a NIO byte relay (no HTTP at all) from a connection to its own upstream connection.
        let relay = try await NIORelay.start(upstreamPort: upstreamPort)
        defer { relay.channel.close(promise: nil) }
        let relayURL = "http://127.0.0.1:\(relay.port)/up/ping"
        _ = try await wrk(relayURL, seconds: 2)
        var best: [String: WrkResult] = [:]
        for round in 1...options.rounds {
            for (name, url) in [("nginx", theirs), ("troupe", ours), ("relay", relayURL)] {
                progress("round \(round): wrk -t\(options.threads) -c\(options.connections) -d\(options.seconds)s against \(name)")
                let result = try await wrk(url, seconds: options.seconds)
                guard result.errors == 0 else { throw BenchmarkError("\(name): \(result.errors) errors or non-2xx responses under load") }
                if result.requestsPerSecond > best[name]?.requestsPerSecond ?? 0 { best[name] = result }
            }
        }
        // For context: the gateway answering by itself (/health: the middlewares, no upstream hop), and a bare
        // Hummingbird router answering the same 64 bytes (no middleware): the ceiling of the HTTP server here.
        progress("wrk against the gateway's own /health (no upstream)")
        let alone = try await wrk("http://127.0.0.1:\(port)/health", seconds: options.seconds)
        await group.triggerGracefulShutdown()
        let barePort = try await ServerProcess.freePort()
        let bareRouter = Router()
        bareRouter.get("/ping") { _, _ in Self.body }
        let bareGroup = ServiceGroup(configuration: .init(services: [
            Application(router: bareRouter, configuration: .init(address: .hostname("127.0.0.1", port: barePort)), logger: logger),
        ], logger: logger))
        let bareServer = Task { try await bareGroup.run() }
        defer { bareServer.cancel() }
        while !(await ServerProcess.accepts(port: barePort)) { try await Task.sleep(for: .milliseconds(20)) }
        progress("wrk against a bare Hummingbird router (64 bytes, no middleware)")
        let bare = try await wrk("http://127.0.0.1:\(barePort)/ping", seconds: options.seconds)
        await bareGroup.triggerGracefulShutdown()
        let troupe = best["troupe"]!, peer = best["nginx"]!
        report["nio_relay_rps"] = best["relay"]!.requestsPerSecond
        report["troupe_rps"] = troupe.requestsPerSecond
        report["nginx_rps"] = peer.requestsPerSecond
        report["ratio"] = troupe.requestsPerSecond / peer.requestsPerSecond
        report["troupe_p50_ms"] = troupe.p50Milliseconds
        report["nginx_p50_ms"] = peer.p50Milliseconds
        report["troupe_p99_ms"] = troupe.p99Milliseconds
        report["nginx_p99_ms"] = peer.p99Milliseconds
        report["troupe_health_rps"] = alone.requestsPerSecond
        report["hummingbird_bare_rps"] = bare.requestsPerSecond
        report["wrk_threads"] = Double(options.threads)
        report["wrk_connections"] = Double(options.connections)
        report["wrk_seconds"] = Double(options.seconds)
        report["nginx_workers"] = Double(options.nginxWorkers) ?? Double(ProcessInfo.processInfo.activeProcessorCount)
        return report
    }

    /// The upstream both proxies forward to: a one-worker nginx answering ``body``.
    static func launchUpstream(nginx: String) async throws -> ServerProcess {
        try await ServerProcess.launch("nginx", installHint: "apt-get install nginx-light", executable: nginx) { port, directory in
            let conf = directory.appendingPathComponent("nginx.conf")
            try? nginxConfiguration(directory: directory, workers: "1", server: """
                server { listen 127.0.0.1:\(port); location / { default_type text/plain; return 200 "\(body)"; } }
                """).write(to: conf, atomically: true, encoding: .utf8)
            return ["-p", directory.path, "-c", conf.path, "-e", directory.appendingPathComponent("error.log").path]
        }
    }

    /// Our gateway with one unauthenticated upstream route `/up` to `upstreamPort`, default protections on.
    static func proxyingGateway(upstreamPort: Int) async throws -> Gateway {
        let kv = InMemoryKeyValueStore()
        var configuration = GatewayConfiguration(signing: .hs256(secret: Array(repeating: 7, count: 32)), issuer: "bench", audience: "bench")
        configuration.maxInFlight = 100_000
        return try await Gateway(
            configuration: configuration,
            services: GatewayServices(sessions: SessionStore(store: kv), idempotency: IdempotencyStore(store: kv), authenticate: { _, _ in nil }),
            routes: [],
            upstreams: [(UpstreamRoute(prefix: "/up", service: "echo", requiresAuth: false),
                         UpstreamPool(service: "echo") { [UpstreamInstance(id: "echo-1", host: "127.0.0.1", port: upstreamPort)] })])
    }

    /// Waits (at most 10 s) until something accepts connections on `port`.
    static func waitUntilListening(_ port: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !(await ServerProcess.accepts(port: port)) {
            guard ContinuousClock.now < deadline else { throw BenchmarkError("the gateway did not listen on \(port)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    struct WrkResult {
        var requestsPerSecond = 0.0
        var p50Milliseconds = 0.0
        var p99Milliseconds = 0.0
        var errors = 0
    }

    func wrk(_ url: String, seconds: Int) async throws -> WrkResult {
        let output = try await Command.runDetached(["wrk", "-t\(options.threads)", "-c\(options.connections)", "-d\(seconds)s", "--latency", url],
                                     timeout: .seconds(seconds + 30))
        return try Self.parseWrk(output)
    }

    /// Reads `Requests/sec`, the 50 % and 99 % latencies and the error counts from wrk's report.
    static func parseWrk(_ output: String) throws -> WrkResult {
        var result = WrkResult()
        var sawRate = false
        for line in output.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = words.first else { continue }
            if first == "Requests/sec:", words.count >= 2, let value = Double(words[1]) {
                result.requestsPerSecond = value
                sawRate = true
            } else if (first == "50%" || first == "99%"), words.count >= 2, let value = milliseconds(String(words[1])) {
                if first == "50%" { result.p50Milliseconds = value } else { result.p99Milliseconds = value }
            } else if line.contains("Non-2xx or 3xx responses:"), let count = Int(words.last ?? "") {
                result.errors += count
            } else if first == "Socket", line.contains("errors:") {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                result.errors += line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }.reduce(0, +)
            }
        }
        guard sawRate else { throw BenchmarkError("wrk printed no Requests/sec: \(output.suffix(500))") }
        return result
    }

    /// "1.23ms", "850.00us", "1.01s" → milliseconds.
    static func milliseconds(_ text: String) -> Double? {
        for (suffix, scale) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] where text.hasSuffix(suffix) {
            return Double(text.dropLast(suffix.count)).map { $0 * scale }
        }
        return nil
    }
}
