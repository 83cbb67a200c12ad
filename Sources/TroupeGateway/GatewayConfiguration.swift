public import Foundation
public import JWTKit
public import TroupeCache

/// How the gateway authenticates, limits and protects. Invalid values fail at start-up (``validate()``).
public struct GatewayConfiguration: Sendable {
    /// How the gateway signs its tokens.
    public enum Signing: Sendable {
        /// HS256 with a shared secret of at least 32 bytes.
        case hs256(secret: [UInt8])
        /// ES256 with a P-256 private key in PEM.
        case es256(privateKeyPEM: String)
    }

    /// How tokens are signed and verified.
    public var signing: Signing
    /// The `iss` claim of the tokens it issues and accepts.
    public var issuer: String
    /// The `aud` claim of the tokens it issues and accepts.
    public var audience: String
    /// How long a token is valid (1 h).
    public var tokenTTL: Duration = .seconds(3600)
    /// How long a session lives without a request (30 min; each request extends it).
    public var sessionTTL: Duration = .seconds(1800)
    /// While the session store is unreachable, a session this gateway read or wrote within this long is
    /// still accepted (see `SessionStore`); zero turns it off.
    public var sessionStaleIfError: Duration = .seconds(60)
    /// Largest request body accepted (413 beyond).
    public var maxBodyBytes = 1 << 20
    /// Largest total size of request header fields (431 beyond).
    public var maxHeaderBytes = 16 * 1024
    /// Requests in progress beyond this are shed with 503.
    public var maxInFlight = 1024
    /// How long a completed idempotent response is replayed, and how long a claim blocks duplicates.
    public var idempotencyTTL: Duration = .seconds(24 * 3600)
    /// How long an idempotency claim blocks duplicates while its request runs (it expires if the gateway dies).
    public var idempotencyClaimTTL: Duration = .seconds(30)
    /// A request to a ``IdempotencyHandling/byEffect`` route that carries an `Idempotency-Key` and fails
    /// with a retryable error (a member left with the call in flight, a call timed out while the cluster
    /// changed, a server restarting) is run again here — at most `byEffectRetries` more times, started
    /// within `byEffectRetryBudget` of the request — instead of answering 503 and making the client wait
    /// its `Retry-After`. Running it again reaches the same effect. Zero retries turn it off.
    public var byEffectRetries = 2
    /// How long after a request's start a ``IdempotencyHandling/byEffect`` retry may still start (8 s).
    public var byEffectRetryBudget: Duration = .seconds(8)
    /// Proxy public upstream routes' common requests from bytes to bytes (`RawProxyHandler`, our own
    /// HTTP/1.1 head scanner) before NIO's HTTP/1 codec. Off: every request goes through the codec
    /// (slower; a switch for ruling this path out).
    public var byteLevelProxy = true
    /// A client connection with no request in progress is closed after this long (nginx's
    /// `keepalive_timeout`). It also bounds a request head that never completes on the codec path.
    public var idleTimeout: Duration = .seconds(75)
    /// A request that has begun to arrive must arrive whole within this long — from its first byte on the
    /// byte-level path, from its complete head on the codec path — or it is answered 408 and the connection
    /// closed (nginx's `client_header_timeout` / `client_body_timeout`). A slow or stalled client cannot
    /// hold a connection open.
    public var requestReadTimeout: Duration = .seconds(60)
    /// Serve `/metrics` on the public listener too. Default false: metrics show node addresses and actor
    /// types, so they belong on the admin listener (``Gateway/adminRouter(routes:)``) on a private address.
    public var publicMetrics = false

    /// Settings with the given signing, issuer and audience; every other setting at its default.
    public init(signing: Signing, issuer: String, audience: String) {
        self.signing = signing
        self.issuer = issuer
        self.audience = audience
    }

    /// Checks every setting.
    /// - Throws: ``GatewayError`` naming the first setting that cannot work (a short HS256 secret, a bad PEM key,
    /// a non-positive limit or timeout).
    public func validate() throws(GatewayError) {
        switch signing {
        case .hs256(let secret):
            guard secret.count >= 32 else { throw GatewayError.configuration("the HS256 secret must be at least 32 bytes (it has \(secret.count))") }
        case .es256(let pem):
            guard pem.contains("PRIVATE KEY") else { throw GatewayError.configuration("es256 needs a PEM private key") }
        }
        guard !issuer.isEmpty, !audience.isEmpty else { throw GatewayError.configuration("issuer and audience must not be empty") }
        guard maxBodyBytes > 0, maxHeaderBytes > 0, maxInFlight > 0 else {
            throw GatewayError.configuration("maxBodyBytes, maxHeaderBytes and maxInFlight must be positive")
        }
        guard tokenTTL > .zero, sessionTTL > .zero else { throw GatewayError.configuration("tokenTTL and sessionTTL must be positive") }
        guard (0...10).contains(byEffectRetries), byEffectRetryBudget >= .zero, byEffectRetryBudget <= .seconds(60) else {
            throw GatewayError.configuration("byEffectRetries must be 0…10 and byEffectRetryBudget 0…60 s")
        }
        guard sessionStaleIfError >= .zero, sessionStaleIfError <= sessionTTL else {
            throw GatewayError.configuration("sessionStaleIfError must be between 0 and sessionTTL (\(sessionTTL))")
        }
        guard idleTimeout > .zero, requestReadTimeout > .zero, idleTimeout <= .seconds(86_400), requestReadTimeout <= .seconds(86_400) else {
            throw GatewayError.configuration("idleTimeout and requestReadTimeout must be more than 0 and at most 24 h")
        }
    }

