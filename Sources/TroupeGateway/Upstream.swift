import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import NIOCore
import NIOHTTP1
import Synchronization
import Instrumentation
import ServiceContextModule
import TroupeCore

/// One instance of an upstream HTTP service (from the ServiceRegistry, say).
public struct UpstreamInstance: Sendable, Hashable {
    /// The instance's id (unique within its service).
    public var id: String
    /// Its host.
    public var host: String
    /// Its port.
    public var port: Int

    /// An instance `id` at `host:port`.
    public init(id: String, host: String, port: Int) {
        self.id = id
        self.host = host
        self.port = port
    }
}

/// Requests under `prefix` go to `service`.
public struct UpstreamRoute: Sendable {
    /// The path prefix proxied (`/catalog`).
    public var prefix: String
    /// The service whose instances answer it.
    public var service: String
    /// Whether a valid token is needed (401 without).
    public var requiresAuth: Bool
    /// Remove the prefix before forwarding.
    public var stripPrefix: Bool
    /// The deadline of one proxied attempt (past it: another instance for an idempotent request, else a 502).
    public var timeout: Duration

    /// Proxies `prefix` to `service`; see each property.
    public init(prefix: String, service: String, requiresAuth: Bool = true, stripPrefix: Bool = true, timeout: Duration = .seconds(10)) {
        self.prefix = prefix
        self.service = service
        self.requiresAuth = requiresAuth
        self.stripPrefix = stripPrefix
        self.timeout = timeout
    }
}

/// Client-side adaptive throttling (the Google SRE formula go-zero uses): over a sliding window, reject
/// locally with probability max(0, (requests − protection − k·accepts) / (requests + 1)), so a failing upstream gets
/// less traffic as it fails more, and recovers as soon as it answers again.
public final class AdaptiveBreaker: Sendable {
    /// go-zero's `k` (1.5): the higher, the more failures before shedding.
    public let k: Double
    /// Requests that are never shed however many fail (go-zero's "protection"): a handful of early
    /// failures must not open the breaker.
    public let protection: Double
    /// The sliding window requests and accepts are counted over.
    public let window: Duration
    private let buckets: Guarded<[(start: ContinuousClock.Instant, requests: Int, accepts: Int)]>

    /// A breaker with go-zero's defaults.
    public init(k: Double = 1.5, protection: Double = 5, window: Duration = .seconds(10)) {
        self.k = k
        self.protection = protection
        self.window = window
        self.buckets = Guarded([])
    }

    private func totals(now: ContinuousClock.Instant) -> (Int, Int) {
        buckets.withLock { buckets in
            buckets.removeAll { now - $0.start > window }
            return buckets.reduce((0, 0)) { ($0.0 + $1.requests, $0.1 + $1.accepts) }
        }
    }

    /// Whether to try the upstream now. A local rejection counts as a request that was not accepted.
    public func allow() -> Bool {
        let (requests, accepts) = totals(now: .now)
        let p = max(0, (Double(requests) - protection - k * Double(accepts)) / Double(requests + 1))
        // No draw while nothing is shed (the system generator costs a system call per draw).
        let allowed = p <= 0 || Double.random(in: 0..<1) >= p
        if !allowed { record(success: false) }
        return allowed
    }

    /// Records the outcome of a request that was tried.
    public func record(success: Bool) {
        let now = ContinuousClock.now
        buckets.withLock { buckets in
            if let last = buckets.indices.last, now - buckets[last].start < window / 10 {
                buckets[last].requests += 1
                if success { buckets[last].accepts += 1 }
            } else {
                buckets.append((now, 1, success ? 1 : 0))
            }
        }
    }
}

/// Runs `change` on a value in place (a dictionary entry through one lookup, `dictionary[key, default:]`).
@inline(__always)
private func update<Value, Result>(_ value: inout Value, _ change: (inout Value) -> Result) -> Result {
    change(&value)
}

