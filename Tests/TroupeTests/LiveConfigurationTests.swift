import Foundation
import Logging
import Testing
import Troupe
import TroupeActors
import TroupeCache
import TroupeCore
import TroupeDiscovery
import TroupeDemo
import TroupeEtcd
import TroupeGateway
import TroupeSaga
import TroupeTestSupport

/// The dynamic configuration is live: `etcdctl put /config/{app}/{env}/{key}` changes a running process's tunables
/// without a restart; an invalid value is refused and the last good one stays; a removed key goes back to the file.
@Suite("Live configuration from etcd", .serialized, .enabled(if: ServerProcess.shouldRun("etcd")))
struct LiveConfigurationTests {
    @Test("node tunables, the gateway's load-shedding bound and rate limits, and feature switches change with a put")
    func everyKind() async throws {
        let etcd = try await ServerProcess.etcd()
        defer { etcd.terminate() }
        let port = try await ServerProcess.freePort()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-live-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try """
            {"cluster": "shop", "node": "n1", "host": "127.0.0.1", "port": \(port), "secret": "0123456789abcdef0123", "callTimeoutMs": 4000,
             "etcd": {"endpoints": ["\(etcd.endpoint)"], "ttlSeconds": 5, "config": {"app": "shop", "environment": "test"}}}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let environment: [String: String] = [:]
        let configuration = try NodeConfiguration.load(path: path, environment: environment)
        var logger = Logger(label: "live-test")
        logger.logLevel = .warning
        let node = try await TroupeNode.start(configuration, environment: environment, logger: logger) { _ in }
        let live = try #require(node.live)
        let system = node.system
        let etcdClient = try #require(node.etcd)
        @Sendable func put(_ key: String, _ value: String) async throws { _ = try await etcdClient.put("/config/shop/test/\(key)", value) }
        @Sendable func remove(_ key: String) async throws { _ = try await etcdClient.delete("/config/shop/test/\(key)") }
        try await withDeadline(.seconds(90)) {
            try await node.run {
                #expect(system.callTimeout == .milliseconds(4000), "the file's value to start with")
                // Node tunables.
                try await put("callTimeoutMs", "1234")
                try await Self.eventually("callTimeout 1234 ms") { system.callTimeout == .milliseconds(1234) }
                try await put("idleTimeoutSeconds", "7")
                try await Self.eventually("idleTimeout 7 s") { system.idleTimeout == .seconds(7) }
                try await put("callTimeoutMs", "soon")  // refused: the last good value stays
                try await put("idleTimeoutSeconds", "0")  // refused: out of range
                try await put("idleTimeoutSeconds", "9")  // a later good value of a key applies
                try await Self.eventually("idleTimeout 9 s") { system.idleTimeout == .seconds(9) }
                #expect(system.callTimeout == .milliseconds(1234), "a refused value changes nothing")
                try await remove("callTimeoutMs")
                try await Self.eventually("callTimeout back to the file's 4000 ms") { system.callTimeout == .milliseconds(4000) }
                // Saga step timeouts.
                let step = SagaStep("pay", timeout: .seconds(10), action: { _ in })
                system.sagas.register(SagaDefinition("checkout", steps: [step]))
                try await put("sagas/checkout/pay/timeoutMs", "2500")
                try await Self.eventually("the pay step's timeout 2.5 s") { system.sagas.timeout(of: step, saga: "checkout") == .milliseconds(2500) }
                try await put("sagas/checkout/ship/timeoutMs", "100")  // refused: no such step
                try await put("sagas/checkout/pay/timeoutMs", "0")  // refused: out of range
                try await put("sagas/checkout/pay/timeoutMs", "3000")
                try await Self.eventually("the pay step's timeout 3 s") { system.sagas.timeout(of: step, saga: "checkout") == .milliseconds(3000) }
                try await remove("sagas/checkout/pay/timeoutMs")
                try await Self.eventually("the step's own timeout again") { system.sagas.timeout(of: step, saga: "checkout") == .seconds(10) }

                // A gateway built later adds its settings; the values already in etcd apply to it at once.
                try await put("gateway/maxInFlight", "7")
                // The watch delivers the put to the process a moment later; once it has, a part built then gets it at once.
                try await Self.eventually("the put seen by the process") { live.source.snapshot()["gateway/maxInFlight"] == "7" }
                let user = AdjustableRateLimiter(nil), global = AdjustableRateLimiter(nil)
                let gateway = try await Gateway(
                    configuration: GatewayConfiguration(signing: .hs256(secret: Array("0123456789abcdef0123456789abcdef".utf8)), issuer: "t", audience: "t"),
                    services: GatewayServices(sessions: SessionStore(store: InMemoryKeyValueStore()), idempotency: IdempotencyStore(store: InMemoryKeyValueStore()),
                                              userLimiter: user, globalLimiter: global, authenticate: { _, _ in nil }),
                    routes: [])
                let outcome = live.add(LiveSetting.gateway(gateway, user: user, global: global) { rate in
                    try LocalRateLimiter(.tokenBucket(ratePerSecond: Double(rate), burst: rate))
                })
                #expect(outcome.applied["gateway/maxInFlight"] == .some("7") && gateway.live.maxInFlight == 7)
                try await put("gateway/maxInFlight", "-3")
                try await put("gateway/userRequestsPerSecond", "2")
                try await Self.eventually("a user limit of 2 a second") { user.limiter != nil }
                #expect(gateway.live.maxInFlight == 7, "a bound below 1 is refused")
                let decisions = try await [user.acquire("u"), user.acquire("u"), user.acquire("u")].map(\.allowed)
                #expect(decisions == [true, true, false], "two a second, a burst of two")
                try await remove("gateway/userRequestsPerSecond")
                try await Self.eventually("no user limit again") { user.limiter == nil }
                // Feature switches.
                try await put("features/checkout", "false")
                try await Self.eventually("checkout switched off") { !gateway.live.isEnabled("checkout") }
                #expect(gateway.live.isEnabled("orders"))
                try await put("features/checkout", "maybe")  // refused: stays off
                try await put("features/orders", "off")
                try await Self.eventually("orders switched off") { !gateway.live.isEnabled("orders") }
                #expect(!gateway.live.isEnabled("checkout"))
                try await remove("features/checkout")
                try await Self.eventually("checkout on again") { gateway.live.isEnabled("checkout") }
            }
        }
    }

    static func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("not within \(timeout): \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