    /// The key collection for signing and verifying tokens.
    func keys() async throws -> JWTKeyCollection {
        let keys = JWTKeyCollection()
        switch signing {
        case .hs256(let secret):
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        case .es256(let pem):
            await keys.add(ecdsa: try ES256PrivateKey(pem: pem))
        }
        return keys
    }
}

/// The claims of a gateway token: the user, the server-side session it belongs to, and the usual checks.
public struct GatewayClaims: JWTPayload, Equatable {
    /// The user id.
    public var sub: SubjectClaim
    /// The server-side session the token belongs to (revoking it revokes the token).
    public var sid: String
    /// The issuer.
    public var iss: IssuerClaim
    /// The audience.
    public var aud: AudienceClaim
    /// When the token expires.
    public var exp: ExpirationClaim
    /// When the token was issued.
    public var iat: IssuedAtClaim
    /// Honoured when present (this gateway does not set it).
    public var nbf: NotBeforeClaim?

    /// Claims for `sub` in session `sid`.
    public init(sub: SubjectClaim, sid: String, iss: IssuerClaim, aud: AudienceClaim, exp: ExpirationClaim, iat: IssuedAtClaim, nbf: NotBeforeClaim? = nil) {
        self.sub = sub
        self.sid = sid
        self.iss = iss
        self.aud = aud
        self.exp = exp
        self.iat = iat
        self.nbf = nbf
    }

    /// Checks expiry (and `nbf` when present); the issuer and audience are checked by the gateway.
    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try nbf?.verifyNotBefore()
    }
}

/// What the services behind the gateway provide.
public struct GatewayServices: Sendable {
    /// A server-side session: the user, when it began, and small values the routes keep in it (a cart).
    public struct Session: Codable, Sendable, Equatable {
        /// The user id.
        public var user: String
        /// When the session began.
        public var createdAt: Date
        /// Free-form data (the shop keeps the cart here).
        public var data: [String: String]

        /// A session of `user` begun at `createdAt`.
        public init(user: String, createdAt: Date = Date(), data: [String: String] = [:]) {
            self.user = user
            self.createdAt = createdAt
            self.data = data
        }
    }

    /// Server-side sessions (Redis in production).
    public var sessions: SessionStore<Session>
    /// Responses kept for `Idempotency-Key` replay.
    public var idempotency: IdempotencyStore
    /// Applied per user on authenticated routes (key: the user id).
    public var userLimiter: (any RateLimiter)?
    /// Applied to every request (key: "global").
    public var globalLimiter: (any RateLimiter)?
    /// Applied to `POST /auth/login` per account (key "login:user:…") before the password is checked, so
    /// guessing one account's password is slowed to the limit (429 + Retry-After). Default: 10 attempts a
    /// minute, in process memory (pass a Redis limiter to share it between gateways).
    public var loginLimiter: (any RateLimiter)?
    /// The same per client address (key "login:address:…"), against guessing across many accounts. Default:
    /// 100 attempts a minute.
    public var loginAddressLimiter: (any RateLimiter)?
    /// Checks a username and password; returns the user id, or nil when they are wrong.
    public var authenticate: @Sendable (String, String) async throws -> String?
    /// Prometheus text for `/metrics`.
    public var metrics: @Sendable () -> String
    /// Whether the backends are ready (for `/ready`).
    public var ready: @Sendable () async -> Bool

    /// The services; the login limiters default to in-process ones (10 attempts a minute per account, 100 per address).
    public init(sessions: SessionStore<Session>, idempotency: IdempotencyStore, userLimiter: (any RateLimiter)? = nil,
                globalLimiter: (any RateLimiter)? = nil, loginLimiter: (any RateLimiter)? = try? LocalRateLimiter(Self.defaultLoginLimit),
                loginAddressLimiter: (any RateLimiter)? = try? LocalRateLimiter(Self.defaultLoginAddressLimit),
                authenticate: @escaping @Sendable (String, String) async throws -> String?,
                metrics: @escaping @Sendable () -> String = { "" }, ready: @escaping @Sendable () async -> Bool = { true }) {
        self.sessions = sessions
        self.idempotency = idempotency
        self.userLimiter = userLimiter
        self.globalLimiter = globalLimiter
        self.loginLimiter = loginLimiter
        self.loginAddressLimiter = loginAddressLimiter
        self.authenticate = authenticate
        self.metrics = metrics
        self.ready = ready
    }

    /// 10 login attempts a minute per account.
    public static let defaultLoginLimit = RateLimit.slidingWindow(limit: 10, window: .seconds(60))
    /// 100 login attempts a minute per client address.
    public static let defaultLoginAddressLimit = RateLimit.slidingWindow(limit: 100, window: .seconds(60))
}
