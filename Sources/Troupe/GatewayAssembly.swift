public import Logging
public import NIOCore
public import ServiceLifecycle
public import TroupeCache
import TroupeCore
import TroupeDiscovery
public import TroupeEtcd
public import TroupeGateway
public import TroupeRedis

/// The gateway a configuration file's `gateway` section describes — every key of it — for any service on
/// Troupe: ``TroupeService`` builds its gateway from one, and so does the shop's gateway process.
///
/// From the section: the signing key, issuer and audience; the in-flight bound, the byte-level proxy and
/// public metrics; the idle and request-read timeouts; the per-user, global and login rate limits (shared
/// through Redis when the process has a client, per process otherwise; the live configuration may change the
/// rates); the upstream HTTP services (a fixed list, or instances from the service registry in etcd); HTTPS;
/// the admin listener.
public struct GatewayAssembly: Sendable {
    /// The section it was built from.
    public let section: NodeConfiguration.Gateway
    /// The gateway's settings, validated.
    public let configuration: GatewayConfiguration
    /// Requests per user (`userRequestsPerSecond`; none when unset, until the live configuration sets one).
    public let userLimiter: AdjustableRateLimiter
    /// Requests in all (`globalRequestsPerSecond`).
    public let globalLimiter: AdjustableRateLimiter
    /// Login attempts per user name (`loginAttemptsPerMinute`, or the gateway's default).
    public let loginLimiter: any RateLimiter
    /// Login attempts per client address (`loginAttemptsPerAddressPerMinute`, or the gateway's default).
    public let loginAddressLimiter: any RateLimiter
    /// The upstream routes and their instance pools (`upstreams`).
    public let upstreams: [(UpstreamRoute, UpstreamPool)]
    /// What the assembly needs run beside the gateway: the registry watcher of discovered upstreams.
    public let services: [any Service]
    private let limiter: @Sendable (Int) throws -> any RateLimiter
    private let logger: Logger

