import Foundation
import NIOCore
import NIOHTTP1
import TroupeActors
import TroupeCore
import TroupeDemo
import TroupeGateway
import TroupeShop
import TroupeTestSupport

/// `troupe bench e2e`: orders per second through the gateway → actors → store → bus on the embedded
/// engines, 3 nodes in one process. Clients (keep-alive HTTP/1.1, in this process) place orders for
/// `seconds`; every order runs the place-order saga. Throughput counts orders that reached a final state,
/// from the first order's creation to the last one's end; latency runs from the moment the client sent
/// the order to the moment the order actor recorded its final state (same machine clock).
public struct E2EBenchmark: Sendable {
    public struct Options: Sendable {
        public var nodes = 3
        /// Concurrent HTTP connections (closed loop); TROUPE_BENCH_E2E_CONNECTIONS overrides. 16 keeps the
        /// system near its highest throughput without measuring a queue of its own making (at 64 the
        /// throughput is ~15 % higher and the latency mostly waiting; docs/benchmarks.md has both).
        public var connections = Int(ProcessInfo.processInfo.environment["TROUPE_BENCH_E2E_CONNECTIONS"] ?? "") ?? 16
        public var seconds = 10.0
        public var users = 200
        public var products = 50
        public init() {}
    }

    public let options: Options

    public init(options: Options = Options()) {
        self.options = options
    }

    public func run(progress: @escaping @Sendable (String) -> Void) async throws -> BenchmarkReport {
        var demo = ShopDemo.Options()
        demo.nodes = options.nodes
        demo.users = options.users
        demo.products = options.products
        demo.hotProducts = 0
        // Every user logs in once, all from the loopback address: room for them all within the minute.
        demo.loginAttemptsPerAddressPerMinute = max(100, 2 * options.users)
        demo.port = try await ServerProcess.freePort()
        let shopDemo = ShopDemo(options: demo)
        let options = self.options
        let skus = shopDemo.skus, users = shopDemo.users
        let endpoint = UpstreamHTTPClient.Endpoint(host: "127.0.0.1", port: demo.port)
        progress("\(options.nodes) nodes and the gateway on 127.0.0.1:\(demo.port); seeding \(skus.count) products and \(users.count) users")
        return try await shopDemo.serve { systems, _ in
            let client = UpstreamHTTPClient(maxIdlePerEndpoint: options.connections)
            defer { client.shutdown() }
            var tokens: [String] = []
            for user in users {
                let (status, json) = try await Self.post(client, endpoint, "/auth/login", token: nil, body: ["username": user, "password": "pw-\(user)"])
                guard status == 200, let token = json["token"] as? String else { throw BenchmarkError("login of \(user) answered \(status)") }
                tokens.append(token)
            }
            let signedIn = tokens
            progress("\(options.connections) connections placing orders for \(options.seconds) s")
            let placed = Locked<[(id: String, sentAt: Int64, placementMs: Double)]>([])
            let failures = Locked<[String]>([])
            let started = ContinuousClock.now
            let deadline = started + .milliseconds(Int(options.seconds * 1000))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for connection in 0..<options.connections {
                    group.addTask {
                        var generator = SeededGenerator(seed: UInt64(connection + 1))
                        while ContinuousClock.now < deadline {
                            let token = signedIn.randomElement(using: &generator)!
                            let sku = skus.randomElement(using: &generator)!
                            let sentAt = Self.nowMs()
                            let begin = ContinuousClock.now
                            let (status, json) = try await Self.post(client, endpoint, "/orders", token: token, body: ["sku": sku, "quantity": 1])
                            guard status == 202, let id = json["orderId"] as? String else {
                                failures.withLock { $0.append("POST /orders answered \(status): \(json)") }
                                continue
                            }
                            let ms = Double((ContinuousClock.now - begin).components.attoseconds) / 1e15 + Double((ContinuousClock.now - begin).components.seconds) * 1000
                            placed.withLock { $0.append((id, sentAt, ms)) }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let orders = placed.withLock { $0 }
            progress("\(orders.count) orders placed; waiting for every saga to finish")
            var finished: [String: OrderInfo] = [:]
            let settle = ContinuousClock.now + .seconds(120)
            while finished.count < orders.count {
                for order in orders where finished[order.id] == nil {
                    let info = try await systems[0].reference(OrderActor.self, key: order.id).info()
                    if info.status == .completed || info.status == .cancelled { finished[order.id] = info }
                }
                guard finished.count < orders.count else { break }
                guard ContinuousClock.now < settle else { throw BenchmarkError("\(orders.count - finished.count) orders did not finish within 120 s") }
                try await Task.sleep(for: .milliseconds(100))
            }
            let firstSent = orders.map(\.sentAt).min() ?? 0
            let lastFinished = finished.values.compactMap(\.finishedAt).max() ?? firstSent
            let endToEnd = orders.compactMap { order in finished[order.id]?.finishedAt.map { Double($0 - order.sentAt) } }.sorted()
            let placement = orders.map(\.placementMs).sorted()
            var report = BenchmarkReport(suite: "e2e")
            report["orders_per_s"] = Double(finished.count) / max(0.001, Double(lastFinished - firstSent) / 1000)
            report["p50_ms"] = Self.percentile(endToEnd, 0.50)
            report["p99_ms"] = Self.percentile(endToEnd, 0.99)
            report["placement_p50_ms"] = Self.percentile(placement, 0.50)
            report["placement_p99_ms"] = Self.percentile(placement, 0.99)
            report["orders"] = Double(orders.count)
            report["completed"] = Double(finished.values.filter { $0.status == .completed }.count)
            report["cancelled"] = Double(finished.values.filter { $0.status == .cancelled }.count)
            report["http_failures"] = Double(failures.withLock { $0.count })
            report["nodes"] = Double(options.nodes)
            report["connections"] = Double(options.connections)
            return report
        }
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    static func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    static func post(_ client: UpstreamHTTPClient, _ endpoint: UpstreamHTTPClient.Endpoint, _ path: String, token: String?,
                     body: [String: Any]) async throws -> (Int, [String: Any]) {
        let data = try JSONSerialization.data(withJSONObject: body)
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(endpoint.host):\(endpoint.port)")
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(data.count))
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        let reply = try await client.execute(endpoint, head: HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers),
                                             body: ByteBuffer(bytes: data), timeout: .seconds(30))
        let json = (try? JSONSerialization.jsonObject(with: Data(reply.body.readableBytesView))) as? [String: Any] ?? [:]
        return (Int(reply.head.status.code), json)
    }
}