/// The instances of one service: power-of-two-choices by requests in flight, passive health (an instance
/// failing `ejectAfter` times in a row is left out for `ejectFor`), and the adaptive breaker.
public final class UpstreamPool: Sendable {
    /// The service's name.
    public let service: String
    /// Its breaker.
    public let breaker: AdaptiveBreaker
    let instances: @Sendable () async -> [UpstreamInstance]
    let ejectAfter: Int
    let ejectFor: Duration
    private let health = Guarded<[UpstreamInstance: (inFlight: Int, failures: Int, ejectedUntil: ContinuousClock.Instant?)]>([:])
    /// The instance list of the last lookup, for the gateway's event-loop proxy paths (which cannot await
    /// a lookup): see `recentInstances()`.
    private let snapshot = Guarded<(instances: [UpstreamInstance], at: ContinuousClock.Instant, refreshing: Bool)?>(nil)
    /// The background lookup of `recentInstances()` (one at a time); it belongs to the pool and ends with it.
    private let refreshTask = Guarded<Task<Void, Never>?>(nil)

    deinit { refreshTask.withLock { $0?.cancel() } }

    /// A pool of `service`'s instances as `instances` lists them (called per lookup; the registry's cache).
    public init(service: String, ejectAfter: Int = 3, ejectFor: Duration = .seconds(10), breaker: AdaptiveBreaker = AdaptiveBreaker(),
                instances: @escaping @Sendable () async -> [UpstreamInstance]) {
        self.service = service
        self.ejectAfter = ejectAfter
        self.ejectFor = ejectFor
        self.breaker = breaker
        self.instances = instances
    }

    /// Two random healthy candidates, the less loaded wins; nil when none is healthy.
    func pick(excluding: [UpstreamInstance]) async -> UpstreamInstance? {
        choose(from: await lookUp(), excluding: excluding)
    }

    /// Looks the instances up and keeps the list for the event-loop paths (`recentInstances()`).
    func lookUp() async -> [UpstreamInstance] {
        let all = await instances()
        snapshot.withLock { $0 = (all, .now, false) }
        return all
    }

    /// The same from `loop` (for the event-loop paths when `recentInstances()` has none).
    func lookUp(on loop: any EventLoop) -> EventLoopFuture<[UpstreamInstance]> {
        loop.makeFutureWithTask { await self.lookUp() }
    }

    /// The last lookup's instance list while it is younger than 10 s, nil otherwise (the caller then takes
    /// the router, whose lookup refreshes it). Once the list is a second old, one lookup at a time is
    /// started in the background and the list serves until it finishes (stale while revalidating).
    func recentInstances() -> [UpstreamInstance]? {
        let now = ContinuousClock.now
        let (list, refresh) = snapshot.withLock { state -> ([UpstreamInstance]?, Bool) in
            guard let current = state, now - current.at < .seconds(10) else { return (nil, false) }
            guard now - current.at >= .seconds(1), !current.refreshing else { return (current.instances, false) }
            state?.refreshing = true
            return (current.instances, true)
        }
        if refresh {
            // Owned by the pool: at most one at a time (`refreshing` above), stored in `refreshTask` and cancelled
            // by the pool's deinit; it holds the pool weakly, so a pool dropped meanwhile is not kept alive by it.
            let task = Task { [weak self] in _ = await self?.lookUp() }
            refreshTask.withLock { $0 = task }
        }
        return list
    }

