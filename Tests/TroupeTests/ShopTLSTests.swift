import Foundation
import Testing
import TroupeTestSupport

/// The shop with TLS on every link: 2 `troupe node` + 1 `troupe gateway` processes with mutual TLS between
/// them, etcd over https with client certificates, Redis on its TLS port only, SecantusDB requiring client
/// certificates, and the gateway on HTTPS — all from one `troupe certs` CA.
@Suite("Shop with TLS on every link", .serialized,
       .enabled(if: ServerProcess.shouldRun("etcd") && ServerProcess.shouldRun("redis-server") && ServerProcess.shouldRunMongo))
struct ShopTLSTests {
    @Test("login, an order to completion and a plaintext refusal, through HTTPS, over mutual TLS everywhere")
    func everyLinkTLS() async throws {
        let troupe = ShopClusterTests.troupeExecutable
        #expect(FileManager.default.isExecutableFile(atPath: troupe), "build the troupe executable first (swift build)")
        let certificates = try TestCertificates()
        let directory = certificates.directory
        // The CA and the node certificates come from the command a user would run.
        for name in ["node-1", "node-2", "gateway-1"] {
            _ = try await Command.runDetached([troupe, "certs", "issue", name, "--dir", directory.path, "--host", "127.0.0.1", "--host", "localhost"],
                                              timeout: .seconds(60))
        }
        let etcd = try await ServerProcess.etcd(tls: certificates)
        defer { etcd.terminate() }
        let redis = try await ServerProcess.redisTLS(certificates: certificates)
        defer { redis.terminate() }
        let mongo = try await ServerProcess.mongo(tls: certificates)
        defer { mongo.terminate() }

        func configuration(_ name: String, port: Int, gatewayPort: Int? = nil) -> String {
            let file = { (suffix: String) in directory.appendingPathComponent("\(name)\(suffix).pem").path }
            let gateway = gatewayPort.map {
                #", "gateway": {"port": \#($0), "jwtSecret": "test-jwt-secret-0123456789abcdef0123456789", "https": {"certificate": "\#(file(""))", "privateKey": "\#(file("-key"))"}}"#
            } ?? ""
            return #"""
                {"cluster": "shop-tls", "node": "\#(name)", "host": "127.0.0.1", "port": \#(port),
                 "secret": "test-cluster-secret-0123456789",
                 "tls": {"certificate": "\#(file(""))", "privateKey": "\#(file("-key"))", "ca": "\#(certificates.ca)"},
                 "etcd": {"endpoints": ["https://\#(etcd.endpoint)"], "ttlSeconds": 3},
                 "mongo": {"uri": "\#(mongo.mongoURL)?tls=true", "database": "shop"},
                 "redis": {"url": "\#(redis.redissURL)"},
                 "shop": {"paymentTimeoutSeconds": 30, "passwordRounds": 1000},
                 "callTimeoutMs": 3000\#(gateway)}
                """#
        }
        var processes: [ServerProcess] = []
        defer { for process in processes { process.send(SIGKILL); process.terminate() } }
        for name in ["node-1", "node-2"] {
            let port = try await ServerProcess.freePort()
            let path = directory.appendingPathComponent("\(name).json").path
            try configuration(name, port: port).write(toFile: path, atomically: true, encoding: .utf8)
            processes.append(try await ServerProcess.launch("troupe", installHint: "swift build", port: port, executable: troupe,
                                                            startTimeout: .seconds(60)) { _, _ in ["node", "--config", path, "--log-level", "notice"] })
        }
        let gatewayPort = try await ServerProcess.freePort()
        let gatewayConfig = directory.appendingPathComponent("gateway-1.json").path
        try configuration("gateway-1", port: 0, gatewayPort: gatewayPort).write(toFile: gatewayConfig, atomically: true, encoding: .utf8)
        processes.append(try await ServerProcess.launch("troupe", installHint: "swift build", port: gatewayPort, executable: troupe,
                                                        startTimeout: .seconds(60)) { _, _ in ["gateway", "--config", gatewayConfig, "--log-level", "notice"] })
        _ = try await Command.runDetached([troupe, "shop", "seed", "--config", gatewayConfig, "--products", "2", "--stock", "10", "--users", "2",
                                           "--balance", "1000"], timeout: .seconds(120))

        let base = "https://localhost:\(gatewayPort)"
        /// curl with the cluster CA: status code on the last line.
        func https(_ method: String, _ path: String, token: String? = nil, body: String? = nil, headers: [String] = []) async throws -> (Int, String) {
            var arguments = ["curl", "-sS", "--max-time", "10", "--cacert", certificates.ca, "-X", method, "-w", "\n%{http_code}", base + path]
            if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
            if let body { arguments += ["-H", "Content-Type: application/json", "--data", body] }
            for header in headers { arguments += ["-H", header] }
            let output = try await Command.runDetached(arguments, timeout: .seconds(30))
            let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }
        let readyDeadline = ContinuousClock.now + .seconds(30)
        while (try? await https("GET", "/ready").0) != 200 {
            guard ContinuousClock.now < readyDeadline else { Issue.record("the gateway never became ready over HTTPS"); return }
            try await Task.sleep(for: .milliseconds(200))
        }
        let (loginStatus, loginBody) = try await https("POST", "/auth/login", body: #"{"username": "user-0", "password": "pw-user-0"}"#)
        #expect(loginStatus == 200, "\(loginBody)")
        let token = try #require((try JSONSerialization.jsonObject(with: Data(loginBody.utf8)) as? [String: Any])?["token"] as? String)
        let (orderStatus, orderBody) = try await https("POST", "/orders", token: token, body: #"{"sku": "sku-1", "quantity": 2}"#,
                                                       headers: ["Idempotency-Key: tls-order-1"])
        #expect(orderStatus == 202, "\(orderBody)")
        let id = try #require((try JSONSerialization.jsonObject(with: Data(orderBody.utf8)) as? [String: Any])?["orderId"] as? String)
        var state = ""
        let deadline = ContinuousClock.now + .seconds(30)
        while state != "completed", ContinuousClock.now < deadline {
            let (_, body) = try await https("GET", "/orders/\(id)", token: token)
            state = ((try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["order"] as? [String: Any])?["status"] as? String ?? ""
            if state != "completed" { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(state == "completed", "the order went through the saga (stock, payment) over TLS links")

        // Plain HTTP to the HTTPS port gets no HTTP answer; the server keeps serving.
        let plain = try? await Command.runDetached(["curl", "-sS", "--max-time", "5", "-w", "%{http_code}", "http://127.0.0.1:\(gatewayPort)/health"],
                                                   timeout: .seconds(15))
        #expect(plain.map { !$0.contains("200") } ?? true, "plain HTTP was answered: \(plain ?? "")")
        #expect(try await https("GET", "/health").0 == 200)
    }
}
