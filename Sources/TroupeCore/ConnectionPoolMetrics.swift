public import Metrics

/// `troupe_client_connections` (open now) and `troupe_client_connects_total` (opened, failed) of one client's
/// pool of connections to one server.
public struct ConnectionPoolMetrics: Sendable {
    /// Connections open now.
    public let open: Gauge
    /// Connections opened successfully.
    public let opened: Counter
    /// Connection attempts that failed.
    public let failed: Counter

    /// - Parameters:
    ///   - client: what connects (`redis`, `mongo`).
    ///   - server: `host:port` from the configuration.
    public init(client: String, server: String) {
        let dimensions = [("client", client), ("server", server)]
        open = Gauge(label: MetricFamilies.clientConnections.name, dimensions: dimensions)
        opened = Counter(label: MetricFamilies.clientConnects.name, dimensions: dimensions + [("outcome", "ok")])
        failed = Counter(label: MetricFamilies.clientConnects.name, dimensions: dimensions + [("outcome", "failed")])
    }
}
