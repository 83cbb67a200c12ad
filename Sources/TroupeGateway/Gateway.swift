import Foundation
public import HTTPTypes
public import Hummingbird
public import HummingbirdCore
import JWTKit
import Crypto
public import Logging
import Metrics
public import NIOCore
import NIOHTTP1
public import TroupeTLS
import Synchronization
import Instrumentation
import ServiceContextModule
import Tracing
import TroupeCache
import TroupeCore
import NIOSSL

/// The request context of the gateway: who the caller is, once authenticated.
public struct GatewayContext: RequestContext {
    /// Hummingbird's storage behind every request context.
    public var coreContext: CoreRequestContextStorage
    /// The authenticated user (nil on public routes).
    public var user: String?
    /// The server-side session of the token.
    public var sessionID: String?
    /// The request's `Idempotency-Key` (unsafe methods on protected routes; at most 200 bytes). A route
    /// declared ``IdempotencyHandling/byEffect`` binds its effect to this key.
    public var idempotencyKey: String?
    /// The client's IP address (nil when unknown, e.g. in router tests).
    public var remoteAddress: String?

    /// The context of a request arriving from `source` (no user until authenticated).
    public init(source: Source) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress
    }

    /// The path parameter `name` of the route (`name` in `/hello/:name`).
    /// - Throws: ``GatewayError`` 400 when the route has no such parameter.
    public func parameter(_ name: String) throws(GatewayError) -> String {
        guard let value = parameters.get(name) else { throw GatewayError(.badRequest, "missing path parameter", detail: name) }
        return value
    }
}

/// How a route keeps the promise of the `Idempotency-Key` header (unsafe methods on protected routes).
public enum IdempotencyHandling: Sendable, Hashable {
    /// The gateway claims the key, runs the handler once and replays its response to later requests with
    /// the key (409 while the first runs, 422 for the key reused with another request). A failure (5xx)
    /// releases the claim so a retry runs the handler again: use it for handlers that have no effect when
    /// they fail, or whose effect is idempotent anyway.
    case replay
    /// The handler binds the key to its effect itself (``GatewayContext/idempotencyKey``): every request
    /// with the key — after a timeout, a 5xx, a crash of the gateway, concurrently — reaches the same
    /// effect and answers its current state. The gateway neither claims nor replays. This is what a route
    /// that creates something must use: a claim can expire or be released, an effect keyed by the
    /// idempotency key cannot happen twice.
    case byEffect
}

/// One entry of the route table: a REST route and what answers it (usually a virtual actor call).
public struct GatewayRoute: Sendable {
    /// The HTTP method it answers.
    public var method: HTTPRequest.Method
    /// The path template (`/orders/:id`).
    public var path: String
    /// One line for `/openapi.json`.
    public var summary: String
    /// Whether a valid token is needed (401 without).
    public var requiresAuth: Bool
    /// How the route keeps the promise of `Idempotency-Key` (see ``IdempotencyHandling``).
    public var idempotency: IdempotencyHandling
    /// The JSON body it reads, for `/openapi.json` (nil: none).
    public var request: APISchema?
    /// Its answers other than the gateway's own problems, for `/openapi.json`.
    public var responses: [APIResponse]
    /// The feature flag that switches the route off while it is "false" (``GatewayLiveSettings/setFeature(_:enabled:)``,
    /// `features/<name>` in the live configuration): it then answers 503. Nil: always on.
    public var feature: String?
    /// What answers the request once the gateway's checks have passed.
    public var handler: @Sendable (Request, GatewayContext) async throws -> Response

    /// A route; see each property.
    public init(_ method: HTTPRequest.Method, _ path: String, summary: String, requiresAuth: Bool = true,
                idempotency: IdempotencyHandling = .replay, request: APISchema? = nil,
                responses: [APIResponse] = [APIResponse(200, "OK")], feature: String? = nil,
                handler: @escaping @Sendable (Request, GatewayContext) async throws -> Response) {
        self.feature = feature
        self.method = method
        self.path = path
        self.summary = summary
        self.requiresAuth = requiresAuth
        self.idempotency = idempotency
        self.request = request
        self.responses = responses
        self.handler = handler
    }
}

