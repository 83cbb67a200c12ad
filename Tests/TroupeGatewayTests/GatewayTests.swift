import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JWTKit
import Prometheus
import Testing
import TroupeActors
import TroupeCache
import TroupeCore
@testable import TroupeGateway

/// What an executable would bootstrap swift-metrics onto; the gateway serves its Prometheus text.
let registry: PrometheusCollectorRegistry = {
    let registry = PrometheusCollectorRegistry()
    registry.makeCounter(name: "troupe_gateway_requests_total", labels: [("method", "GET")]).increment()
    return registry
}()

@Suite("Gateway")
struct GatewayTests {
    static let secret = Array("0123456789abcdef0123456789abcdef-troupe".utf8)

    static func gateway(userLimit: RateLimit? = nil, maxBody: Int = 1 << 20, routes extra: [GatewayRoute] = []) async throws -> Gateway {
        let store = InMemoryKeyValueStore()
        var configuration = GatewayConfiguration(signing: .hs256(secret: secret), issuer: "troupe", audience: "shop")
        configuration.maxBodyBytes = maxBody
        let services = GatewayServices(
            sessions: SessionStore(store: store), idempotency: IdempotencyStore(store: store),
            userLimiter: try userLimit.map { try LocalRateLimiter($0) },
            authenticate: { user, password in password == "secret-\(user)" ? user : nil },
            metrics: { registry.emitToString() })
        let counter = Counter()
        let routes = [
            GatewayRoute(.get, "/me", summary: "Who am I") { _, context in Gateway.json(["user": context.user ?? ""]) },
            GatewayRoute(.post, "/orders", summary: "Place an order") { request, context in
                let n = await counter.next()
                return Gateway.json(["order": "order-\(n)", "user": context.user ?? ""], status: .created)
            },
        ] + extra
        return try await Gateway(configuration: configuration, services: services, routes: routes)
    }

    actor Counter {
        var value = 0
        func next() -> Int { value += 1; return value }
    }

