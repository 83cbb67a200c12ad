import Foundation
import NIOCore
import NIOHTTP1
import TroupeCore
import TroupeGateway

/// What the clients saw: every intent (an order a user wanted, with its Idempotency-Key), the order ids the
/// gateways answered for it, and every failed attempt with when it started and ended.
struct ClientLog: Sendable {
    struct Intent: Sendable {
        var user: String
        var key: String
        var sku: String
        var quantity: Int
        /// Every distinct order id answered for this key (more than one is a duplicate effect).
        var ids: Set<String> = []
        /// When the intent's first request was sent.
        var started: ContinuousClock.Instant?
        var acknowledgedAt: ContinuousClock.Instant?
        /// A 4xx that is not about the key (out of stock is not: that ends in a cancelled order, answered 202).
        var refused: Int?
        /// Each attempt: what it got and how long it took ("login 0.10 s", "503 0.21 s", "202 4.80 s") — what a
        /// long wait was made of.
        var tries: [String] = []
    }

    /// An intent's first failed request, and when the intent then succeeded (nil: it never did).
    struct Failure: Sendable {
        var started: ContinuousClock.Instant
        /// When the client saw the attempt fail: the fault window it belongs to (a request sent just before a
        /// fault and cut by it belongs to that fault, not to the window it was sent in).
        var failed: ContinuousClock.Instant = .now
        var recovered: ContinuousClock.Instant?
        /// What the first failed attempt got: the status and the problem's detail, or the client's error.
        var reason: String
    }

    var intents: [Intent] = []
    var failures: [Failure] = []
    var attempts = 0
}

/// Users who place orders through the gateways like a mobile client: each order gets a fresh
/// Idempotency-Key; a timeout, a 5xx, a 409 or 429, or a broken connection is retried with the same key
/// (after `Retry-After`, and on the other gateway when the connection broke), for up to `giveUpAfter`.
struct ChaosClients: Sendable {
    let gateways: [UpstreamHTTPClient.Endpoint]
    let users: [String]
    let skus: [String]
    let password: @Sendable (String) -> String
    let giveUpAfter: Duration = .seconds(120)
    let requestTimeout: Duration = .seconds(10)
    let think: Duration = .milliseconds(50)

    func run(until stop: ChaosStop, log: Locked<ClientLog>) async {
        let client = UpstreamHTTPClient(maxIdlePerEndpoint: 4)
        defer { client.shutdown() }
        await withTaskGroup(of: Void.self) { group in
            for (index, user) in users.enumerated() {
                group.addTask { await self.user(index: index, name: user, client: client, stop: stop, log: log) }
            }
        }
    }