/// The stateless gateway: JWT authentication with server-side sessions, rate limits (per user and
/// global) answered with 429 + Retry-After, `Idempotency-Key` replay for unsafe requests, body and header
/// limits, load shedding, RFC 9457 errors, `/health`, `/ready`, `/metrics` and `/openapi.json`.
public struct Gateway: Sendable {
    /// The settings it was made with (validated).
    public let configuration: GatewayConfiguration
    /// The sessions, idempotency store, limiters and checks it uses.
    public let services: GatewayServices
    /// The routes it answers itself.
    public let routes: [GatewayRoute]
    /// Path prefixes proxied to upstream services, and their pools.
    public let upstreams: [(UpstreamRoute, UpstreamPool)]
    let keys: JWTKeyCollection
    let verifier: TokenVerifier
    let upstreamClient: UpstreamHTTPClient
    let inFlight = AtomicCount()
    let requestMetrics = RequestMetrics()
    /// "request failed; retryable" is written at most once per 30 s (during an outage every request fails so).
    let retryableFailures = SharedLogThrottle()
    /// Requests proxied in the channel pipeline (`RawProxyHandler` or `UpstreamFastPathHandler`), for tests
    /// and diagnostics; `byteLevelProxied` counts those of `RawProxyHandler`.
    let pipelineProxied = AtomicCount()
    let byteLevelProxied = AtomicCount()
    /// What an operator changes while the gateway runs: the load-shedding bound and the feature flags.
    public let live: GatewayLiveSettings
    /// The longest `Idempotency-Key` accepted, in bytes (longer ones are a 400; the API description says so).
    public static let maxIdempotencyKeyBytes = 200

    final class AtomicCount: Sendable {
        let count = Atomic<Int>(0)
    }

    /// A gateway answering `routes` and proxying `upstreams`.
    /// - Throws: ``GatewayError`` for a configuration that cannot work (the message names the setting).
    public init(configuration: GatewayConfiguration, services: GatewayServices, routes: [GatewayRoute],
                upstreams: [(UpstreamRoute, UpstreamPool)] = []) async throws {
        try configuration.validate()
        for (route, _) in upstreams where !route.prefix.hasPrefix("/") || route.prefix.count < 2 {
            throw GatewayError.configuration("upstream prefix \"\(route.prefix)\" must start with / and name a path")
        }
        self.configuration = configuration
        self.live = GatewayLiveSettings(maxInFlight: configuration.maxInFlight)
        self.services = services
        self.routes = routes
        self.upstreams = upstreams
        self.upstreamClient = UpstreamHTTPClient(maxResponseBytes: configuration.maxBodyBytes * 16)
        self.keys = try await configuration.keys()
        self.verifier = TokenVerifier(algorithm: try await keys.getKey())
    }

    /// Issues a token for `user` bound to a new server-side session.
    public func issueToken(user: String) async throws -> (token: String, sessionID: String) {
        let sessionID = try await services.sessions.create(GatewayServices.Session(user: user))
        let now = Date()
        let claims = GatewayClaims(sub: .init(value: user), sid: sessionID, iss: .init(value: configuration.issuer),
                                   aud: .init(value: [configuration.audience]),
                                   exp: .init(value: now.addingTimeInterval(Double(configuration.tokenTTL.components.seconds))),
                                   iat: .init(value: now))
        return (try await keys.sign(claims), sessionID)
    }