    /// Power of two choices among `all`, as `pick` does after its lookup: two random healthy instances not
    /// in `excluding`, the one with fewer requests in flight wins. Counts instead of building the healthy
    /// list (this runs for every proxied request).
    func choose(from all: [UpstreamInstance], excluding: [UpstreamInstance], now: ContinuousClock.Instant = .now) -> UpstreamInstance? {
        health.withLock { health -> UpstreamInstance? in
            func healthy(_ instance: UpstreamInstance) -> Bool {
                guard !excluding.contains(instance) else { return false }
                if let until = health[instance]?.ejectedUntil, until > now { return false }
                return true
            }
            /// The `ordinal`-th healthy instance.
            func healthy(at ordinal: Int) -> UpstreamInstance {
                var seen = 0
                for instance in all where healthy(instance) {
                    if seen == ordinal { return instance }
                    seen += 1
                }
                preconditionFailure("fewer healthy instances than counted")
            }
            if all.count == 1 {
                // One instance (the common case): one lookup, one update.
                let only = all[0]
                guard !excluding.contains(only) else { return nil }
                return update(&health[only, default: (0, 0, nil)]) { entry in
                    if let until = entry.ejectedUntil, until > now { return nil }
                    entry.inFlight += 1
                    return only
                }
            }
            let count = all.reduce(0) { $0 + (healthy($1) ? 1 : 0) }
            guard count > 0 else { return nil }
            let chosen: UpstreamInstance
            if count == 1 {
                chosen = healthy(at: 0)
            } else {
                let a = healthy(at: Int.random(in: 0..<count))
                let b = healthy(at: Int.random(in: 0..<count))
                chosen = (health[a]?.inFlight ?? 0) <= (health[b]?.inFlight ?? 0) ? a : b
            }
            health[chosen, default: (0, 0, nil)].inFlight += 1
            return chosen
        }
    }

    func finished(_ instance: UpstreamInstance, success: Bool) {
        breaker.record(success: success)
        let ejectAfter = self.ejectAfter, ejectFor = self.ejectFor
        health.withLock { health in
            update(&health[instance, default: (0, 0, nil)]) { entry in
                entry.inFlight = max(0, entry.inFlight - 1)
                if success {
                    entry.failures = 0
                    entry.ejectedUntil = nil
                } else {
                    entry.failures += 1
                    if entry.failures >= ejectAfter { entry.ejectedUntil = .now + ejectFor }
                }
            }
        }
    }

    /// Instances currently left out by passive health checks.
    public var ejected: [UpstreamInstance] {
        let now = ContinuousClock.now
        return health.withLock { $0.filter { ($0.value.ejectedUntil ?? now) > now }.map(\.key) }
    }
}

struct HTTPHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into headers: inout HTTPHeaders) {
        headers.replaceOrAdd(name: key, value: value)
    }
}

/// One request proxied on an event loop, as `UpstreamProxy.attempt` drives it: one object per request holds
/// its state, so the tries capture it alone.
protocol UpstreamCall: AnyObject {
    associatedtype Reply
    /// Sends the request to `instance`; `done` runs on the loop with the reply or the transport error.
    func send(to instance: UpstreamInstance, _ done: @escaping (Result<Reply, any Error>) -> Void)
    func status(of reply: Reply) -> Int
    /// The reply to return, or the error to answer with.
    func finish(_ result: Result<Reply, GatewayError>)
}

/// Forwards a request to an upstream: hop-by-hop headers dropped, idempotent methods retried on another
/// instance after a transport error or a 502/503/504, others never retried.
final class UpstreamProxy: Sendable {
    let route: UpstreamRoute
    let pool: UpstreamPool
    let maxBody: Int
    let client: UpstreamHTTPClient

    /// The route template its requests are reported under (as the router names the same route).
    let template: String

    init(route: UpstreamRoute, pool: UpstreamPool, maxBody: Int, client: UpstreamHTTPClient) {
        self.template = route.prefix + "/**"
        self.route = route
        self.pool = pool
        self.maxBody = maxBody
        self.client = client
    }

