import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import TroupeCore
import TroupeDemo
import TroupeTestSupport

/// The reference system as separate processes on real servers: 3 `troupe node` and one `troupe gateway`
/// on etcd, SecantusDB (MongoDB) and Redis; a workload through the gateway while one node is killed with
/// SIGKILL and restarted; then `troupe shop check` verifies every invariant.
@Suite("Shop cluster: separate processes on etcd, MongoDB and Redis", .serialized,
       .enabled(if: ServerProcess.shouldRun("etcd") && ServerProcess.shouldRun("redis-server") && ServerProcess.shouldRunMongo))
struct ShopClusterTests {
    /// The `troupe` executable built next to the test bundle (or TROUPE_EXECUTABLE).
    static var troupeExecutable: String {
        if let path = ProcessInfo.processInfo.environment["TROUPE_EXECUTABLE"] { return path }
        let runner = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath()
        var directory = runner.deletingLastPathComponent()
        // The runner may sit inside a bundle (…/troupePackageTests.xctest/Contents/MacOS/…).
        for _ in 0..<4 where !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("troupe").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("troupe").path
    }

    static func configuration(node: String, port: Int, etcd: String, mongo: String, redis: Int, gatewayPort: Int? = nil) -> String {
        let gateway = gatewayPort.map {
            #", "gateway": {"port": \#($0), "jwtSecret": "test-jwt-secret-0123456789abcdef0123456789", "maxInFlight": 4096, "upstreams": [{"prefix": "/reviews", "service": "reviews", "requiresAuth": false, "timeoutMs": 2000}]}"#
        } ?? ""
        return #"""
            {"cluster": "shop-test", "node": "\#(node)", "host": "127.0.0.1", "port": \#(port),
             "secret": "test-cluster-secret-0123456789",
             "etcd": {"endpoints": ["\#(etcd)"], "ttlSeconds": 3},
             "mongo": {"uri": "\#(mongo)", "database": "shop"},
             "redis": {"url": "redis://127.0.0.1:\#(redis)"},
             "shop": {"paymentTimeoutSeconds": 30, "passwordRounds": 1000},
             "callTimeoutMs": 3000\#(gateway)}
            """#
    }

    @Test("3 nodes + gateway: a node is killed with SIGKILL mid-workload and restarted; every invariant holds")
    func nodeKilled() async throws {
        let troupe = Self.troupeExecutable
        #expect(FileManager.default.isExecutableFile(atPath: troupe), "build the troupe executable first (swift build)")
        let etcd = try await ServerProcess.etcd()
        defer { etcd.terminate() }
        let redis = try await ServerProcess.redis()
        defer { redis.terminate() }
        let mongo = try await ServerProcess.mongo()
        defer { mongo.terminate() }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-shop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // Every process exports its spans to one OTLP receiver (the environment is passed through env(1)).
        let spansFile = directory.appendingPathComponent("spans.jsonl").path
        let receiver = try await ServerProcess.launch("otlp-receiver", installHint: "scripts/install-servers", executable: OTLPReceiver.python) { port, _ in
            [OTLPReceiver.script, "\(port)", spansFile]
        }
        defer { receiver.terminate() }
        let tracing = ["OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:\(receiver.port)", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
                       "OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_METRIC_EXPORT_INTERVAL=1000"]
        var nodes: [ServerProcess] = []
        // SIGKILL first: a troupe process whose graceful shutdown outlasts the test runner would be left running.
        defer { for node in nodes { node.send(SIGKILL); node.terminate() } }
        for index in 1...3 {
            let port = try await ServerProcess.freePort()
            let path = directory.appendingPathComponent("node-\(index).json").path
            try Self.configuration(node: "node-\(index)", port: port, etcd: etcd.endpoint, mongo: mongo.mongoURL, redis: redis.port)
                .write(toFile: path, atomically: true, encoding: .utf8)
            nodes.append(try await ServerProcess.launch("troupe", installHint: "swift build", port: port, prefix: tracing, executable: troupe,
                                                        startTimeout: .seconds(60)) { _, _ in ["node", "--config", path, "--log-level", "notice"] })
        }
        let members = nodes
        /// Starts a `troupe gateway` process on a free port; returns it and its configuration file.
        func launchGateway(_ name: String) async throws -> (ServerProcess, String) {
            let port = try await ServerProcess.freePort()
            let path = directory.appendingPathComponent("\(name).json").path
            try Self.configuration(node: name, port: 0, etcd: etcd.endpoint, mongo: mongo.mongoURL, redis: redis.port, gatewayPort: port)
                .write(toFile: path, atomically: true, encoding: .utf8)
            let process = try await ServerProcess.launch("troupe", installHint: "swift build", port: port, prefix: tracing, executable: troupe,
                                                         startTimeout: .seconds(60)) { _, _ in ["gateway", "--config", path, "--log-level", "notice"] }
            return (process, path)
        }
        let (gateway, gatewayConfig) = try await launchGateway("gateway-1")
        defer { gateway.send(SIGKILL); gateway.terminate() }
        // A second gateway: stateless, so either one serves any user (sessions in Redis, ids from its own leased worker id).
        let (second, _) = try await launchGateway("gateway-2")
        defer { second.send(SIGKILL); second.terminate() }
        let gatewayPort = gateway.port, secondPort = second.port

        let catalog = ["--products", "8", "--stock", "5000", "--users", "16", "--balance", "100000"]
        _ = try await Command.runDetached([troupe, "shop", "seed", "--config", gatewayConfig] + catalog, timeout: .seconds(120))
        let client = ShopHTTPClient(base: "http://127.0.0.1:\(gatewayPort)")
        let client2 = ShopHTTPClient(base: "http://127.0.0.1:\(secondPort)")
        let readyDeadline = ContinuousClock.now + .seconds(30)
        while try await [client, client2].asyncMap({ (try? await $0.get("/ready")) ?? 0 }) != [200, 200] {
            guard ContinuousClock.now < readyDeadline else { Issue.record("the gateways never became ready"); return }
            try await Task.sleep(for: .milliseconds(100))
        }
        // A session opened on one gateway works on the other, and logging out on either ends it.
        let token = try await client.login(user: "user-15", password: "pw-user-15")
        let (putStatus, _) = try await client2.request("PUT", "/cart", token: token, body: ["sku": "sku-1", "quantity": 2])
        #expect(putStatus == 200)
        let (getStatus, cart) = try await client.request("GET", "/cart", token: token)
        #expect(getStatus == 200 && cart["sku-1"] as? Int == 2, "the cart written through gateway 2 is read through gateway 1")
        let (logoutStatus, _) = try await client2.request("POST", "/auth/logout", token: token)
        #expect(logoutStatus == 204)
        #expect(try await client.request("GET", "/cart", token: token).0 == 401, "revoked everywhere")

        // The workload: 16 users, each placing orders (a tenth cancelled right away) until 600 are placed.
        let placed = Locked<[String]>([])
        let failures = Locked<[String]>([])
        let budget = Locked(600)
        let killer = Task {
            // Kill node-2 once a third of the orders are in, restart it 3 s later.
            while placed.withLock({ $0.count }) < 200 { try await Task.sleep(for: .milliseconds(20)) }
            await members[1].stop(signal: SIGKILL)
            try await Task.sleep(for: .seconds(3))
            try await members[1].start()
            return placed.withLock { $0.count }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<16 {
                group.addTask {
                    let user = "user-\(worker)"
                    let client = worker % 2 == 0 ? client : client2
                    let token = try await client.login(user: user, password: "pw-\(user)")
                    while budget.withLock({ b -> Bool in guard b > 0 else { return false }; b -= 1; return true }) {
                        do {
                            let id = try await client.placeOrder(token: token, sku: "sku-\(Int.random(in: 0..<8))", quantity: Int.random(in: 1...3), attempts: 30)
                            placed.withLock { $0.append(id) }
                            if Int.random(in: 0..<10) == 0 { _ = try await client.cancelOrder(token: token, id: id) }
                        } catch {
                            // A call cut by the killed node fails; it must not leave anything behind (checked below).
                            failures.withLock { $0.append("\(error)") }
                            try await Task.sleep(for: .milliseconds(50))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let killedAt = try await killer.value
        let orders = placed.withLock { $0 }
        let failed = failures.withLock { $0 }
        #expect(killedAt >= 200)
        // Clients retry (with an Idempotency-Key) while the cluster notices the dead node: no order is refused.
        #expect(orders.count == 600, "orders placed: \(orders.count); failures: \(failed.prefix(5))")

        // Traces across processes: an order's trace holds the gateway's span at the root and actor calls served
        // by node processes under it, linked through the cluster transport's trace context.
        try await Task.sleep(for: .seconds(1))  // the exporters' batch delay is 200 ms
        struct ExportedSpan: Decodable { var trace: String, span: String, parent: String, name: String, service: String, instance: String }
        let spans = try String(contentsOfFile: spansFile, encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONDecoder().decode(ExportedSpan.self, from: Data($0.utf8)) }
        let spanByID = Dictionary(spans.map { ($0.span, $0) }, uniquingKeysWith: { first, _ in first })
        let crossProcess = Dictionary(grouping: spans, by: \.trace).values.filter { trace in
            trace.contains { $0.name == "POST" && $0.parent.isEmpty && $0.service == "troupe-gateway" }
                && trace.contains { $0.name == "actor.call" && $0.service == "troupe-node" && spanByID[$0.parent] != nil }
        }
        #expect(crossProcess.count > 50, "order traces from a gateway process into node processes: \(crossProcess.count) of \(spans.count) spans")
        let instances = Set(crossProcess.flatMap { $0.filter { $0.service == "troupe-node" }.map(\.instance) })
        #expect(instances.count == 3, "actor calls traced on every node process: \(instances.sorted())")
        // The rest of the tree, across processes: saga steps and the outbox relay in node processes, the bus publish,
        // and the consumer (in whichever node process took the message) under that publish.
        let whole = crossProcess.filter { trace in
            trace.contains { $0.name.hasPrefix("saga.step ") && $0.service == "troupe-node" }
                && trace.contains { $0.name == "outbox.relay" && $0.service == "troupe-node" }
                && trace.contains { $0.name.hasPrefix("bus.consume") && spanByID[$0.parent]?.name.hasPrefix("bus.publish") == true }
        }
        #expect(whole.count > 20, "order traces holding saga steps, the outbox relay and publish → consume across processes: \(whole.count)")
        // Metrics over OTLP from every process: node processes (which serve no /metrics) report their actor calls,
        // and nodes and gateways their etcd requests.
        struct ExportedPoint: Decodable { var name: String, value: Double, attributes: [String: String], service: String, instance: String }
        let points = ((try? String(contentsOfFile: spansFile + ".metrics", encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { try? JSONDecoder().decode(ExportedPoint.self, from: Data($0.utf8)) }
        let nodeCalls = Set(points.filter { $0.name == "troupe_actor_calls_total" && $0.service == "troupe-node" && $0.value > 0 }.map(\.instance))
        #expect(nodeCalls.count == 3, "actor call metrics from every node process: \(nodeCalls.sorted())")
        let etcdRequests = points.filter { $0.name == "troupe_etcd_requests_total" && $0.attributes["outcome"] == "ok" && $0.value > 0 }
        #expect(Set(etcdRequests.map(\.service)) == ["troupe-node", "troupe-gateway"], "etcd requests measured in nodes and gateways")
        let pools = Set(points.filter { $0.name == "troupe_client_connections" && $0.service == "troupe-gateway" && $0.value > 0 }
            .compactMap { $0.attributes["client"] })
        #expect(pools == ["mongo", "redis"], "the gateway's Redis and MongoDB pools report their open connections: \(pools)")

        let ordersFile = directory.appendingPathComponent("orders.txt").path
        try orders.joined(separator: "\n").write(toFile: ordersFile, atomically: true, encoding: .utf8)
        let output: String
        do {
            output = try await Command.runDetached([troupe, "shop", "check", "--config", gatewayConfig, "--orders-file", ordersFile, "--settle", "90", "--json"] + catalog,
                                     timeout: .seconds(180))
        } catch {
            Issue.record("troupe shop check failed: \(error)")
            return
        }
        let last = output.split(separator: "\n").last.map(String.init) ?? ""
        let summary = try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any] ?? [:]
        #expect(summary["ok"] as? Bool == true, "\(output)")
        #expect(summary["inv_charged_once"] as? Bool == true)
        #expect(summary["inv_every_order_final"] as? Bool == true)
        #expect(summary["inv_sales_match"] as? Bool == true, "sales counted from the order events (outbox → bus → inbox)")
        #expect(Set(orders).count == orders.count, "two gateways never issued the same order id")
        #expect((summary["completed"] as? Int ?? 0) > 0)
        #expect(summary["orders"] as? Int == orders.count)

        // A plain HTTP service registered in etcd is reached through the gateway's upstream route.
        let upstream = try await ServerProcess.launch("python3", installHint: "apt-get install python3") { port, directory in
            try? "hello from reviews".write(to: directory.appendingPathComponent("hello"), atomically: true, encoding: .utf8)
            return ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", directory.path]
        }
        defer { upstream.terminate() }
        let url = URL(string: "http://127.0.0.1:\(gatewayPort)/reviews/hello")!
        let (_, before) = try await URLSession.shared.data(from: url)
        #expect((before as? HTTPURLResponse)?.statusCode == 503, "no instance registered yet")
        let instance = #"{"service":"reviews","id":"r1","host":"127.0.0.1","port":\#(upstream.port),"metadata":{}}"#
        try await Command.runDetached(["etcdctl", "--endpoints", etcd.endpoint, "put", "/services/reviews/r1", instance], timeout: .seconds(30))
        let proxyDeadline = ContinuousClock.now + .seconds(15)
        var proxied = ""
        while ContinuousClock.now < proxyDeadline {
            let (data, response) = try await URLSession.shared.data(from: url)
            if (response as? HTTPURLResponse)?.statusCode == 200 {
                proxied = String(decoding: data, as: UTF8.self)
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(proxied == "hello from reviews")
    }
}