    /// Verifies a bearer token: signature, expiry, issuer, audience, and a live session.
    func authenticate(_ request: Request) async throws -> (user: String, session: String) {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else {
            throw GatewayError(.unauthorized, "authentication required", detail: "send Authorization: Bearer <token>",
                               headers: [.wwwAuthenticate: "Bearer"])
        }
        let token = String(header.dropFirst(7))
        let claims: GatewayClaims
        do {
            claims = try await verifier.verify(token)
        } catch {
            // The library's own wording stays in the logs, not in the answer.
            throw GatewayError(.unauthorized, "invalid token", detail: "the token is malformed, expired, not yet valid or not signed by this gateway",
                               headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        }
        // A token living longer than this gateway issues them (a minute of clock skew allowed) was not issued here.
        guard claims.exp.value.timeIntervalSince(Date()) <= Double(configuration.tokenTTL.components.seconds) + 60 else {
            throw GatewayError(.unauthorized, "invalid token", detail: "expiry beyond the token lifetime", headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        }
        guard claims.iss.value == configuration.issuer else {
            throw GatewayError(.unauthorized, "invalid token", detail: "wrong issuer", headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        }
        guard claims.aud.value.contains(configuration.audience) else {
            throw GatewayError(.unauthorized, "invalid token", detail: "wrong audience", headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        }
        guard let session = try await services.sessions.get(claims.sid), session.user == claims.sub.value else {
            throw GatewayError(.unauthorized, "session ended", detail: "log in again", headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        }
        return (claims.sub.value, claims.sid)
    }

    /// The router with every middleware and route.
    public func router() -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        // A span per request (trace context taken from the caller's headers); actor calls and upstream
        // requests made while handling it carry the context on.
        router.add(middleware: RequestMetricsMiddleware(metrics: requestMetrics))
        router.add(middleware: GatewayTracingMiddleware())
        router.add(middleware: ProblemMiddleware(allowed: AllowedMethods(operations: openAPIOperations(), prefixes: upstreams.map(\.0.prefix)),
                                                 retryableFailures: retryableFailures))
        router.add(middleware: LimitsMiddleware(gateway: self))
        addProbes(to: router)
        if configuration.publicMetrics { addMetrics(to: router) }
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: openAPIDocument())))
        }
        router.post("/auth/login") { request, context in
            struct Login: Decodable { var username: String; var password: String }
            let login = try await Self.decode(Login.self, request, limit: configuration.maxBodyBytes)
            if let limiter = services.loginAddressLimiter { try await admit(limiter, key: "login:address:\(context.remoteAddress ?? "unknown")", as: .loginAddress) }
            if let limiter = services.loginLimiter { try await admit(limiter, key: "login:user:\(login.username.prefix(200))", as: .loginUser) }
            guard let user = try await services.authenticate(login.username, login.password) else {
                throw GatewayError(.unauthorized, "wrong username or password")
            }
            let (token, _) = try await issueToken(user: user)
            return Self.json(["token": token, "tokenType": "Bearer", "expiresIn": String(configuration.tokenTTL.components.seconds)])
        }
        let protected = router.group().add(middleware: AuthMiddleware(gateway: self))
        protected.post("/auth/logout") { _, context in
            if let session = context.sessionID { try await services.sessions.revoke(session) }
            return Response(status: .noContent)
        }
        for (route, pool) in upstreams {
            let proxy = UpstreamProxy(route: route, pool: pool, maxBody: configuration.maxBodyBytes, client: upstreamClient)
            let group = route.requiresAuth ? protected.group(RouterPath(route.prefix)) : router.group(RouterPath(route.prefix))
            for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete, .head, .options] {
                group.on("**", method: method) { request, context in
                    guard context.idempotencyKey != nil else { return try await proxy.forward(request, context: context) }
                    return try await IdempotentReplay(gateway: self).run(request, context) { try await proxy.forward($0, context: $1) }
                }
            }
        }
        for route in routes {
            let handler: @Sendable (Request, GatewayContext) async throws -> Response
            if let feature = route.feature {
                let live = self.live
                handler = { request, context in
                    guard live.isEnabled(feature) else {
                        throw GatewayError(.serviceUnavailable, "temporarily disabled", detail: "the feature \(feature) is switched off",
                                           headers: [.retryAfter: "30"])
                    }
                    return try await route.handler(request, context)
                }
            } else {
                handler = route.handler
            }
            if route.requiresAuth {
                let replay = route.idempotency == .replay ? IdempotentReplay(gateway: self) : nil
                let retry = route.idempotency == .byEffect && configuration.byEffectRetries > 0
                    ? EffectRetry(retries: configuration.byEffectRetries, budget: configuration.byEffectRetryBudget, maxBody: configuration.maxBodyBytes)
                    : nil
                protected.on(RouterPath(route.path), method: route.method) { request, context in
                    guard context.idempotencyKey != nil else { return try await handler(request, context) }
                    if let replay { return try await replay.run(request, context, handler) }
                    if let retry { return try await retry.run(request, context, handler) }
                    return try await handler(request, context)
                }
            } else {
                router.on(RouterPath(route.path), method: route.method) { request, context in try await handler(request, context) }
            }
        }
        return router
    }

    /// The admin listener's router: `/health`, `/ready`, `/metrics` (Prometheus text) and `routes` (e.g. the
    /// shop's dashboard), without tokens or rate limits — serve it on a private address only.
    public func adminRouter(routes: [GatewayRoute] = []) -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        router.add(middleware: ProblemMiddleware(retryableFailures: retryableFailures))
        addProbes(to: router)
        addMetrics(to: router)
        for route in routes {
            router.on(RouterPath(route.path), method: route.method) { [handler = route.handler] request, context in try await handler(request, context) }
        }
        return router
    }

    /// `/health` (the process answers) and `/ready` (its dependencies answer).
    private func addProbes(to router: Router<GatewayContext>) {
        router.get("/health") { _, _ in Self.json(["status": "ok"]) }
        router.get("/ready") { [services] _, _ in
            guard await services.ready() else { throw GatewayError(.serviceUnavailable, "not ready") }
            return Self.json(["status": "ready"])
        }
    }

    private func addMetrics(to router: Router<GatewayContext>) {
        router.get("/metrics") { [services] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: services.metrics())))
        }
    }

    /// An application serving the gateway on `host:port`; HTTPS with `tls` (run the reloader as a service too,
    /// so renewed certificate files are picked up without a restart).
    /// - Parameters:
    ///   - host: the address to listen on.
    ///   - port: the port (0: any free one).
    ///   - tls: HTTPS with the reloader's current certificates; nil: plain HTTP.
    ///   - logger: where the server logs.
    ///   - onServerRunning: called with the listening channel once it is bound (its `localAddress` has the
    ///     port when `port` is 0).
    public func application(host: String = "127.0.0.1", port: Int = 8080, tls: TLSContextReloader? = nil,
                            logger: Logger = Logger(label: "troupe.gateway"),
                            onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) -> GatewayServer {
        let accepted = AcceptedConnections()
        let application = Application(router: router(), server: httpServer(tls: tls, accepted: accepted),
                                      configuration: .init(address: .hostname(host, port: port)),
                                      onServerRunning: onServerRunning, logger: logger)
        return GatewayServer(application: application, accepted: accepted)
    }

    /// An application serving the admin surface (`adminRouter(routes:)`) on its own `host:port`.
    public func adminApplication(host: String = "127.0.0.1", port: Int, routes: [GatewayRoute] = [],
                                 logger: Logger = Logger(label: "troupe.gateway")) -> GatewayServer {
        let accepted = AcceptedConnections()
        let application = Application(router: adminRouter(routes: routes),
                                      server: .http1OnEventLoop(beforeConversion: { [] }, tls: nil, accepted: accepted),
                                      configuration: .init(address: .hostname(host, port: port)), logger: logger)
        return GatewayServer(application: application, accepted: accepted)
    }

    /// The reloading TLS context of an HTTPS gateway: TLS 1.2 or 1.3, ALPN `http/1.1`, no client certificates.
    /// - Throws: `TLSError` naming the certificate or key file to fix.
    public static func httpsContext(_ settings: TLSSettings, logger: Logger) throws -> TLSContextReloader {
        try TLSContextReloader(settings: settings, logger: logger) {
            try $0.makeServerContext(requireClientCertificate: false, minimumVersion: .tlsv12, applicationProtocols: ["http/1.1"])
        }
    }

    /// HTTP/1.1 with each connection served on its own event loop (`EventLoopBoundHTTP1Channel`) and the
    /// public upstream routes proxied in the channel pipeline: from bytes to bytes (`RawProxyHandler`) while a
    /// connection's requests have the common shape, then on NIO's parsed parts (`UpstreamFastPathHandler`).
    /// Idle connections and requests that do not arrive in time are closed (`idleTimeout`,
    /// `requestReadTimeout`; `ClientDeadlineHandler` and the byte-level path).
    public func httpServer(tls: TLSContextReloader? = nil) -> HTTPServerBuilder {
        httpServer(tls: tls, accepted: nil)
    }

    func httpServer(tls: TLSContextReloader?, accepted: AcceptedConnections?) -> HTTPServerBuilder {
        let reserved = routes.map(\.path)
        // A route-table entry under an upstream prefix belongs to the router: such prefixes stay off the fast path.
        let proxies = upstreams.filter { route, _ in
            !route.requiresAuth && !reserved.contains { $0 == route.prefix || $0.hasPrefix(route.prefix + "/") }
        }.map { route, pool in
            UpstreamProxy(route: route, pool: pool, maxBody: configuration.maxBodyBytes, client: upstreamClient)
        }
        let settings = configuration
        guard !proxies.isEmpty else {
            return .http1OnEventLoop(beforeConversion: { [RequestHeadCheckHandler(), ClientDeadlineHandler(configuration: settings, armed: true)] },
                                     tls: tls, accepted: accepted)
        }
        let byteLevel = settings.byteLevelProxy
        return .http1OnEventLoop(inFront: { byteLevel ? [RawProxyHandler(gateway: self, proxies: proxies)] : [] },
                                 beforeConversion: {
                                     [RequestHeadCheckHandler(), ClientDeadlineHandler(configuration: settings, armed: !byteLevel),
                                      UpstreamFastPathHandler(gateway: self, proxies: proxies)]
                                 }, tls: tls, accepted: accepted)
    }

    // MARK: Helpers

    /// A JSON response of `value` with `status` (an encoding failure answers `{}`).
    public static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONEncoder().encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Collects at most `limit` bytes of `request`'s body (413 beyond) and decodes them as ``decodeBody(_:from:)`` does.
    public static func decode<T: Decodable>(_ type: T.Type, _ request: Request, limit: Int) async throws -> T {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch {
            throw bodyTooLarge(limit)
        }
        return try decodeBody(T.self, from: buffer)
    }

    /// Decodes a JSON request body that has been collected: a body with a key twice in one object, one
    /// that is not JSON or one that does not match `T` is a 400 naming what is wrong.
    public static func decodeBody<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws(GatewayError) -> T {
        if let key = JSONDuplicateKeys.first(in: buffer.readableBytesView) {
            throw GatewayError(.badRequest, "malformed JSON body", detail: "the key \"\(key.prefix(64))\" appears twice in one object")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw GatewayError(.badRequest, "malformed JSON body", detail: Self.describe(error))
        } catch {
            throw GatewayError(.badRequest, "malformed JSON body", detail: "the body is not valid JSON")
        }
    }

    /// What was wrong with a body, in the API's words (field paths, not the decoder's internals).
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context, _ last: (any CodingKey)? = nil) -> String {
            let keys = context.codingPath + (last.map { [$0] } ?? [])
            let text = keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return text.isEmpty ? "the body" : "'\(text.prefix(64))'"
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing field \(path(context, key))"
        case .valueNotFound(_, let context): return "\(path(context)) must not be null"
        case .typeMismatch(let type, let context): return "\(path(context)) has the wrong type (expected \(Self.jsonKind(of: type)))"
        case .dataCorrupted(let context): return context.codingPath.isEmpty ? "the body is not valid JSON" : "\(path(context)) has an invalid value"
        @unknown default: return "the body does not match the expected shape"
        }
    }

    static func jsonKind(of type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is any BinaryInteger.Type: "an integer"
        case is any BinaryFloatingPoint.Type: "a number"
        default: "another JSON type"
        }
    }

    /// OpenAPI 3.1 description of the public API (see `OpenAPIDocument`).
    func openAPIDocument() -> [UInt8] {
        OpenAPIDocument(operations: openAPIOperations()).render()
    }

    /// Every operation of the public API, as the description and the 405 answers (`AllowedMethods`) name them.
    func openAPIOperations() -> [OpenAPIDocument.Operation] {
        typealias Operation = OpenAPIDocument.Operation
        let unsafe: Set<HTTPRequest.Method> = [.post, .put, .patch, .delete]
        let status: APISchema = .object(["status": .string], required: ["status"])
        var operations = [
            Operation(method: .post, path: "/auth/login", summary: "Log in: returns a bearer token bound to a server-side session", secured: false,
                      request: .object(["username": .string, "password": .string], required: ["username", "password"]),
                      responses: [APIResponse(200, "The token", schema: .object(["token": .string, "tokenType": .string, "expiresIn": .string],
                                                                                 required: ["token", "tokenType", "expiresIn"])),
                                  APIResponse(401, "Wrong username or password", schema: .reference("Problem"), contentType: "application/problem+json")]),
            Operation(method: .post, path: "/auth/logout", summary: "Log out: ends the session", secured: true,
                      responses: [APIResponse(204, "The session ended")]),
            Operation(method: .get, path: "/health", summary: "Liveness", secured: false, responses: [APIResponse(200, "Alive", schema: status)]),
            Operation(method: .get, path: "/ready", summary: "Readiness (503 until the services it needs answer)", secured: false,
                      responses: [APIResponse(200, "Ready", schema: status)]),
            Operation(method: .get, path: "/openapi.json", summary: "This description", secured: false,
                      responses: [APIResponse(200, "OpenAPI 3.1", schema: .object([:]))]),
        ]
        if configuration.publicMetrics {
            operations.append(Operation(method: .get, path: "/metrics", summary: "Prometheus metrics", secured: false,
                                        responses: [APIResponse(200, "The metrics in the text exposition format", schema: .string, contentType: "text/plain")]))
        }
        for route in routes {
            operations.append(Operation(method: route.method, path: route.path, summary: route.summary, secured: route.requiresAuth,
                                        idempotency: route.requiresAuth && unsafe.contains(route.method) ? route.idempotency : nil,
                                        request: route.request, responses: route.responses))
        }
        return operations
    }
}