    private func user(index: Int, name: String, client: UpstreamHTTPClient, stop: ChaosStop, log: Locked<ClientLog>) async {
        var gateway = index % gateways.count
        var token: String?
        var sequence = 0
        var rng = SystemRandomNumberGenerator()
        while !stop.isSet {
            sequence += 1
            let sku = skus[Int.random(in: 0..<skus.count, using: &rng)]
            let intent = ClientLog.Intent(user: name, key: "\(name)-\(UUID().uuidString.prefix(8))-\(sequence)", sku: sku, quantity: Int.random(in: 1...2, using: &rng))
            let started = ContinuousClock.now
            let slot = log.withLock { log -> Int in
                log.intents.append(intent)
                return log.intents.count - 1
            }
            var pendingFailure: ClientLog.Failure?
            /// Records one attempt of this intent: what it got and how long it took since `start`.
            func noteAttempt(_ answer: String, since start: ContinuousClock.Instant) {
                let took = (ContinuousClock.now - start).seconds
                log.withLock { $0.intents[slot].tries.append("\(answer) " + String(format: "%.2f s", took)) }
            }
            var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
            attempts: while ContinuousClock.now - started < giveUpAfter {
                let sent = ContinuousClock.now
                log.withLock { $0.attempts += 1 }
                do {
                    if token == nil {
                        let began = ContinuousClock.now
                        token = try await login(client, gateways[gateway], user: name)
                        noteAttempt("login", since: began)
                    }
                    // The intent's wait starts with its first order request (a user's first login, a deliberately
                    // slow password hash, is not part of it; a login again after a failure is).
                    let first = ContinuousClock.now
                    log.withLock { log in if log.intents[slot].started == nil { log.intents[slot].started = first } }
                    let body = #"{"sku":"\#(intent.sku)","quantity":\#(intent.quantity)}"#
                    let (status, headers, json) = try await request(client, gateways[gateway], "POST", "/orders", token: token, key: intent.key, body: body)
                    noteAttempt(String(status), since: first)
                    switch status {
                    case 202:
                        let id = json["orderId"] as? String ?? ""
                        let now = ContinuousClock.now
                        log.withLock { log in
                            log.intents[slot].ids.insert(id)
                            if log.intents[slot].acknowledgedAt == nil { log.intents[slot].acknowledgedAt = now }
                            if var failure = pendingFailure {
                                failure.recovered = now
                                log.failures.append(failure)
                            }
                        }
                        pendingFailure = nil
                        break attempts
                    case 401:
                        token = nil  // the session is gone (a Redis without it): log in again, same key
                        pendingFailure = pendingFailure ?? ClientLog.Failure(started: sent, reason: Self.reason(status, json))
                    case 409, 429, 500...599:
                        pendingFailure = pendingFailure ?? ClientLog.Failure(started: sent, reason: Self.reason(status, json))
                        let retryAfter = headers.first(name: "retry-after").flatMap(Double.init) ?? 0
                        try? await Task.sleep(for: max(backoff.next(), .milliseconds(Int64(min(retryAfter, 2) * 1000))))
                    default:
                        log.withLock { $0.intents[slot].refused = status }
                        break attempts
                    }
                } catch {
                    // Connection refused or reset, or no answer in time: the other gateway, same key.
                    pendingFailure = pendingFailure ?? ClientLog.Failure(started: sent, reason: "no answer: \(error)")
                    noteAttempt("no answer", since: sent)
                    gateway = (gateway + 1) % gateways.count
                    token = nil
                    try? await Task.sleep(for: backoff.next())
                }
            }
            if let failure = pendingFailure { log.withLock { $0.failures.append(failure) } }  // never recovered
            try? await Task.sleep(for: think)
        }
    }

    /// "503 the cluster did not answer…" (the problem's detail, ids and numbers elided so that reasons group).
    static func reason(_ status: Int, _ json: [String: Any]) -> String {
        let detail = (json["detail"] as? String) ?? (json["title"] as? String) ?? ""
        let generic = detail.replacingOccurrences(of: "[0-9a-f]{8,}|[0-9]+", with: "#", options: .regularExpression)
        return "\(status) \(generic.prefix(160))"
    }

    private func login(_ client: UpstreamHTTPClient, _ endpoint: UpstreamHTTPClient.Endpoint, user: String) async throws -> String {
        let (status, _, json) = try await request(client, endpoint, "POST", "/auth/login", token: nil, key: nil,
                                                  body: #"{"username":"\#(user)","password":"\#(password(user))"}"#)
        guard status == 200, let token = json["token"] as? String else { throw ChaosError("login of \(user) answered \(status)") }
        return token
    }

    func request(_ client: UpstreamHTTPClient, _ endpoint: UpstreamHTTPClient.Endpoint, _ method: String, _ path: String, token: String?,
                 key: String?, body: String?) async throws -> (Int, HTTPHeaders, [String: Any]) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(endpoint.host):\(endpoint.port)")
        if let body {
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(body.utf8.count))
        }
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let key { headers.add(name: "Idempotency-Key", value: key) }
        let reply = try await client.execute(endpoint, head: HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: headers),
                                             body: body.map { ByteBuffer(string: $0) }, timeout: requestTimeout)
        let json = (try? JSONSerialization.jsonObject(with: Data(reply.body.readableBytesView))) as? [String: Any] ?? [:]
        return (Int(reply.head.status.code), reply.head.headers, json)
    }
}

/// Set once: the workload stops placing new orders (intents in flight finish their retries).
final class ChaosStop: Sendable {
    private let flag = Locked(false)
    var isSet: Bool { flag.withLock { $0 } }
    func set() { flag.withLock { $0 = true } }
}

struct ChaosError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
