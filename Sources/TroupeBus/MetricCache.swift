import Synchronization
import TroupeCore

/// Metrics made once per label set and reused: making one per message takes the metrics factory's lock
/// and allocates its dimensions every time.
final class MetricCache<Metric: Sendable>: Sendable {
    private let metrics = Guarded<[String: Metric]>([:])

    func callAsFunction(_ key: String, make: () -> Metric) -> Metric {
        metrics.withLock { metrics in
            if let existing = metrics[key] { return existing }
            let made = make()
            metrics[key] = made
            return made
        }
    }
}