/// Runs the handler of a ``IdempotencyHandling/byEffect`` route again after a retryable failure (see
/// ``GatewayConfiguration/byEffectRetries``): the request's key binds the effect, so another run reaches
/// the same effect. The body is read once first, so that every run sees it.
struct EffectRetry {
    static let retried = Counter(label: MetricFamilies.gatewayEffectRetries.name)
    let retries: Int
    let budget: Duration
    let maxBody: Int

    func run(_ request: Request, _ context: GatewayContext,
             _ handler: @Sendable (Request, GatewayContext) async throws -> Response) async throws -> Response {
        let deadline = ContinuousClock.now + budget
        var request = request
        do {
            _ = try await request.collectBody(upTo: maxBody)
        } catch {
            throw Gateway.bodyTooLarge(maxBody)
        }
        var delay = Duration.milliseconds(50)
        var attempt = 0
        while true {
            do {
                return try await handler(request, context)
            } catch where attempt < retries && isTransient(error) && ContinuousClock.now + delay < deadline {
                attempt += 1
                Self.retried.increment()
                context.logger.info("retrying a request bound to its Idempotency-Key", metadata: [
                    "gateway.error": "\(ProblemMiddleware.kind(of: error))", "gateway.attempt": "\(attempt + 1)",
                ])
                try await Task.sleep(for: delay)
                delay = min(delay * 4, .milliseconds(800))
            }
        }
    }
}

