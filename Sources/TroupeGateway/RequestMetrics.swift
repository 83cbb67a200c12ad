import Hummingbird
import HummingbirdCore
import Metrics
import TroupeCore

/// The gateway's RED metrics: requests by route template, method and status class
/// (`troupe_gateway_requests_total`), and their latency by route template and method
/// (`troupe_gateway_request_duration_seconds`), for the router and both pipeline paths alike.
///
/// Each series is made once and then looked up (creating a metric per request would take the metrics
/// factory's lock and allocate). Labels stay bounded: route templates come from the route table, methods
/// outside the standard ones count as "other".
final class RequestMetrics: Sendable {
    private struct Key: Hashable {
        let route: String
        let method: String
        /// 1…5 for the status class; 0 for the latency series.
        let statusClass: Int
    }

    private enum Series: Sendable {
        case counter(Counter)
        case timer(Metrics.Timer)
    }

    private let series = Guarded<[Key: Series]>([:])
    static let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"]

    /// Records one answered request.
    func record(route: String, method: String, status: Int, since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let method = Self.methods.contains(method) ? method : "other"
        let statusClass = min(max(status / 100, 1), 5)
        let (counter, timer) = series.withLock { series -> (Counter, Metrics.Timer) in
            let counterKey = Key(route: route, method: method, statusClass: statusClass)
            let timerKey = Key(route: route, method: method, statusClass: 0)
            let counter: Counter
            if case .counter(let known) = series[counterKey] {
                counter = known
            } else {
                counter = Counter(label: MetricFamilies.gatewayRequests.name,
                                  dimensions: [("route", route), ("method", method), ("status", "\(statusClass)xx")])
                series[counterKey] = .counter(counter)
            }
            let timer: Metrics.Timer
            if case .timer(let known) = series[timerKey] {
                timer = known
            } else {
                timer = Metrics.Timer(label: MetricFamilies.gatewayRequestDuration.name, dimensions: [("route", route), ("method", method)])
                series[timerKey] = .timer(timer)
            }
            return (counter, timer)
        }
        counter.increment()
        timer.recordNanoseconds(elapsed.nanoseconds)
    }
}

/// Records every request the router answers in ``RequestMetrics`` (the outermost middleware: it sees the
/// problem+json answers too).
struct RequestMetricsMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let metrics: RequestMetrics

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            metrics.record(route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: response.status.code, since: start)
            return response
        } catch {
            metrics.record(route: context.endpointPath ?? "unmatched", method: request.method.rawValue,
                           status: (error as? any HTTPResponseError)?.status.code ?? 500, since: start)
            throw error
        }
    }
}