    /// Reads `section`.
    /// - Parameters:
    ///   - section: the configuration file's `gateway` section.
    ///   - issuer: the token issuer when the section names none.
    ///   - audience: the token audience when the section names none (the cluster's name).
    ///   - keyPrefix: the prefix of the limiters' Redis keys (`"<cluster>:"`).
    ///   - redis: the process's Redis client: limits are shared by every gateway through it; nil keeps them per process.
    ///   - etcd: the process's etcd client: upstreams without a fixed list are found in its service registry.
    ///   - environment: where `jwtSecretEnv` is read.
    ///   - logger: where the limiters, the registry watcher and the listeners log.
    /// - Throws: `ConfigurationError` naming the key to fix.
    public init(section: NodeConfiguration.Gateway, issuer: String, audience: String, keyPrefix: String,
                redis: RedisClient?, etcd: EtcdClient?, environment: [String: String], logger: Logger) throws {
        self.section = section
        self.logger = logger
        guard (0...65535).contains(section.port) else { throw ConfigurationError("gateway.port must be 0…65535 (it is \(section.port); 0 picks a free one)") }
        var configuration = GatewayConfiguration(signing: .hs256(secret: try section.secretBytes(environment: environment)),
                                                 issuer: section.issuer ?? issuer, audience: section.audience ?? audience)
        if let inFlight = section.maxInFlight { configuration.maxInFlight = inFlight }
        if let byteLevel = section.byteLevelProxy { configuration.byteLevelProxy = byteLevel }
        configuration.publicMetrics = section.publicMetrics == true
        func seconds(_ value: Double, _ key: String) throws -> Duration {
            guard value.isFinite, value > 0, value <= 86_400 else {
                throw ConfigurationError("gateway.\(key) must be more than 0 and at most 86400 seconds (it is \(value))")
            }
            return .milliseconds(Int64(value * 1000))
        }
        if let value = section.idleTimeoutSeconds { configuration.idleTimeout = try seconds(value, "idleTimeoutSeconds") }
        if let value = section.requestReadTimeoutSeconds { configuration.requestReadTimeout = try seconds(value, "requestReadTimeoutSeconds") }
        do {
            try configuration.validate()
        } catch {
            throw ConfigurationError("gateway: \(error)")
        }
        self.configuration = configuration

        @Sendable func limiter(_ limit: RateLimit) throws -> any RateLimiter {
            if let redis { return try RedisRateLimiter(redis: redis, limit: limit, prefix: keyPrefix + "limit:", logger: logger) }
            return try LocalRateLimiter(limit)
        }
        @Sendable func perSecond(_ rate: Int) -> RateLimit { .tokenBucket(ratePerSecond: Double(rate), burst: rate) }
        func perMinute(_ count: Int) -> RateLimit { .slidingWindow(limit: count, window: .seconds(60)) }
        do {
            userLimiter = AdjustableRateLimiter(try section.userRequestsPerSecond.map { try limiter(perSecond($0)) })
            globalLimiter = AdjustableRateLimiter(try section.globalRequestsPerSecond.map { try limiter(perSecond($0)) })
            loginLimiter = try limiter(section.loginAttemptsPerMinute.map(perMinute) ?? GatewayServices.defaultLoginLimit)
            loginAddressLimiter = try limiter(section.loginAttemptsPerAddressPerMinute.map(perMinute) ?? GatewayServices.defaultLoginAddressLimit)
        } catch {
            throw ConfigurationError("gateway rate limits: \(error)")
        }
        self.limiter = { rate in try limiter(perSecond(rate)) }

        // Upstream HTTP services: instances from the registry (watched) or a fixed list.
        var services: [any Service] = []
        var upstreams: [(UpstreamRoute, UpstreamPool)] = []
        let discovered = try (section.upstreams ?? []).filter { try $0.fixedInstances().isEmpty }.map(\.service)
        var discovery: ServiceDiscovery?
        if !discovered.isEmpty {
            guard let etcd else {
                throw ConfigurationError("gateway.upstreams \(discovered.joined(separator: ", ")) list no instances: add an etcd section (the service registry) or list them")
            }
            let watcher = ServiceDiscovery(registry: EtcdServiceRegistry(etcd: etcd, logger: logger), services: discovered)
            services.append(watcher)
            discovery = watcher
        }
        for upstream in section.upstreams ?? [] {
            let fixed = try upstream.fixedInstances().map { UpstreamInstance(id: "\($0.host):\($0.port)", host: $0.host, port: $0.port) }
            let route = UpstreamRoute(prefix: upstream.prefix, service: upstream.service, requiresAuth: upstream.requiresAuth ?? true,
                                      timeout: .milliseconds(upstream.timeoutMs ?? 10_000))
            let watcher = discovery
            let name = upstream.service
            upstreams.append((route, UpstreamPool(service: upstream.service) {
                guard fixed.isEmpty, let watcher else { return fixed }
                return watcher.instances(of: name).map { UpstreamInstance(id: $0.id, host: $0.host, port: $0.port) }
            }))
        }
        self.upstreams = upstreams
        self.services = services
    }

    /// The live settings of `gateway` (`gateway/maxInFlight`, `gateway/userRequestsPerSecond`,
    /// `gateway/globalRequestsPerSecond`): add them to the node's ``LiveConfiguration``.
    public func liveSettings(for gateway: Gateway) -> [LiveSetting] {
        LiveSetting.gateway(gateway, user: userLimiter, global: globalLimiter, limiter: limiter)
    }

    /// The listeners of `gateway`: HTTP — or HTTPS with `https`, its certificate reloader running beside it —
    /// on the section's host and port, and the admin listener (`admin`) serving `adminRoutes`.
    /// - Parameters:
    ///   - gateway: the gateway to serve.
    ///   - adminRoutes: routes of the admin listener beside its own (`/health`, `/ready`, `/metrics`).
    ///   - onServerRunning: called with the main listener's channel once it is bound.
    /// - Throws: `TLSError` naming the certificate or key file to fix.
    public func listeners(_ gateway: Gateway, adminRoutes: [GatewayRoute] = [],
                          onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> [any Service] {
        let https = try section.https.map { try Gateway.httpsContext($0, logger: logger) }
        var services: [any Service] = [gateway.application(host: section.host ?? "127.0.0.1", port: section.port, tls: https,
                                                           logger: logger, onServerRunning: onServerRunning)]
        if let https { services.append(https) }
        if let admin = section.admin {
            services.append(gateway.adminApplication(host: admin.host ?? "127.0.0.1", port: admin.port, routes: adminRoutes, logger: logger))
        }
        return services
    }
}