/// Errors → problem+json (the outermost middleware).
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    /// The methods of each route: a path that has routes, asked with another method, is answered 405 with
    /// `Allow` (nil: 404 as the router answers).
    var allowed: AllowedMethods?
    var retryableFailures = SharedLogThrottle()

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as GatewayError {
            return error.response(instance: request.uri.path)
        } catch let error as HTTPError where error.status == .notFound && context.endpointPath == "NotFound" {
            // The router found no route for this method and path.
            guard let methods = allowed?.methods(for: request.uri.path), !methods.isEmpty else {
                return GatewayError(.notFound, "not found").response(instance: request.uri.path)
            }
            return GatewayError(.methodNotAllowed, "method not allowed", detail: "\(request.method.rawValue) is not one of \(methods.joined(separator: ", "))",
                                headers: [.allow: methods.joined(separator: ", ")]).response(instance: request.uri.path)
        } catch let error as HTTPError {
            return GatewayError(error.status, error.status.reasonPhrase, detail: error.body ?? "").response(instance: request.uri.path)
        } catch let error as any ClassifiedError where [.invalidRequest, .notFound, .conflict, .rejected].contains(error.failureClass) {
            // The request's fault (a path parameter too long to be any actor's key, say), as its error says.
            let (status, title): (HTTPResponse.Status, String) = switch error.failureClass {
            case .notFound: (.notFound, "not found")
            case .conflict: (.conflict, "conflict")
            case .rejected: (.unprocessableContent, "request refused")
            default: (.badRequest, "invalid request")
            }
            return GatewayError(status, error.publicTitle ?? title, detail: error.publicDetail ?? error.failureName).response(instance: request.uri.path)
        } catch where isTransient(error) || [.timeout, .unavailable].contains((error as? any ClassifiedError)?.failureClass) {
            // The cluster is changing (a member died, an actor is moving) or a server it needs is restarting:
            // 503 + Retry-After, the client may retry (with the same Idempotency-Key) shortly.
            // During an outage every request fails this way: one line per 30 s, with how many were held back.
            if let held = retryableFailures.admit() {
                context.logger.warning("request failed; retryable", metadata: ["gateway.error": "\(error)", "log.suppressed": "\(held)"])
            }
            let timedOut = (error as? any ClassifiedError)?.failureClass == .timeout
            return GatewayError(.serviceUnavailable, timedOut ? "the cluster did not answer in time" : "temporarily unavailable",
                                detail: timedOut ? "timeout" : Self.kind(of: error), headers: [.retryAfter: "1"]).response(instance: request.uri.path)
        } catch {
            context.logger.error("request failed", metadata: ["gateway.error": "\(error)"])
            return GatewayError(.internalServerError, "internal error").response(instance: request.uri.path)
        }
    }

    /// A short name of what failed, without the message (which may carry keys or values).
    static func kind(of error: any Error) -> String {
        if let error = error as? any ClassifiedError { return error.failureName }
        return String(describing: type(of: error))
    }
}

