/// Metric series made once per label set and reused: making one per event takes the metrics factory's lock and
/// allocates its dimensions every time. Keys come from the process's own code (commands, topics, operations);
/// past `limit` distinct keys, everything new shares the series made for `overflowKey`.
public final class SeriesCache<Series: Sendable>: Sendable {
    private let series = Guarded<[String: Series]>([:])
    /// The most distinct keys given a series of their own.
    public let limit: Int
    /// The key whose series everything past ``limit`` shares.
    public let overflowKey: String

    /// A cache of at most `limit` series (default 1,024); later keys share `overflowKey`'s.
    public init(limit: Int = 1_024, overflowKey: String = "other") {
        self.limit = limit
        self.overflowKey = overflowKey
    }

    /// The series of `key`, made by `make` (given the key it is made for: `overflowKey` past the limit) the first time.
    public func callAsFunction(_ key: String, make: (_ key: String) -> Series) -> Series {
        series.withLock { series in
            if let existing = series[key] { return existing }
            let label = series.count < limit ? key : overflowKey
            if let existing = series[label] { return existing }
            let made = make(label)
            series[label] = made
            return made
        }
    }
}