    static func login(_ client: some TestClientProtocol, user: String = "ann") async throws -> String {
        try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: #"{"username":"\#(user)","password":"secret-\#(user)"}"#)) { response in
            #expect(response.status == .ok)
            let body = try JSONDecoder().decode([String: String].self, from: Data(response.body.readableBytesView))
            return body["token"] ?? ""
        }
    }

    static func problem(_ response: TestResponse) -> [String: String] {
        #expect(response.headers[.contentType] == "application/problem+json")
        let object = (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [String: Any] ?? [:]
        return object.mapValues { "\($0)" }
    }

    @Test("live settings: a route's feature switched off answers 503 and on again 200; the load-shedding bound changes at once")
    func liveSettings() async throws {
        let gateway = try await Self.gateway(routes: [
            GatewayRoute(.get, "/catalog", summary: "A switchable route", requiresAuth: false, feature: "catalog") { _, _ in Gateway.json(["ok": true]) },
        ])
        let app = Application(router: gateway.router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/catalog", method: .get) { #expect($0.status == .ok) }
            gateway.live.setFeature("catalog", enabled: false)
            try await client.execute(uri: "/catalog", method: .get) { response in
                #expect(response.status == .serviceUnavailable && response.headers[.retryAfter] != nil)
                #expect(String(buffer: response.body).contains("the feature catalog is switched off"))
            }
            gateway.live.setFeature("catalog", enabled: true)
            try await client.execute(uri: "/catalog", method: .get) { #expect($0.status == .ok) }
        }
        #expect(gateway.limitViolation(headers: [:], inFlight: 5) == nil)
        try gateway.live.setMaxInFlight(4)
        #expect(gateway.limitViolation(headers: [:], inFlight: 5)?.status == .serviceUnavailable, "shed past the new bound")
        #expect(throws: GatewayError.self) { try gateway.live.setMaxInFlight(0) }
        #expect(gateway.live.maxInFlight == 4)
    }

    struct DomainError: ClassifiedError {
        var failureClass: FailureClass
        var failureName = "domain"
        var publicTitle: String? { "domain says no" }
    }

    @Test("errors are answered by their class (ClassifiedError), whichever module threw them; the actor runtime's too")
    func classifiedErrors() async throws {
        let classes: [(FailureClass, HTTPResponse.Status)] = [
            (.invalidRequest, .badRequest), (.notFound, .notFound), (.conflict, .conflict), (.rejected, .unprocessableContent),
            (.timeout, .serviceUnavailable), (.unavailable, .serviceUnavailable), (.failure, .internalServerError),
        ]
        let routes = classes.enumerated().map { index, pair in
            GatewayRoute(.get, "/fail/\(index)", summary: "fails", requiresAuth: false) { _, _ -> Response in throw DomainError(failureClass: pair.0) }
        } + [GatewayRoute(.get, "/key", summary: "an invalid key", requiresAuth: false) { _, _ -> Response in
            throw ActorSystemError(.invalidKey, "actor keys are at most 1024 bytes")
        }]
        let gateway = try await Self.gateway(routes: routes)
        try await Application(router: gateway.router()).test(.router) { client in
            for (index, (_, status)) in classes.enumerated() {
                try await client.execute(uri: "/fail/\(index)", method: .get) { response in
                    #expect(response.status == status, "class \(classes[index].0)")
                    if status.code < 500 { #expect(String(buffer: response.body).contains("domain says no")) }
                    if status == .serviceUnavailable { #expect(response.headers[.retryAfter] != nil) }
                }
            }
            try await client.execute(uri: "/key", method: .get) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("at most 1024 bytes"))
            }
        }
    }

    @Test("login issues a token; protected routes need it; logout ends the session")
    func authentication() async throws {
        let app = Application(router: try await Self.gateway().router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/me", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(Self.problem(response)["title"] == "authentication required")
            }
            try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: #"{"username":"ann","password":"nope"}"#)) { response in
                #expect(response.status == .unauthorized)
            }
            let token = try await Self.login(client)
            try await client.execute(uri: "/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("\"ann\""))
            }
            try await client.execute(uri: "/auth/logout", method: .post, headers: [.authorization: "Bearer \(token)"]) { response in
                #expect(response.status == .noContent)
            }
            try await client.execute(uri: "/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                #expect(response.status == .unauthorized, "a revoked session ends the token")
                #expect(Self.problem(response)["title"] == "session ended")
            }
        }
    }

    @Test("tokens with alg none, a wrong key, an expired time, or the wrong issuer or audience are refused")
    func badTokens() async throws {
        let gateway = try await Self.gateway()
        let app = Application(router: gateway.router())
        let (_, session) = try await gateway.issueToken(user: "ann")
        @Sendable func claims(iss: String = "troupe", aud: String = "shop", exp: TimeInterval = 3600, nbf: TimeInterval? = nil) -> GatewayClaims {
            GatewayClaims(sub: "ann", sid: session, iss: .init(value: iss), aud: .init(value: [aud]),
                          exp: .init(value: Date().addingTimeInterval(exp)), iat: .init(value: Date()),
                          nbf: nbf.map { .init(value: Date().addingTimeInterval($0)) })
        }
        let right = JWTKeyCollection()
        await right.add(hmac: HMACKey(from: Self.secret), digestAlgorithm: .sha256)
        let wrong = JWTKeyCollection()
        await wrong.add(hmac: HMACKey(from: Array("another-secret-another-secret-another".utf8)), digestAlgorithm: .sha256)
        let header = Data(#"{"alg":"none","typ":"JWT"}"#.utf8).base64URLEncoded()
        let payload = Data(try JSONEncoder().encode(claims())).base64URLEncoded()
        let tokens = [
            "\(header).\(payload).",
            try await wrong.sign(claims()),
            try await right.sign(claims(exp: -60)),
            try await right.sign(claims(iss: "someone-else")),
            try await right.sign(claims(aud: "other-app")),
            // Not valid before an hour from now; and an expiry far beyond the gateway's token lifetime.
            try await right.sign(claims(nbf: 3600)),
            try await right.sign(claims(exp: 400 * 86_400)),
        ]
        try await app.test(.router) { client in
            for token in tokens {
                try await client.execute(uri: "/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                    #expect(response.status == .unauthorized, "token \(token.prefix(40)) accepted")
                    let detail = Self.problem(response)["detail"] ?? ""
                    #expect(!detail.contains("JWT") && !detail.contains("Error"), "the library's internals leak: \(detail)")
                }
            }
            let control = try await right.sign(claims())
            try await client.execute(uri: "/me", method: .get, headers: [.authorization: "Bearer \(control)"]) { response in
                #expect(response.status == .ok, "the control token is accepted")
            }
        }
    }

    @Test("login attempts are limited per account (429 with Retry-After, even with the right password) before the password is checked")
    func loginThrottle() async throws {
        let app = Application(router: try await Self.gateway().router())
        try await app.test(.router) { client in
            for attempt in 0..<10 {
                try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: #"{"username":"ann","password":"guess-\#(attempt)"}"#)) {
                    #expect($0.status == .unauthorized)
                }
            }
            try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: #"{"username":"ann","password":"secret-ann"}"#)) { response in
                #expect(response.status == .tooManyRequests, "the 11th attempt in a minute is refused, right password or not")
                #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 >= 1)
            }
            // Another account is not affected.
            _ = try await Self.login(client, user: "bob")
        }
    }

    @Test("the per-user rate limit answers 429 with Retry-After")
    func rateLimit() async throws {
        let app = Application(router: try await Self.gateway(userLimit: .tokenBucket(ratePerSecond: 1, burst: 3)).router())
        try await app.test(.router) { client in
            let token = try await Self.login(client)
            var statuses: [Int] = []
            for _ in 0..<5 {
                try await client.execute(uri: "/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                    statuses.append(response.status.code)
                    if response.status == .tooManyRequests {
                        let retryAfter = Int(response.headers[.retryAfter] ?? "") ?? 0
                        #expect(retryAfter >= 1)
                    }
                }
            }
            #expect(statuses == [200, 200, 200, 429, 429])
            let other = try await Self.login(client, user: "bob")
            try await client.execute(uri: "/me", method: .get, headers: [.authorization: "Bearer \(other)"]) { response in
                #expect(response.status == .ok, "limits are per user")
            }
        }
    }

    @Test("Idempotency-Key: a replay returns the first response without running the handler again")
    func idempotency() async throws {
        let app = Application(router: try await Self.gateway().router())
        try await app.test(.router) { client in
            let token = try await Self.login(client)
            var bodies: [String] = []
            for _ in 0..<3 {
                try await client.execute(uri: "/orders", method: .post, headers: [.authorization: "Bearer \(token)", HTTPField.Name("Idempotency-Key")!: "k-1"]) { response in
                    #expect(response.status == .created)
                    bodies.append(String(buffer: response.body))
                }
            }
            #expect(Set(bodies).count == 1, "replays return the first response: \(bodies)")
            try await client.execute(uri: "/orders", method: .post, headers: [.authorization: "Bearer \(token)", HTTPField.Name("Idempotency-Key")!: "k-2"]) { response in
                #expect(String(buffer: response.body).contains("order-2"), "a new key runs the handler")
            }
        }
    }

    @Test("Idempotency-Key reused for another request body is 422, never the first response")
    func idempotencyMismatch() async throws {
        let app = Application(router: try await Self.gateway().router())
        try await app.test(.router) { client in
            let token = try await Self.login(client)
            let headers: HTTPFields = [.authorization: "Bearer \(token)", HTTPField.Name("Idempotency-Key")!: "k-9"]
            try await client.execute(uri: "/orders", method: .post, headers: headers, body: ByteBuffer(string: #"{"sku":"a"}"#)) { response in
                #expect(response.status == .created)
            }
            try await client.execute(uri: "/orders", method: .post, headers: headers, body: ByteBuffer(string: #"{"sku":"b"}"#)) { response in
                #expect(response.status == .unprocessableContent)
                #expect(Self.problem(response)["retryable"] == "0", "a permanent refusal does not invite a retry")
            }
            try await client.execute(uri: "/orders", method: .post, headers: headers, body: ByteBuffer(string: #"{"sku":"a"}"#)) { response in
                #expect(response.status == .created)
                #expect(response.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            }
        }
    }

    struct Flaky: TransientError { var isTransient: Bool { true } }
    struct Broken: Error {}

    @Test("a retryable failure is 503 with Retry-After and says so; a permanent one is 500 without Retry-After")
    func retryableFailures() async throws {
        let app = Application(router: try await Self.gateway(routes: [
            GatewayRoute(.get, "/timeout", summary: "t") { _, _ in throw ActorSystemError(.timeout, "the call timed out") },
            GatewayRoute(.get, "/redis-down", summary: "t") { _, _ in throw Flaky() },
            GatewayRoute(.get, "/bug", summary: "t") { _, _ in throw Broken() },
            GatewayRoute(.get, "/store", summary: "t") { _, _ in throw ActorSystemError(.stateStore, "write failed", underlying: Flaky()) },
        ]).router())
        try await app.test(.router) { client in
            let token = try await Self.login(client)
            for path in ["/timeout", "/redis-down", "/store"] {
                try await client.execute(uri: path, method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                    #expect(response.status == .serviceUnavailable, "\(path)")
                    #expect(response.headers[.retryAfter] == "1", "\(path)")
                    #expect(Self.problem(response)["retryable"] == "1", "\(path)")
                }
            }
            try await client.execute(uri: "/bug", method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                #expect(response.status == .internalServerError)
                #expect(response.headers[.retryAfter] == nil)
                #expect(Self.problem(response)["retryable"] == "0")
            }
        }
    }

    @Test("a byEffect route with an Idempotency-Key runs again after a retryable failure, seeing the body each time; not without a key, not after a permanent failure, not beyond its retries")
    func byEffectRetries() async throws {
        let runs = Locked<[String: [String]]>([:])
        let failuresLeft = Locked<[String: Int]>(["/flaky": 2, "/flaky-nokey": 1, "/down": 100])
        @Sendable func record(_ path: String, _ request: Request) async throws {
            var request = request
            let body = String(buffer: try await request.collectBody(upTo: 1024))
            runs.withLock { $0[path, default: []].append(body) }
        }
        @Sendable func flaky(_ path: String) -> GatewayRoute {
            GatewayRoute(.post, path, summary: "t", idempotency: .byEffect) { request, _ in
                try await record(path, request)
                let fail = failuresLeft.withLock { left -> Bool in
                    guard let count = left[path], count > 0 else { return false }
                    left[path] = count - 1
                    return true
                }
                if fail { throw ActorSystemError(.connectionClosed, "the owner left with the call in flight") }
                return Gateway.json(["ok": true], status: .accepted)
            }
        }
        let app = Application(router: try await Self.gateway(routes: [
            flaky("/flaky"), flaky("/flaky-nokey"), flaky("/down"),
            GatewayRoute(.post, "/bug", summary: "t", idempotency: .byEffect) { request, _ in try await record("/bug", request); throw Broken() },
        ]).router())
        try await app.test(.router) { client in
            let token = try await Self.login(client)
            func post(_ path: String, key: String?) async throws -> HTTPResponse.Status {
                var headers: HTTPFields = [.authorization: "Bearer \(token)"]
                if let key { headers[HTTPField.Name("Idempotency-Key")!] = key }
                return try await client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: #"{"n":1}"#)) { $0.status }
            }
            #expect(try await post("/flaky", key: "k-1") == .accepted, "two retryable failures, then the effect")
            #expect(runs.withLock { $0["/flaky"] } == Array(repeating: #"{"n":1}"#, count: 3), "every run saw the body")
            #expect(try await post("/flaky-nokey", key: nil) == .serviceUnavailable, "without a key the client decides")
            #expect(runs.withLock { $0["/flaky-nokey"]?.count } == 1)
            #expect(try await post("/bug", key: "k-2") == .internalServerError)
            #expect(runs.withLock { $0["/bug"]?.count } == 1, "a permanent failure is not run again")
            #expect(try await post("/down", key: "k-3") == .serviceUnavailable, "retries spent: 503 and Retry-After")
            #expect(runs.withLock { $0["/down"]?.count } == 3, "the first run and two retries")
        }
    }

    @Test("body limits, problem+json, health, metrics and the OpenAPI document")
    func operations() async throws {
        let gateway = try await Self.gateway(maxBody: 64)
        let app = Application(router: gateway.router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: String(repeating: "x", count: 1000))) { response in
                #expect(response.status == .contentTooLarge)
                #expect(Self.problem(response)["status"] == "413")
            }
            try await client.execute(uri: "/health", method: .get) { response in #expect(response.status == .ok) }
            try await client.execute(uri: "/ready", method: .get) { response in #expect(response.status == .ok) }
            // A path that has routes, asked with another method: 405 naming the methods it has; no route at all: 404.
            try await client.execute(uri: "/orders", method: .init("TRACE")!) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "POST")
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            try await client.execute(uri: "/health", method: .delete) { response in #expect(response.headers[.allow] == "GET") }
            try await client.execute(uri: "/nowhere", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            // Metrics are not on the public listener unless configured (they show addresses and actor types).
            try await client.execute(uri: "/metrics", method: .get) { response in #expect(response.status == .notFound) }
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                let document = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                #expect(document?["openapi"] as? String == "3.1.0")
                let paths = document?["paths"] as? [String: Any]
                #expect(paths?["/orders"] != nil && paths?["/auth/login"] != nil)
            }
            try await client.execute(uri: "/no-such-route", method: .get) { response in
                #expect(response.status == .notFound)
            }
            // Duplicate keys are refused; decoding errors are told in the API's words.
            try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: #"{"username":"a","username":"b"}"#)) { response in
                #expect(response.status == .badRequest)
                #expect(Self.problem(response)["detail"]?.contains("appears twice") == true)
            }
            for (body, expected) in [(#"{"username":"a"}"#, "missing field 'password'"), (#"{"username":1,"password":"x"}"#, "'username' has the wrong type"),
                                     ("{", "not valid JSON")] {
                try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: body)) { response in
                    #expect(response.status == .badRequest)
                    let detail = Self.problem(response)["detail"] ?? ""
                    #expect(detail.contains(expected), "\(body): \(detail)")
                    #expect(!detail.contains("CodingKeys") && !detail.contains("DecodingError") && !detail.contains("Context"), "\(detail)")
                }
            }
        }
        // The admin listener: metrics, probes and the routes given to it, no token.
        let dashboard = GatewayRoute(.get, "/dashboard.json", summary: "ops", requiresAuth: false) { _, _ in Response(status: .ok) }
        try await Application(router: gateway.adminRouter(routes: [dashboard])).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
                let text = String(buffer: response.body)
                #expect(text.contains("# TYPE troupe_gateway_requests_total counter"), "\(text)")
                #expect(text.contains(#"troupe_gateway_requests_total{method="GET"}"#), "\(text)")
            }
            try await client.execute(uri: "/dashboard.json", method: .get) { response in #expect(response.status == .ok) }
            try await client.execute(uri: "/health", method: .get) { response in #expect(response.status == .ok) }
            try await client.execute(uri: "/orders", method: .get) { response in #expect(response.status == .notFound) }
        }
    }

    @Test("invalid configuration fails at start-up")
    func configuration() async throws {
        let store = InMemoryKeyValueStore()
        let services = GatewayServices(sessions: SessionStore(store: store), idempotency: IdempotencyStore(store: store), authenticate: { _, _ in nil })
        await #expect(throws: GatewayError.self) {
            _ = try await Gateway(configuration: GatewayConfiguration(signing: .hs256(secret: Array("short".utf8)), issuer: "i", audience: "a"),
                                  services: services, routes: [])
        }
    }
}

extension Data {
    func base64URLEncoded() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