/// Load shedding, header and body size limits, and the global rate limit.
struct LimitsMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let gateway: Gateway

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        let inFlight = gateway.inFlight.count.wrappingAdd(1, ordering: .relaxed).newValue
        defer { gateway.inFlight.count.subtract(1, ordering: .relaxed) }
        if let violation = gateway.limitViolation(headers: request.headers, inFlight: inFlight) { throw violation }
        if let limiter = gateway.services.globalLimiter {
            try await admit(limiter, key: "global", as: .global)
        }
        return try await next(request, context)
    }
}

extension Gateway {
    /// Load shedding and the header and declared-body limits, for the router path (`LimitsMiddleware`) and
    /// the pipeline path (`UpstreamFastPathHandler`) alike. `inFlight` counts this request.
    func limitViolation(headers: HTTPFields, inFlight: Int) -> GatewayError? {
        let headerBytes = headers.reduce(0) { $0 + $1.name.rawName.utf8.count + $1.value.utf8.count + 4 }
        return limitViolation(headerBytes: headerBytes, contentLength: headers[.contentLength], inFlight: inFlight)
    }

    /// The same check from the header block's size and its Content-Length (the pipeline path reads them from
    /// NIO's request head).
    func limitViolation(headerBytes: Int, contentLength: String?, inFlight: Int) -> GatewayError? {
        guard inFlight <= live.maxInFlight else {
            Counter(label: MetricFamilies.gatewayShed.name).increment()
            return GatewayError(.serviceUnavailable, "overloaded", detail: "try again shortly", headers: [.retryAfter: "1"])
        }
        guard headerBytes <= configuration.maxHeaderBytes else {
            return GatewayError(HTTPResponse.Status(code: 431, reasonPhrase: "Request Header Fields Too Large"), "request headers too large",
                                detail: "at most \(configuration.maxHeaderBytes) bytes")
        }
        if let length = contentLength.flatMap(Int.init), length > configuration.maxBodyBytes {
            return Self.bodyTooLarge(configuration.maxBodyBytes)
        }
        return nil
    }

    static func bodyTooLarge(_ limit: Int) -> GatewayError {
        GatewayError(.contentTooLarge, "request body too large", detail: "at most \(limit) bytes")
    }
}

/// A span per request, continuing the trace the caller's headers carry (W3C `traceparent` with a
/// tracer that propagates it), with the method, route, status and error; the handler — and the actor
/// calls, upstream requests and bus messages it makes — run in the span's context.
struct GatewayTracingMiddleware: RouterMiddleware {
    typealias Context = GatewayContext

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        var serviceContext = ServiceContext.current ?? .topLevel
        InstrumentationSystem.instrument.extract(request.headers, into: &serviceContext, using: HTTPFieldsExtractor())
        return try await InstrumentationSystem.tracer.withSpan(request.method.rawValue, context: serviceContext, ofKind: .server) { span in
            let response: Response
            do {
                response = try await next(request, context)
            } catch {
                span.recordError(error)
                throw error
            }
            span.recordHTTP(method: request.method, path: request.uri.path, status: response.status)
            return response
        }
    }
}

