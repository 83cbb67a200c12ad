import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HTTPTypes
import Logging
import Testing
import Troupe
import TroupeActors
import TroupeActorsStore
import TroupeCore
import TroupeDemo
import TroupeGateway
import TroupeShop
import TroupeStore
import TroupeTestSupport

@Suite("Demo workload and node configuration")
struct DemoAndConfigurationTests {
    @Test("the bank demo moves money across nodes while a node joins, and every invariant holds")
    func demo() async throws {
        var options = BankDemo.Options()
        options.nodes = 2
        options.accounts = 200
        options.duration = .seconds(1)
        options.concurrency = 16
        let summary = try await BankDemo(options: options).run()
        #expect(summary.transfers > 100)
        #expect(summary.moneyConserved, "expected \(summary.expectedTotal), found \(summary.actualTotal)")
        #expect(summary.noNegativeBalance)
        #expect(summary.singleActivation)
        #expect(summary.activationsPerNode.count == 3, "the joining node hosts accounts too: \(summary.activationsPerNode)")
        #expect(summary.activationsPerNode.values.allSatisfy { $0 > 0 })
        #expect(summary.ok)
    }

    @Test("troupe --version prints the version")
    func version() throws {
        let output = try Command.run([ShopClusterTests.troupeExecutable, "--version"], timeout: .seconds(30))
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == troupeVersion)
    }

    @Test("troupe demo on a port already taken says so at once, naming the address")
    func demoPortTaken() async throws {
        // A listener of our own holds the port.
        let holder = try await ServerProcess.launch("python3", installHint: "apt-get install python3") { port, directory in
            ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", directory.path]
        }
        defer { holder.terminate() }
        let start = ContinuousClock.now
        do {
            _ = try Command.run([ShopClusterTests.troupeExecutable, "demo", "--duration", "1", "--port", "\(holder.port)"], timeout: .seconds(60))
            Issue.record("the demo started on a taken port")
        } catch let failure as Command.Failure {
            #expect(failure.description.contains("cannot listen on 127.0.0.1:\(holder.port): Address already in use"), "\(failure)")
        }
        #expect(ContinuousClock.now - start < .seconds(5), "said at once, not after a timeout")
    }

    /// Writes `json` to a file of its own in the temporary directory; the caller removes it.
    func write(_ json: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-node-\(UUID().uuidString).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let valid = """
        {"cluster": "c", "node": "n1", "host": "127.0.0.1", "port": 7101, "secretEnv": "S",
         "members": [{"node": "n1", "host": "127.0.0.1", "port": 7101}, {"node": "n2", "host": "127.0.0.1", "port": 7102}]}
        """

    @Test("a valid configuration loads and describes the static membership")
    func validConfiguration() throws {
        let path = try write(Self.valid)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let configuration = try NodeConfiguration.load(path: path, environment: ["S": "0123456789abcdef0123"])
        #expect(configuration.membership.members.map(\.node.name) == ["n1", "n2"])
        let cluster = try configuration.clusterConfiguration(environment: ["S": "0123456789abcdef0123"], logger: Logger(label: "t"))
        #expect(cluster.port == 7101)
        #expect(cluster.clusterName == "c")
        #expect(configuration.level == nil, "no logLevel: the command's default")
        let withLevel = try write(Self.valid.replacingOccurrences(of: "\"secretEnv\": \"S\",", with: "\"secretEnv\": \"S\", \"logLevel\": \"Debug\","))
        defer { try? FileManager.default.removeItem(atPath: withLevel) }
        #expect(try NodeConfiguration.load(path: withLevel, environment: ["S": "0123456789abcdef0123"]).level == .debug)
    }

    @Test("invalid configurations fail at start-up saying what to fix", arguments: [
        (valid, [String: String](), "S, which is not set"),
        (valid, ["S": "short"], "secret must be at least 16 bytes"),
        (valid.replacingOccurrences(of: "\"node\": \"n1\", \"host\": \"127.0.0.1\", \"port\": 7101, \"secretEnv\"", with: "\"node\": \"n9\", \"host\": \"127.0.0.1\", \"port\": 7101, \"secretEnv\""),
         ["S": "0123456789abcdef0123"], "members must list this node"),
        ("{\"cluster\": 3}", ["S": "0123456789abcdef0123"], "cluster: expected a string, found a number (3)"),
        // A typo is an error with the key it resembles, not a silently ignored key.
        (valid.replacingOccurrences(of: "\"secretEnv\": \"S\",", with: "\"secretEnv\": \"S\", \"ettcd\": {\"endpoints\": []},"),
         ["S": "0123456789abcdef0123"], #"unknown key "ettcd" (did you mean "etcd"?)"#),
        (valid.replacingOccurrences(of: "{\"node\": \"n2\"", with: "{\"nod\": \"n2\""), ["S": "0123456789abcdef0123"],
         #"members[1].node: missing (required); the file has "nod" there (did you mean "node"?)"#),
        (valid.replacingOccurrences(of: "\"port\": 7101, \"secretEnv\"", with: "\"port\": \"7101\", \"secretEnv\""),
         ["S": "0123456789abcdef0123"], #"port: expected a number, found a string ("7101")"#),
        ("{\n  \"cluster\": \"c\",\n  \"node\": n1\n}", ["S": "0123456789abcdef0123"], "not valid JSON at line 3, column"),
        ("{\"cluster\": \"c\"}", ["S": "0123456789abcdef0123"], "node: missing (required)"),
        (valid.replacingOccurrences(of: "\"secretEnv\": \"S\",", with: """
            "secretEnv": "S", "tls": {"certificate": "/missing/n1.pem", "privateKey": "/missing/n1-key.pem", "ca": "/missing/ca.pem"},
            """), ["S": "0123456789abcdef0123"], "/missing/n1.pem"),
        (valid.replacingOccurrences(of: "\"secretEnv\": \"S\",", with: "\"secretEnv\": \"S\", \"tls\": {\"ca\": \"/tmp\"},"),
         ["S": "0123456789abcdef0123"], "tls needs certificate, privateKey and ca"),
        (valid.replacingOccurrences(of: "\"secretEnv\": \"S\",", with: "\"secretEnv\": \"S\", \"redis\": {\"url\": \"rediss://127.0.0.1:6380\", \"tls\": {\"ca\": \"/missing/ca.pem\"}},"),
         ["S": "0123456789abcdef0123"], "/missing/ca.pem"),
        (valid.replacingOccurrences(of: "\"secretEnv\": \"S\",", with: "\"secretEnv\": \"S\", \"logLevel\": \"loud\","),
         ["S": "0123456789abcdef0123"], #"logLevel "loud" is not a level"#),
    ])
    func invalidConfiguration(json: String, environment: [String: String], expected: String) throws {
        let path = try write(json)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try NodeConfiguration.load(path: path, environment: environment)
            Issue.record("expected a configuration error")
        } catch let error as ConfigurationError {
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }
}

@Suite("An application's own configuration section")
struct ApplicationSectionTests {
    @Test("the shop's section is read by the shop, as strictly as the framework's; the framework alone refuses it")
    func shopSection() throws {
        let node = DemoAndConfigurationTests.valid
        let environment = ["S": "0123456789abcdef0123"]
        let path = try DemoAndConfigurationTests().write(node.replacingOccurrences(
            of: "\"secretEnv\": \"S\",", with: "\"secretEnv\": \"S\", \"shop\": {\"paymentTimeoutSeconds\": 30, \"passwordRounds\": 1000},"))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (_, shop) = try ShopServer.load(path: path, environment: environment)
        #expect(shop?.paymentTimeoutSeconds == 30 && shop?.passwordRounds == 1000)
        #expect(throws: ConfigurationError.self) { try NodeConfiguration.load(path: path, environment: environment) }
        for (json, expected) in [
            ("\"shop\": {\"paymentTimeoutSecond\": 30},", #"unknown key "paymentTimeoutSecond" in shop (did you mean "paymentTimeoutSeconds"?)"#),
            ("\"shop\": {\"passwordRounds\": \"many\"},", "shop.passwordRounds"),
            ("\"shop\": {\"reconcileIntervalSeconds\": 0},", "shop.reconcileIntervalSeconds must be at least 1"),
            ("\"shopp\": {},", #"unknown key "shopp" (did you mean "shop"?)"#),
        ] {
            try node.replacingOccurrences(of: "\"secretEnv\": \"S\",", with: "\"secretEnv\": \"S\", " + json)
                .write(toFile: path, atomically: true, encoding: .utf8)
            do {
                _ = try ShopServer.load(path: path, environment: environment)
                Issue.record("expected a configuration error for \(json)")
            } catch let error as ConfigurationError {
                #expect(error.message.contains(expected), "\(error.message)")
            }
        }
        // A file without the section is a shop without settings (every default).
        try node.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try ShopServer.load(path: path, environment: environment).1 == nil)
    }

    @Test("a service's gateway section is read whole: a global rate limit answers 429, the admin listener serves, upstreams without instances need etcd")
    func serviceGatewaySection() async throws {
        let httpPort = try await ServerProcess.freePort(), adminPort = try await ServerProcess.freePort()
        let nodePort = try await ServerProcess.freePort()
        let environment = ["CLUSTER_SECRET": "0123456789abcdef0123", "JWT_SECRET": "0123456789abcdef0123456789abcdef"]
        func file(_ gateway: String) throws -> String {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-gateway-\(UUID().uuidString).json").path
            try """
                {"cluster": "g", "node": "g-1", "host": "127.0.0.1", "port": \(nodePort), "secretEnv": "CLUSTER_SECRET",
                 "members": [{"node": "g-1", "host": "127.0.0.1", "port": \(nodePort)}], "gateway": \(gateway)}
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        var service = TroupeService(name: "g")
        service.routes { _ in [GatewayRoute(.get, "/ping", summary: "Pong", requiresAuth: false) { _, _ in Gateway.json(["pong": true]) }] }
        let path = try file("""
            {"port": \(httpPort), "jwtSecretEnv": "JWT_SECRET", "globalRequestsPerSecond": 1, "admin": {"port": \(adminPort)}}
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        var logger = Logger(label: "gateway-section")
        logger.logLevel = .error
        let running = try await service.start(.init(configurationFile: path), environment: environment, logger: logger)
        try await running.run {
            #expect(try await running.httpPort() == httpPort)
            func status(_ url: String) async throws -> Int {
                let (_, response) = try await URLSession.shared.data(from: URL(string: url)!)
                return (response as? HTTPURLResponse)?.statusCode ?? 0
            }
            // One request a second, burst 1: of three at once, the first passes and the rest are refused.
            var statuses: [Int] = []
            for _ in 0..<3 { statuses.append(try await status("http://127.0.0.1:\(httpPort)/ping")) }
            #expect(statuses.first == 200)
            #expect(statuses.dropFirst().contains(429), "\(statuses)")
            // The admin listener (its own port) answers.
            #expect(try await status("http://127.0.0.1:\(adminPort)/health") == 200)
        }
        // An upstream with no instances is found in the service registry: without etcd, start-up says what to add.
        let upstreams = try file("""
            {"port": \(httpPort), "jwtSecretEnv": "JWT_SECRET", "upstreams": [{"prefix": "/legacy", "service": "legacy"}]}
            """)
        defer { try? FileManager.default.removeItem(atPath: upstreams) }
        do {
            _ = try await service.start(.init(configurationFile: upstreams), environment: environment, logger: logger)
            Issue.record("expected a configuration error")
        } catch let error as ConfigurationError {
            #expect(error.message.contains("gateway.upstreams legacy list no instances"), "\(error.message)")
        }
    }

    @Test("a service's state indexes are made on the embedded SQLite engine")
    func serviceStateIndexes() async throws {
        var service = TroupeService(name: "indexed")
        service.host(Account.self)
        service.stateIndexes = ["balance"]
        var logger = Logger(label: "state-indexes")
        logger.logLevel = .error
        let running = try await service.start(.init(port: 0), logger: logger)
        try await running.run {
            let store = try #require(running.context.system.stateStore as? SQLiteActorStateStore)
            let indexes = try await store.store.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'a_actor_state'")
            #expect(indexes.contains([.text("a_actor_state__balance")]), "\(indexes)")
        }
    }

    @Test("--nodes 3 runs three nodes of the embedded cluster in one process: they see each other and share the actors")
    func serviceEmbeddedNodes() async throws {
        var service = TroupeService(name: "trio")
        service.host(Account.self)
        var logger = Logger(label: "nodes")
        logger.logLevel = .error
        let running = try await service.start(try TroupeService.Options.parse(["trio", "--nodes", "3", "--port", "0"]), logger: logger)
        try await running.run {
            let systems = running.context.systems
            #expect(systems.map(\.node.name) == ["node-1", "node-2", "node-3"])
            #expect(running.context.system === systems[0])
            let deadline = ContinuousClock.now + .seconds(10)
            while systems.contains(where: { $0.members.count < 3 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(systems.allSatisfy { $0.members.count == 3 }, "every node sees the three")
            // Thirty accounts through the first node: they live on more than one node, and one state per key.
            var hosts: Set<String> = []
            for index in 0..<30 {
                _ = try await systems[0].reference(Account.self, key: "a\(index)").deposit(index + 1)
                hosts.insert(try await systems[2].reference(Account.self, key: "a\(index)").host())
            }
            #expect(hosts.count > 1, "placed among the nodes: \(hosts)")
            #expect(try await systems[1].reference(Account.self, key: "a7").balance() == 8)
        }
    }

    @Test("a client service needs the cluster's file; a service whose listener cannot bind ends its work at once with the cause")
    func serviceRoleAndFailedListener() async throws {
        var client = TroupeService(name: "tool")
        client.role = .client
        var logger = Logger(label: "role")
        logger.logLevel = .critical
        do {
            _ = try await client.start(.init(port: 0), logger: logger)
            Issue.record("expected a configuration error")
        } catch let error as ConfigurationError {
            #expect(error.message.contains("client of a cluster"), "\(error.message)")
        }
        // A port another listener holds: the gateway fails to bind, and the work waiting on the service ends with it.
        let holder = try await ServerProcess.launch("python3", installHint: "apt-get install python3") { port, directory in
            ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", directory.path]
        }
        defer { holder.terminate() }
        var service = TroupeService(name: "busy")
        service.routes { _ in [GatewayRoute(.get, "/ping", summary: "Pong", requiresAuth: false) { _, _ in Gateway.json(["pong": true]) }] }
        let running = try await service.start(.init(port: holder.port), logger: logger)
        let started = ContinuousClock.now
        do {
            try await running.run { try await Task.sleep(for: .seconds(60)) }
            Issue.record("the work outlived a listener that could not bind")
        } catch {
            #expect("\(error)".contains("Address already in use"), "the cause, not a cancellation: \(error)")
        }
        #expect(ContinuousClock.now - started < .seconds(10), "ended with the bind failure, not after the work's own minute")
    }

    @Test("a service's command line: embedded by default, --config for real servers, clear errors")
    func serviceOptions() throws {
        #expect(try TroupeService.Options.parse(["hello"]) == TroupeService.Options())
        #expect(try TroupeService.Options.parse(["hello", "--port", "0", "--host", "0.0.0.0"]) == TroupeService.Options(host: "0.0.0.0", port: 0))
        #expect(try TroupeService.Options.parse(["hello", "--config", "hello.json"]).configurationFile == "hello.json")
        for (arguments, expected) in [
            (["hello", "--port", "http"], #"--port must be a number 0…65535 (it is "http")"#),
            (["hello", "--port"], "--port needs a value"),
            (["hello", "--confg", "x"], #"unknown argument "--confg""#),
            (["hello", "--config", "x", "--port", "9"], "--host, --port and --nodes are for the embedded engines"),
        ] {
            do {
                _ = try TroupeService.Options.parse(arguments)
                Issue.record("expected an error for \(arguments)")
            } catch let error as ConfigurationError {
                #expect(error.message.contains(expected), "\(error.message)")
            }
        }
    }
}

@Suite("Environment overrides of the configuration file")
struct EnvironmentOverrideTests {
    @Test("TROUPE_<KEY PATH> variables (swift-configuration's naming) override the file's keys; a wrong type names the variable")
    func overrides() throws {
        let json = """
            {"cluster": "c", "node": "n1", "host": "127.0.0.1", "port": 7101, "secretEnv": "S", "callTimeoutMs": 4000,
             "etcd": {"endpoints": ["127.0.0.1:2379"]}, "redis": {"url": "redis://127.0.0.1:6379"},
             "gateway": {"port": 8080, "jwtSecretEnv": "J", "workerID": 1}}
            """
        let path = try DemoAndConfigurationTests().write(json)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let base = ["S": "0123456789abcdef0123", "J": "0123456789abcdef0123456789abcdef"]
        let plain = try NodeConfiguration.load(path: path, environment: base)
        #expect(plain.callTimeoutMs == 4000 && plain.gateway?.maxInFlight == nil && plain.etcd?.endpoints == ["127.0.0.1:2379"])
        let overridden = try NodeConfiguration.load(path: path, environment: base.merging([
            "TROUPE_CALL_TIMEOUT_MS": "1500", "TROUPE_IDLE_TIMEOUT_SECONDS": "60", "TROUPE_GATEWAY_MAX_IN_FLIGHT": "64",
            "TROUPE_GATEWAY_PORT": "9090", "TROUPE_ETCD_ENDPOINTS": "10.0.0.1:2379, 10.0.0.2:2379", "TROUPE_REDIS_FAIL_FAST_WHILE_DOWN": "true",
            "TROUPE_LOG_LEVEL": "debug", "UNRELATED": "x",
        ]) { $1 })
        #expect(overridden.callTimeoutMs == 1500 && overridden.idleTimeoutSeconds == 60)
        #expect(overridden.gateway?.maxInFlight == 64 && overridden.gateway?.port == 9090)
        #expect(overridden.etcd?.endpoints == ["10.0.0.1:2379", "10.0.0.2:2379"] && overridden.redis?.failFastWhileDown == true)
        #expect(overridden.level == .debug)
        do {
            _ = try NodeConfiguration.load(path: path, environment: base.merging(["TROUPE_GATEWAY_PORT": "http"]) { $1 })
            Issue.record("a port that is not a number was accepted")
        } catch let error as ConfigurationError {
            #expect(error.message.contains("gateway.port") && error.message.contains("TROUPE_GATEWAY_PORT must be a whole number"), "\(error.message)")
        }
    }
}

@Suite("Node configuration with etcd membership")
struct EtcdNodeConfigurationTests {
    @Test("an etcd membership needs no static member list; bad etcd settings fail at start-up")
    func etcdSettings() throws {
        let environment = ["S": "0123456789abcdef0123"]
        let good = """
            {"cluster": "c", "node": "n1", "host": "127.0.0.1", "port": 7101, "secretEnv": "S", "etcd": {"endpoints": ["127.0.0.1:2379"], "ttlSeconds": 5}}
            """
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-etcd-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try good.write(toFile: path, atomically: true, encoding: .utf8)
        let configuration = try NodeConfiguration.load(path: path, environment: environment)
        #expect(configuration.etcd?.endpoints == ["127.0.0.1:2379"])
        for bad in [
            #"{"cluster": "c", "node": "n1", "host": "127.0.0.1", "port": 7101, "secretEnv": "S", "etcd": {"endpoints": []}}"#,
            #"{"cluster": "c", "node": "n1", "host": "127.0.0.1", "port": 7101, "secretEnv": "S"}"#,
            #"{"cluster": "c", "node": "n1", "host": "127.0.0.1", "port": 7101, "secretEnv": "S", "etcd": {"endpoints": ["x"], "ttlSeconds": 0}}"#,
            // https:// endpoints need TLS settings (the node's or the link's own).
            #"{"cluster": "c", "node": "n1", "host": "127.0.0.1", "port": 7101, "secretEnv": "S", "etcd": {"endpoints": ["https://127.0.0.1:2379"]}}"#,
        ] {
            try bad.write(toFile: path, atomically: true, encoding: .utf8)
            #expect(throws: ConfigurationError.self) { try NodeConfiguration.load(path: path, environment: environment) }
        }
    }
}

@Suite("The shop demo through the gateway")
struct ShopDemoTests {
    @Test("2,000 orders through the HTTP gateway with payment failures and cancellations; every invariant holds")
    func shop() async throws {
        var options = ShopDemo.Options()
        options.nodes = 3
        options.orders = 2_000
        options.users = 20          // every fifth user has too little money: payments fail
        options.products = 8        // two hot products sell out
        options.cancelRate = 0.1    // a tenth of the orders are cancelled by their users
        options.concurrency = 16
        options.port = try await ServerProcess.freePort()
        let demo = ShopDemo(options: options)
        let summary = try await withDeadline(.seconds(300)) { try await demo.run() }
        #expect(summary.orders == 2_000)
        #expect(summary.completed > 0)
        #expect(summary.userCancels > 0, "users cancelled some orders")
        #expect(summary.cancelled > summary.userCancels, "payments failed or stock ran out for others, and their sagas compensated")
        #expect(summary.httpErrors == 0)
        #expect(summary.stockConserved, "\(summary.problems)")
        #expect(summary.moneyConserved, "\(summary.problems)")
        #expect(summary.noNegative)
        #expect(summary.everyOrderFinal, "\(summary.problems)")
        #expect(summary.chargedOnce, "\(summary.problems)")
        #expect(summary.ok)
    }
}

@Suite("The shop dashboard")
struct ShopDashboardTests {
    @Test("/dashboard.json shows the members, the nodes' activations, the bus backlog and the catalog cache")
    func dashboard() async throws {
        var options = ShopDemo.Options()
        options.nodes = 2
        options.users = 4
        options.products = 3
        options.port = try await ServerProcess.freePort()
        let client = ShopHTTPClient(base: "http://127.0.0.1:\(options.port)")
        let demo = ShopDemo(options: options)
        let (status, data, page) = try await withDeadline(.seconds(120)) {
            try await demo.serve { _, _ in
                let token = try await client.login(user: "user-1", password: "pw-user-1")
                _ = try await client.placeOrder(token: token, sku: "sku-1", quantity: 1)
                let (status, data) = try await client.request("GET", "/dashboard.json")
                let (pageStatus, _) = try await client.request("GET", "/dashboard")
                return (status, data.mapValues { "\($0)" }, pageStatus)
            }
        }
        #expect(status == 200)
        #expect(page == 200)
        #expect(data["members"]?.contains("node-1") == true && data["members"]?.contains("node-2") == true, "\(data)")
        #expect(data["nodes"]?.contains("activations") == true)
        #expect(data["backlog"]?.contains("shop-sales") == true && data["backlog"]?.contains("shop-order-timeouts") == true)
        #expect(data["ordersPlaced"] == "1")
        #expect(Double(data["cacheHitRate"] ?? "") != nil)
    }
}

@Suite("The demo's per-user rate limit")
struct ShopDemoRateLimitTests {
    @Test("past its per-user rate a user gets 429; another user is unaffected")
    func perUserLimit() async throws {
        var options = ShopDemo.Options()
        options.nodes = 1
        options.users = 2
        options.products = 1
        options.userRequestsPerSecond = 5
        options.port = try await ServerProcess.freePort()
        let client = ShopHTTPClient(base: "http://127.0.0.1:\(options.port)")
        let demo = ShopDemo(options: options)
        let (greedy, other) = try await withDeadline(.seconds(120)) {
            try await demo.serve { _, _ in
                let token = try await client.login(user: "user-0", password: "pw-user-0")
                var statuses: [Int] = []
                for _ in 0..<30 { statuses.append(try await client.request("GET", "/cart", token: token).0) }
                let otherToken = try await client.login(user: "user-1", password: "pw-user-1")
                return (statuses, try await client.request("GET", "/cart", token: otherToken).0)
            }
        }
        #expect(greedy.prefix(5).allSatisfy { $0 == 200 }, "\(greedy)")
        #expect(greedy.contains(429), "\(greedy)")
        #expect(other == 200)
    }
}

@Suite("Gateway configuration")
struct GatewayConfigurationFileTests {
    static let base = """
        {"cluster": "shop", "node": "gw", "host": "127.0.0.1", "port": 0, "secretEnv": "S",
         "etcd": {"endpoints": ["127.0.0.1:2379"]}, "mongo": {"uri": "mongodb://127.0.0.1:27017/", "database": "shop"},
         "redis": {"url": "redis://127.0.0.1:6379"}, "gateway": GATEWAY}
        """
    static let environment = ["S": "0123456789abcdef0123", "J": "0123456789abcdef0123456789abcdef"]

    static func load(_ gateway: String, replacing: (String, String)? = nil) throws -> NodeConfiguration {
        var json = base.replacingOccurrences(of: "GATEWAY", with: gateway)
        if let (old, new) = replacing { json = json.replacingOccurrences(of: old, with: new) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-gw-\(UUID().uuidString).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try NodeConfiguration.load(path: path, environment: environment, role: .gateway)
    }

    @Test("a gateway file loads; a client needs no fixed port")
    func valid() throws {
        let configuration = try Self.load(#"{"port": 8080, "jwtSecretEnv": "J"}"#)
        #expect(configuration.gateway?.port == 8080)
        #expect(try configuration.gateway?.secretBytes(environment: Self.environment).count == 32)
    }

    @Test("bad gateway settings fail at start-up saying what to fix", arguments: [
        (#"{"port": 8080, "jwtSecretEnv": "NOPE"}"#, nil, "jwtSecretEnv names NOPE"),
        (#"{"port": 8080, "jwtSecret": "short"}"#, nil, "at least 32 bytes"),
        (#"{"port": 70000, "jwtSecretEnv": "J"}"#, nil, "gateway.port must be 1…65535"),
        (#"{"port": 8080, "jwtSecretEnv": "J", "userRequestsPerSecond": 0}"#, nil, "userRequestsPerSecond must be at least 1"),
        (#"{"port": 8080, "jwtSecretEnv": "J"}"#, ("redis://127.0.0.1:6379", "http://nope"), "redis"),
        (#"{"port": 8080, "jwtSecretEnv": "J"}"#, (#""redis": {"url": "redis://127.0.0.1:6379"}, "#, ""), "needs redis"),
        (#"{"port": 8080, "jwtSecretEnv": "J", "admin": {"port": 8080}}"#, nil, "gateway.admin.port"),
        (#"{"port": 8080, "jwtSecretEnv": "J", "https": {"certificate": "/missing/g.pem", "privateKey": "/missing/g-key.pem"}}"#, nil,
         "/missing/g.pem"),
        (#"{"port": 8080, "jwtSecretEnv": "J", "https": {"ca": "/tmp"}}"#, nil, "gateway.https needs certificate and privateKey"),
    ] as [(String, (String, String)?, String)])
    func invalid(gateway: String, replacing: (String, String)?, expected: String) throws {
        do {
            _ = try Self.load(gateway, replacing: replacing)
            Issue.record("expected a configuration error")
        } catch let error as ConfigurationError {
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }
}
