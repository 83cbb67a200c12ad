import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Metrics
public import ServiceLifecycle
import Synchronization
import TroupeCore
import TroupeEtcdGenerated
import TroupeTLS

/// An etcd v3 client over gRPC (grpc-swift-2): KV, transactions, leases with keep-alive, and watches
/// that resume after disconnects and resynchronise after compaction.
///
/// Calls are balanced over the configured endpoints and retried on another one when an endpoint is
/// unavailable, within the call's deadline. It is a `Service`: run ``run()`` (it owns the gRPC
/// connections) alongside your code, or use ``withEtcdClient(_:_:)``.
public final class EtcdClient: Service, Sendable {
    /// The settings the client was made with.
    public let configuration: EtcdConfiguration
    let grpc: GRPCClient<HTTP2ClientTransport.Posix>
    private let token = Guarded<String?>(nil)
    /// "etcd unavailable" is written at most once per 30 s, however many calls retry meanwhile.
    private let unavailableLog = SharedLogThrottle()
    private let requestMetrics = SeriesCache<RequestMetrics>(limit: 64)

    /// - Throws: ``EtcdError/Code/invalidConfiguration`` when the transport cannot be created.
    public init(configuration: EtcdConfiguration) throws {
        self.configuration = configuration
        let transport: HTTP2ClientTransport.Posix
        do {
            transport = try HTTP2ClientTransport.Posix(
                target: .ipv4(pairs: configuration.endpoints.map { (host: $0.host, port: $0.port) }),
                transportSecurity: Self.transportSecurity(configuration.tls),
                // gRPC's default reconnect backoff grows to two minutes: after a 15 s etcd outage the client
                // came back up to ~10 s after etcd did, every 5 s lease expired meanwhile and the members saw
                // each other leave and return (requests failed for 6–24 s in the fault-injection runs).
                // Reconnect at most a second apart.
                config: .defaults { $0.backoff = .init(initial: .milliseconds(100), max: .seconds(1), multiplier: 1.6, jitter: 0.2) },
                serviceConfig: ServiceConfig(loadBalancingConfig: [.roundRobin])
            )
        } catch {
            throw EtcdError(.invalidConfiguration, "cannot create the gRPC transport for \(configuration.endpoints)", underlying: error)
        }
        self.grpc = GRPCClient(transport: transport)
    }