extension Span {
    /// The request's method and path and the response status, when the span records.
    func recordHTTP(method: HTTPRequest.Method, path: String, status: HTTPResponse.Status) {
        recordHTTP(method: method.rawValue, path: path, status: status.code)
    }

    func recordHTTP(method: String, path: String, status: Int) {
        guard isRecording else { return }
        attributes["http.request.method"] = method
        attributes["url.path"] = path
        attributes["http.response.status_code"] = status
    }
}

struct HTTPFieldsExtractor: Extractor {
    func extract(key: String, from fields: HTTPFields) -> String? {
        HTTPField.Name(key).flatMap { fields[$0] }
    }
}

/// Which of the gateway's limiters decided (the label of `troupe_rate_limit_decisions_total`; never the key).
enum LimiterRole: String, CaseIterable {
    case global, user
    case loginUser = "login_user"
    case loginAddress = "login_address"

    /// Allowed and rejected counters of each role, made once.
    static let counters: [LimiterRole: (allowed: Counter, rejected: Counter)] = Dictionary(uniqueKeysWithValues: allCases.map { role in
        func counter(_ decision: String) -> Counter {
            Counter(label: MetricFamilies.rateLimitDecisions.name, dimensions: [("limiter", role.rawValue), ("decision", decision)])
        }
        return (role, (counter("allowed"), counter("rejected")))
    })
}

func admit(_ limiter: any RateLimiter, key: String, as role: LimiterRole) async throws {
    let decision = try await limiter.acquire(key)
    if let counters = LimiterRole.counters[role] { (decision.allowed ? counters.allowed : counters.rejected).increment() }
    guard decision.allowed else {
        let seconds = max(1, Int((Double(decision.retryAfter.components.seconds) + Double(decision.retryAfter.components.attoseconds) / 1e18).rounded(.up)))
        throw GatewayError(.tooManyRequests, "rate limit exceeded", detail: "retry after \(seconds) s", headers: [.retryAfter: String(seconds)])
    }
}

/// Verifies bearer tokens with the configured key's algorithm. Verification does not go through
/// `JWTKeyCollection` (an actor): with it every request of the gateway queued on one serial executor
/// (35 ms p50 in `troupe bench e2e` at 64 connections).
struct TokenVerifier: Sendable {
    struct Rejected: Error, CustomStringConvertible {
        var description: String
    }

    let algorithm: any JWTAlgorithm
    let parser = DefaultJWTParser()

    func verify(_ token: String) async throws -> GatewayClaims {
        let bytes = Array(token.utf8)
        let (header, claims, signature) = try parser.parse(bytes, as: GatewayClaims.self)
        // Only the configured algorithm: "none" and algorithm confusion are refused here.
        guard header.alg == algorithm.name else {
            throw Rejected(description: "algorithm \(header.alg ?? "(none)") is not accepted (expected \(algorithm.name))")
        }
        let parts = try parser.getTokenParts(bytes)
        var signingInput = [UInt8]()
        signingInput.reserveCapacity(parts.header.count + 1 + parts.payload.count)
        signingInput += parts.header
        signingInput.append(UInt8(ascii: "."))
        signingInput += parts.payload
        guard try algorithm.verify(signature, signs: signingInput) else { throw Rejected(description: "signature verification failed") }
        try await claims.verify(using: algorithm)
        return claims
    }
}

/// Authentication, the per-user rate limit and `Idempotency-Key` replay, for protected routes.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let gateway: Gateway

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        let (user, session) = try await gateway.authenticate(request)
        var context = context
        context.user = user
        context.sessionID = session
        if let limiter = gateway.services.userLimiter { try await admit(limiter, key: "user:\(user)", as: .user) }
        let unsafe = request.method == .post || request.method == .put || request.method == .patch || request.method == .delete
        guard unsafe, let key = request.headers[HTTPField.Name("Idempotency-Key")!], !key.isEmpty else {
            return try await next(request, context)
        }
        guard key.utf8.count <= Gateway.maxIdempotencyKeyBytes else {
            throw GatewayError(.badRequest, "Idempotency-Key too long", detail: "at most \(Gateway.maxIdempotencyKeyBytes) bytes")
        }
        context.idempotencyKey = key
        return try await next(request, context)
    }
}

/// `Idempotency-Key` replay (``IdempotencyHandling/replay``): the first request with a key runs, later
/// ones get its response; the key reused for another request (method, path or body) is a 422.
struct IdempotentReplay: Sendable {
    let gateway: Gateway