    static let hopByHop: [String] = ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                                      "transfer-encoding", "upgrade", "host", "content-length"]

    /// Whether `name` (any case) is hop-by-hop or set by the proxy itself; compares without allocating.
    static func isHopByHop(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { isHopByHop(UnsafeRawBufferPointer($0), 0..<$0.count) }
    }

    static let hopByHopBytes: [[UInt8]] = hopByHop.map { Array($0.utf8) }

    /// The same for a field name given as a range of `bytes` (the byte-level path). Fields in the gateway's
    /// own namespace (`X-Troupe-*`, e.g. `X-Troupe-User`, the authenticated user) are dropped too, in both
    /// directions: only the gateway sets them, from a verified token, so a client cannot claim an identity to
    /// an upstream service.
    static func isHopByHop(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        if name.count >= ownedPrefix.count, HTTP1Scanner.equalsIgnoringCase(bytes, name.lowerBound..<(name.lowerBound + ownedPrefix.count), ownedPrefix) {
            return true
        }
        return hopByHopBytes.contains { HTTP1Scanner.equalsIgnoringCase(bytes, name, $0) }
    }

    /// The prefix of the header names the gateway owns.
    static let ownedPrefix: [UInt8] = Array("x-troupe-".utf8)

    /// The request for `instance`: the caller's headers without hop-by-hop ones, Host, Content-Length, the
    /// authenticated user and the trace context.
    static func upstreamHead(method: HTTPRequest.Method, uri: String, fields: HTTPFields, instance: UpstreamInstance, bodyBytes: Int,
                             user: String?, trace: ServiceContext?) -> HTTPRequestHead {
        upstreamHead(method: HTTPMethod(rawValue: method.rawValue), uri: uri, headers: fields.lazy.map { ($0.name.rawName, $0.value) },
                     count: fields.count, instance: instance, bodyBytes: bodyBytes, user: user, trace: trace)
    }

    /// The same request from NIO's parsed head (the pipeline path), without an authenticated user.
    static func upstreamHead(method: HTTPMethod, uri: String, headers: HTTPHeaders, instance: UpstreamInstance, bodyBytes: Int,
                             trace: ServiceContext?) -> HTTPRequestHead {
        upstreamHead(method: method, uri: uri, headers: headers, count: headers.count, instance: instance, bodyBytes: bodyBytes, user: nil, trace: trace)
    }

    private static func upstreamHead(method: HTTPMethod, uri: String, headers source: some Sequence<(name: String, value: String)>, count: Int,
                                     instance: UpstreamInstance, bodyBytes: Int, user: String?, trace: ServiceContext?) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.reserveCapacity(count + 3)
        for (name, value) in source where !isHopByHop(name) {
            headers.add(name: name, value: value)
        }
        headers.add(name: "Host", value: "\(instance.host):\(instance.port)")
        headers.add(name: "Content-Length", value: String(bodyBytes))
        if let user { headers.replaceOrAdd(name: "X-Troupe-User", value: user) }
        if let trace {
            InstrumentationSystem.instrument.inject(trace, into: &headers, using: HTTPHeadersInjector())
        }
        return HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)
    }

    /// The upstream's response headers without hop-by-hop ones.
    static func responseFields(_ head: HTTPResponseHead) -> HTTPFields {
        var fields = HTTPFields()
        for (name, value) in head.headers where !isHopByHop(name) {
            if let field = HTTPField.Name(name) { fields.append(HTTPField(name: field, value: value)) }
        }
        return fields
    }

    /// The same, kept as NIO headers (the pipeline path).
    static func responseHeaders(_ head: HTTPResponseHead) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.reserveCapacity(head.headers.count + 1)
        for (name, value) in head.headers where !isHopByHop(name) {
            headers.add(name: name, value: value)
        }
        return headers
    }

    static func idempotent(_ method: HTTPRequest.Method) -> Bool {
        method == .get || method == .head || method == .put || method == .delete || method == .options
    }

    static func idempotent(_ method: HTTPMethod) -> Bool {
        method == .GET || method == .HEAD || method == .PUT || method == .DELETE || method == .OPTIONS
    }

    /// Whether a request for `target` (path and query) is under this route's prefix: the prefix followed by `/`.
    func matches(_ target: String) -> Bool {
        target.hasPrefix(route.prefix) && target.utf8.dropFirst(route.prefix.utf8.count).first == UInt8(ascii: "/")
    }

    /// The path forwarded for `path` (prefix stripped when the route says so).
    func upstreamPath(_ path: String) -> String {
        var path = path
        if route.stripPrefix, path.hasPrefix(route.prefix) { path = String(path.dropFirst(route.prefix.count)) }
        if !path.hasPrefix("/") { path = "/" + path }
        return path
    }

    /// One try of a request proxied on an event loop, and the next ones: the breaker is asked, an instance
    /// not tried yet is chosen (power of two choices), the call sends to it (calling back on the loop with the
    /// reply or the transport error), passive health learns the outcome, and an idempotent request is tried
    /// again on another instance after a transport error or a 502/503/504 (at most 3 tries; others once).
    /// The call finishes with the reply to return, or the error to answer with.
    func attempt<Call: UpstreamCall>(_ call: Call, number: Int = 0, idempotent: Bool, instances: [UpstreamInstance],
                                     tried: [UpstreamInstance] = [], lastError: GatewayError? = nil) {
        let service = route.service
        guard number < (idempotent ? 3 : 1) else {
            call.finish(.failure(lastError ?? GatewayError(.serviceUnavailable, "no instance of \(service) is available")))
            return
        }
        guard pool.breaker.allow() else {
            Counter(label: MetricFamilies.gatewayBreakerRejections.name, dimensions: [("service", service)]).increment()
            call.finish(.failure(GatewayError(.serviceUnavailable, "upstream \(service) is failing", detail: "circuit breaker open", headers: [.retryAfter: "1"])))
            return
        }
        guard let instance = pool.choose(from: instances, excluding: tried) else {
            call.finish(.failure(lastError ?? GatewayError(.serviceUnavailable, "no instance of \(service) is available")))
            return
        }
        call.send(to: instance) { [self] result in
            // The list of tried instances is only built for another try.
            func retry(_ error: GatewayError) {
                attempt(call, number: number + 1, idempotent: idempotent, instances: instances, tried: tried + [instance], lastError: error)
            }
            switch result {
            case .success(let reply):
                let code = call.status(of: reply)
                pool.finished(instance, success: code < 500)
                if code == 502 || code == 503 || code == 504, idempotent, number < 2 {
                    retry(GatewayError(.badGateway, "upstream \(service) answered \(code)"))
                    return
                }
                call.finish(.success(reply))
            case .failure(let error):
                pool.finished(instance, success: false)
                let failure = GatewayError(.badGateway, "upstream \(service) did not answer", detail: "\(error)")
                if idempotent {
                    retry(failure)
                } else {
                    call.finish(.failure(failure))
                }
            }
        }
    }

    func forward(_ request: Request, context: GatewayContext) async throws -> Response {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxBody)
        } catch {
            throw Gateway.bodyTooLarge(maxBody)
        }
        let idempotent = Self.idempotent(request.method)
        let path = upstreamPath(request.uri.path)
        let query = request.uri.query.map { "?\($0)" } ?? ""
        var tried: [UpstreamInstance] = []
        var lastError = GatewayError(.serviceUnavailable, "no instance of \(route.service) is available")
        for attempt in 0..<(idempotent ? 3 : 1) {
            guard pool.breaker.allow() else {
                Counter(label: MetricFamilies.gatewayBreakerRejections.name, dimensions: [("service", route.service)]).increment()
                throw GatewayError(.serviceUnavailable, "upstream \(route.service) is failing", detail: "circuit breaker open", headers: [.retryAfter: "1"])
            }
            guard let instance = await pool.pick(excluding: tried) else { break }
            tried.append(instance)
            let head = Self.upstreamHead(method: request.method, uri: path + query, fields: request.headers, instance: instance,
                                         bodyBytes: body.readableBytes, user: context.user, trace: ServiceContext.current)
            do {
                let reply = try await client.execute(.init(host: instance.host, port: instance.port), head: head,
                                                     body: body.readableBytes > 0 ? body : nil, timeout: route.timeout)
                let status = Int(reply.head.status.code)
                let failed = status == 502 || status == 503 || status == 504
                pool.finished(instance, success: status < 500)
                if failed, idempotent, attempt < 2 {
                    lastError = GatewayError(.badGateway, "upstream \(route.service) answered \(status)")
                    continue
                }
                return Response(status: HTTPResponse.Status(code: status), headers: Self.responseFields(reply.head), body: .init(byteBuffer: reply.body))
            } catch {
                pool.finished(instance, success: false)
                lastError = GatewayError(.badGateway, "upstream \(route.service) did not answer", detail: "\(error)")
                if !idempotent { break }
            }
        }
        throw lastError
    }
}