    static func transportSecurity(_ tls: TLSSettings?) -> HTTP2ClientTransport.Posix.TransportSecurity {
        guard let tls else { return .plaintext }
        return .tls { config in
            if let ca = tls.ca { config.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
            if let certificate = tls.certificate, let key = tls.privateKey {
                config.certificateChain = [.file(path: certificate, format: .pem)]
                config.privateKey = .file(path: key, format: .pem)
            }
            config.serverCertificateVerification = tls.verifyHostname == false ? .noHostnameVerification : .fullVerification
        }
    }

    /// Maintains the connections until graceful shutdown, cancellation or ``shutdown()``.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await grpc.runConnections()
        } onGracefulShutdown: {
            self.grpc.beginGracefulShutdown()
        }
    }

    /// Starts closing the gRPC connections; calls in flight finish first.
    public func shutdown() {
        grpc.beginGracefulShutdown()
    }

    var kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    var leases: Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    var watches: Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }

    // MARK: - Calls

    func metadata() async throws -> Metadata {
        guard let username = configuration.username, let password = configuration.password else { return [:] }
        if let token = token.withLock({ $0 }) { return ["token": .string(token)] }
        let auth = Etcdserverpb_Auth.Client(wrapping: grpc)
        var request = Etcdserverpb_AuthenticateRequest()
        request.name = username
        request.password = password
        let response: Etcdserverpb_AuthenticateResponse
        do {
            var options = CallOptions.defaults
            options.timeout = configuration.callTimeout
            response = try await auth.authenticate(request, options: options)
        } catch let error as RPCError {
            throw EtcdError.from(error, operation: "authenticate")
        }
        token.withLock { $0 = response.token }
        return ["token": .string(response.token)]
    }

    /// Runs a unary call with the configured deadline, authentication, and retries while every
    /// endpoint is unavailable (until the deadline); counted in `troupe_etcd_requests_total` by operation and
    /// outcome (ok; error: etcd refused it; failed: no answer — unavailable or out of time) and timed.
    func call<R: Sendable>(
        _ operation: String, timeout: Duration? = nil,
        _ body: @Sendable (Metadata, CallOptions) async throws -> R
    ) async throws -> R {
        let series = requestMetrics(operation) { operation in
            let dimensions = [("operation", operation)]
            return RequestMetrics(
                ok: Counter(label: MetricFamilies.etcdRequests.name, dimensions: dimensions + [("outcome", "ok")]),
                error: Counter(label: MetricFamilies.etcdRequests.name, dimensions: dimensions + [("outcome", "error")]),
                failed: Counter(label: MetricFamilies.etcdRequests.name, dimensions: dimensions + [("outcome", "failed")]),
                duration: Metrics.Timer(label: MetricFamilies.etcdRequestDuration.name, dimensions: dimensions))
        }
        let started = ContinuousClock.now
        do {
            let result = try await callWithRetries(operation, timeout: timeout, body)
            series.duration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
            series.ok.increment()
            return result
        } catch {
            series.duration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
            let code = (error as? EtcdError)?.code
            (code == .unavailable || code == .timeout ? series.failed : series.error).increment()
            throw error
        }
    }

    struct RequestMetrics: Sendable {
        let ok: Counter
        let error: Counter
        let failed: Counter
        let duration: Metrics.Timer
    }

    private func callWithRetries<R: Sendable>(
        _ operation: String, timeout: Duration?,
        _ body: @Sendable (Metadata, CallOptions) async throws -> R
    ) async throws -> R {
        let deadline = ContinuousClock.now + (timeout ?? configuration.callTimeout)
        var reauthenticated = false
        while true {
            var options = CallOptions.defaults
            options.timeout = max(deadline - ContinuousClock.now, .milliseconds(1))
            do {
                return try await body(try await metadata(), options)
            } catch let error as RPCError {
                let mapped = EtcdError.from(error, operation: operation)
                if !reauthenticated, configuration.username != nil,
                   error.code == .unauthenticated || error.message.contains("invalid auth token") {
                    token.withLock { $0 = nil }
                    reauthenticated = true
                    continue
                }
                guard mapped.code == .unavailable, ContinuousClock.now + configuration.retryDelay < deadline else { throw mapped }
                if let held = unavailableLog.admit() {
                    configuration.logger.info("etcd unavailable, retrying", metadata: [
                        "etcd.operation": "\(operation)", "etcd.endpoints": "\(configuration.endpoints)", "log.suppressed": "\(held)",
                    ])
                }
                try await Task.sleep(for: configuration.retryDelay)
            }
        }
    }

    // MARK: - KV

    /// The smallest key greater than every key with `prefix` (etcd's range end for a prefix).
    static func prefixEnd(_ prefix: String) -> [UInt8] {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return [0]  // every key
    }

    /// The value of `key`, or `nil`.
    public func get(_ key: String) async throws -> EtcdKeyValue? {
        try await range(key).kvs.first
    }

    /// Reads `key`, or every key under it with `prefix`.
    public func range(
        _ key: String, prefix: Bool = false, limit: Int64 = 0, revision: Int64 = 0, keysOnly: Bool = false,
        countOnly: Bool = false, timeout: Duration? = nil
    ) async throws -> EtcdRangeResult {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(key.utf8)
        if prefix { request.rangeEnd = Data(Self.prefixEnd(key)) }
        request.limit = limit
        request.revision = revision
        request.keysOnly = keysOnly
        request.countOnly = countOnly
        let kv = self.kv
        let request2 = request
        let response = try await call("range", timeout: timeout) { metadata, options in
            try await kv.range(request2, metadata: metadata, options: options)
        }
        return EtcdRangeResult(
            kvs: response.kvs.map(EtcdKeyValue.init), more: response.more, count: response.count, revision: response.header.revision
        )
    }

    /// Writes `value` at `key` (attached to `lease` if not 0); returns the new revision and the previous value.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0, timeout: Duration? = nil) async throws -> (revision: Int64, previous: EtcdKeyValue?) {
        var request = Etcdserverpb_PutRequest()
        request.key = Data(key.utf8)
        request.value = Data(value)
        request.lease = lease
        request.prevKv = true
        let kv = self.kv
        let message = request
        let response = try await call("put", timeout: timeout) { metadata, options in
            try await kv.put(message, metadata: metadata, options: options)
        }
        return (response.header.revision, response.hasPrevKv ? EtcdKeyValue(response.prevKv) : nil)
    }

    /// Writes a UTF-8 string.
    @discardableResult
    public func put(_ key: String, _ value: String, lease: Int64 = 0) async throws -> (revision: Int64, previous: EtcdKeyValue?) {
        try await put(key, Array(value.utf8), lease: lease)
    }

    /// Deletes `key`, or every key under it with `prefix`; returns how many were deleted.
    @discardableResult
    public func delete(_ key: String, prefix: Bool = false, timeout: Duration? = nil) async throws -> Int64 {
        var request = Etcdserverpb_DeleteRangeRequest()
        request.key = Data(key.utf8)
        if prefix { request.rangeEnd = Data(Self.prefixEnd(key)) }
        let kv = self.kv
        let message = request
        return try await call("delete", timeout: timeout) { metadata, options in
            try await kv.deleteRange(message, metadata: metadata, options: options).deleted
        }
    }

    /// Runs `success` if every comparison holds, otherwise `failure`, atomically.
    public func transaction(
        if compare: [EtcdCompare], then success: [EtcdOperation], else failure: [EtcdOperation] = [], timeout: Duration? = nil
    ) async throws -> EtcdTxnResult {
        var request = Etcdserverpb_TxnRequest()
        request.compare = compare.map(\.message)
        request.success = success.map(\.message)
        request.failure = failure.map(\.message)
        let kv = self.kv
        let message = request
        let response = try await call("txn", timeout: timeout) { metadata, options in
            try await kv.txn(message, metadata: metadata, options: options)
        }
        let reads = response.responses.compactMap { op -> [EtcdKeyValue]? in
            guard case .responseRange(let range)? = op.response else { return nil }
            return range.kvs.map(EtcdKeyValue.init)
        }
        return EtcdTxnResult(succeeded: response.succeeded, revision: response.header.revision, reads: reads)
    }

    /// Compacts the history up to `revision`.
    public func compact(revision: Int64) async throws {
        var request = Etcdserverpb_CompactionRequest()
        request.revision = revision
        request.physical = true
        let kv = self.kv
        let message = request
        _ = try await call("compact") { metadata, options in
            try await kv.compact(message, metadata: metadata, options: options)
        }
    }

    /// The status of the member that answers (version, leader, revision).
    public func status() async throws -> (version: String, leader: UInt64, member: UInt64, revision: Int64) {
        let maintenance = Etcdserverpb_Maintenance.Client(wrapping: grpc)
        let response = try await call("status") { metadata, options in
            try await maintenance.status(Etcdserverpb_StatusRequest(), metadata: metadata, options: options)
        }
        return (response.version, response.leader, response.header.memberID, response.header.revision)
    }

    /// The cluster's members: (id, name, client URLs).
    public func members() async throws -> [(id: UInt64, name: String, clientURLs: [String])] {
        let cluster = Etcdserverpb_Cluster.Client(wrapping: grpc)
        let response = try await call("member list") { metadata, options in
            try await cluster.memberList(Etcdserverpb_MemberListRequest(), metadata: metadata, options: options)
        }
        return response.members.map { ($0.id, $0.name, $0.clientUrls) }
    }
}

/// Runs `body` with a running client, then shuts it down.
public func withEtcdClient<Result: Sendable>(
    _ configuration: EtcdConfiguration, _ body: @Sendable (EtcdClient) async throws -> Result
) async throws -> Result {
    let client = try EtcdClient(configuration: configuration)
    return try await withRunning(run: { try await client.run() }, shutdown: { client.shutdown() }) { try await body(client) }
}