    func run(_ request: Request, _ context: GatewayContext,
             _ next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        guard let key = context.idempotencyKey, let user = context.user else { return try await next(request, context) }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: gateway.configuration.maxBodyBytes)
        } catch {
            throw Gateway.bodyTooLarge(gateway.configuration.maxBodyBytes)
        }
        let fingerprint = Self.fingerprint(request, body: body)
        let store = gateway.services.idempotency
        let storeKey = "\(user):\(request.method.rawValue):\(request.uri.path):\(key)"
        switch try await store.claim(storeKey, fingerprint: fingerprint, ttl: gateway.configuration.idempotencyClaimTTL) {
        case .mismatch:
            throw GatewayError(.unprocessableContent, "Idempotency-Key reused",
                               detail: "this key was used for a different request; use a new key for a new request")
        case .inProgress:
            throw GatewayError(.conflict, "request in progress", detail: "a request with this Idempotency-Key is being processed",
                               headers: [.retryAfter: "1"])
        case .completed(let stored):
            var response = try StoredResponse.decode(stored)
            response.headers[HTTPField.Name("Idempotent-Replayed")!] = "true"
            return response
        case .claimed:
            do {
                let response = try await next(request, context)
                let (stored, replay) = try await StoredResponse.capture(response, limit: gateway.configuration.maxBodyBytes * 4)
                if response.status.code < 500 {
                    try await store.complete(storeKey, result: stored, fingerprint: fingerprint, ttl: gateway.configuration.idempotencyTTL)
                } else {
                    try await store.release(storeKey, fingerprint: fingerprint)
                }
                return replay
            } catch {
                try? await store.release(storeKey, fingerprint: fingerprint)
                throw error
            }
        }
    }

    /// SHA-256 of the method, the path and the body: what makes two requests "the same request".
    static func fingerprint(_ request: Request, body: ByteBuffer) -> [UInt8] {
        var hash = SHA256()
        hash.update(data: Array("\(request.method.rawValue) \(request.uri.path)\n".utf8))
        hash.update(data: Array(body.readableBytesView))
        return Array(hash.finalize())
    }
}

/// A response kept for idempotent replay: status, content type and body.
enum StoredResponse {
    struct Stored: Codable {
        var status: Int
        var contentType: String?
        var body: [UInt8]
    }

    static func capture(_ response: Response, limit: Int) async throws -> ([UInt8], Response) {
        let collected = Locked(ByteBuffer())
        var response = response
        try await response.body.write(CollectingWriter(collected: collected))
        let body = collected.withLock { $0 }
        let stored = Stored(status: response.status.code, contentType: response.headers[.contentType], body: Array(body.readableBytesView))
        let encoded = try JSONEncoder().encode(stored)
        response.body = .init(byteBuffer: body)
        return ([UInt8](encoded), response)
    }

    static func decode(_ bytes: [UInt8]) throws -> Response {
        let stored = try JSONDecoder().decode(Stored.self, from: Data(bytes))
        // The bytes come from Redis: a status the HTTP types would trap on is a corrupt entry, not a crash.
        guard (100...599).contains(stored.status) else {
            throw GatewayError(.internalServerError, "a stored response is corrupt", detail: "status \(stored.status) is not an HTTP status")
        }
        var headers = HTTPFields()
        if let contentType = stored.contentType { headers[.contentType] = contentType }
        return Response(status: HTTPResponse.Status(code: stored.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: stored.body)))
    }
}

/// Collects a response body into a buffer.
struct CollectingWriter: ResponseBodyWriter {
    let collected: Locked<ByteBuffer>

    mutating func write(_ buffer: ByteBuffer) async throws {
        var copy = buffer
        _ = collected.withLock { $0.writeBuffer(&copy) }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

/// The settings of a running gateway that an operator may change without a restart (live configuration).
public final class GatewayLiveSettings: Sendable {
    private let inFlightBound: Atomic<Int>
    private let disabled = Mutex<Set<String>>([])

    init(maxInFlight: Int) {
        inFlightBound = Atomic(maxInFlight)
    }

    /// Requests in progress beyond this are shed with 503 (``GatewayConfiguration/maxInFlight`` until changed).
    public var maxInFlight: Int { inFlightBound.load(ordering: .relaxed) }

    /// - Throws: ``GatewayError`` for a bound below 1 (nothing changes then).
    public func setMaxInFlight(_ bound: Int) throws(GatewayError) {
        guard bound >= 1 else { throw GatewayError.configuration("maxInFlight must be at least 1 (it is \(bound))") }
        inFlightBound.store(bound, ordering: .relaxed)
    }

    /// Whether routes of `feature` answer (features are on unless switched off).
    public func isEnabled(_ feature: String) -> Bool { !disabled.withLock { $0.contains(feature) } }

    /// Switches `feature`'s routes on or off (off: they answer 503).
    public func setFeature(_ feature: String, enabled: Bool) {
        disabled.withLock { disabled in
            if enabled { disabled.remove(feature) } else { disabled.insert(feature) }
        }
    }
}
