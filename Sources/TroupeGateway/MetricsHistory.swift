import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
public import ServiceLifecycle
import TroupeCore

/// One sample line of the Prometheus text format: `name{label="value",…} value`.
public struct PrometheusSample: Sendable, Hashable {
    /// The metric name.
    public var name: String
    /// Its labels.
    public var labels: [String: String]
    /// Its value.
    public var value: Double

    /// A sample of `name` with `labels` and `value`.
    public init(name: String, labels: [String: String] = [:], value: Double) {
        self.name = name
        self.labels = labels
        self.value = value
    }

    /// The samples of a Prometheus text exposition; comments, blank and malformed lines are skipped.
    public static func parse(_ text: String) -> [PrometheusSample] {
        var samples: [PrometheusSample] = []
        for line in text.utf8.split(separator: UInt8(ascii: "\n")) {
            if let sample = parseLine(Array(line)) { samples.append(sample) }
        }
        return samples
    }

    static func parseLine(_ bytes: [UInt8]) -> PrometheusSample? {
        guard let first = bytes.first, first != UInt8(ascii: "#") else { return nil }
        var index = 0
        while index < bytes.count, bytes[index] != UInt8(ascii: "{"), bytes[index] != UInt8(ascii: " ") { index += 1 }
        guard index > 0, index < bytes.count else { return nil }
        let name = String(decoding: bytes[0..<index], as: UTF8.self)
        var labels: [String: String] = [:]
        if bytes[index] == UInt8(ascii: "{") {
            index += 1
            while index < bytes.count, bytes[index] != UInt8(ascii: "}") {
                let keyStart = index
                while index < bytes.count, bytes[index] != UInt8(ascii: "=") { index += 1 }
                guard index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "\"") else { return nil }
                let key = String(decoding: bytes[keyStart..<index], as: UTF8.self)
                index += 2
                var value: [UInt8] = []
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count {
                        index += 1
                        value.append(bytes[index] == UInt8(ascii: "n") ? UInt8(ascii: "\n") : bytes[index])
                    } else {
                        value.append(bytes[index])
                    }
                    index += 1
                }
                guard index < bytes.count else { return nil }
                labels[key] = String(decoding: value, as: UTF8.self)
                index += 1  // the closing quote
                if index < bytes.count, bytes[index] == UInt8(ascii: ",") { index += 1 }
            }
            guard index < bytes.count else { return nil }
            index += 1  // the closing brace
        }
        while index < bytes.count, bytes[index] == UInt8(ascii: " ") { index += 1 }
        var end = index
        while end < bytes.count, bytes[end] != UInt8(ascii: " ") { end += 1 }
        guard let value = number(String(decoding: bytes[index..<end], as: UTF8.self)) else { return nil }
        return PrometheusSample(name: name, labels: labels, value: value)
    }

    static func number(_ text: String) -> Double? {
        switch text {
        case "+Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default: return Double(text)
        }
    }
}

/// The last minutes of a process's metrics as time series, for a live dashboard: every `interval` it reads the
/// process's Prometheus text, derives the chosen series (rates of counters, gauges, latency quantiles of
/// histograms, ratios) over the interval, keeps the last `keep` samples and pushes each new one to the
/// subscribers of its stream route (Server-Sent Events). A `Service`: it samples while it runs and ends
/// every stream when it stops — list it *after* the gateway in a service group, so that it stops first and
/// the gateway's graceful drain does not wait on open streams.
public final class MetricsHistory: Service, Sendable {
    /// One derived series: what to read and how, grouped by some of its labels.
    public struct Series: Sendable, Hashable {
        /// How a dashboard series is derived from the Prometheus samples: a rate, a gauge, a quantile or a ratio.
        public enum Kind: Sendable, Hashable {
            /// A counter's increase per second.
            case rate
            /// A gauge's value (summed over the samples of a group).
            case gauge
            /// A histogram's quantile (0…1) of what was observed during the interval, in its unit.
            case quantile(Double)
            /// The share (0…1) of a counter's increase during the interval whose `label` is one of `values`.
            case ratio(label: String, values: Set<String>)
        }

        /// The key of this series in a ``Sample``.
        public var name: String
        /// The Prometheus family (`…_bucket` is appended for quantiles).
        public var family: String
        /// Only samples with these label values count.
        public var matching: [String: String]
        /// One line per combination of these labels' values ("all" when empty).
        public var by: [String]
        /// How the samples become one value per interval.
        public var kind: Kind

        /// A series `name` computed from `family` by `kind`, over samples `matching`, one line per value of `by`.
        public init(_ name: String, family: String, matching: [String: String] = [:], by: [String] = [], kind: Kind) {
            self.name = name
            self.family = family
            self.matching = matching
            self.by = by
            self.kind = kind
        }
    }

    /// The series' values at one instant: series name → group ("node-1/OrderActor", "all") → value. A series
    /// or group with nothing to say for the interval (no observation, no requests) is absent.
    public struct Sample: Codable, Sendable, Hashable {
        /// Seconds since 1970.
        public var time: Double
        /// Series name → group → value.
        public var values: [String: [String: Double]]
    }

    private struct State: ~Copyable {
        var samples: [Sample] = []
        var subscribers: [UInt64: AsyncStream<Sample>.Continuation] = [:]
        var nextSubscriber: UInt64 = 0
        var stopped = false
    }

    /// What each sample holds.
    public let series: [Series]
    /// How often a sample is taken.
    public let interval: Duration
    /// How many samples are kept for new subscribers.
    public let keep: Int
    private let scrape: @Sendable () -> String
    private let state = Guarded(State())

    /// - Parameters:
    ///   - series: what each sample holds.
    ///   - interval: how often a sample is taken.
    ///   - scrape: the process's Prometheus text (e.g. `TroupeMetricsFactory.scrape`).
    ///   - keep: samples kept for a new subscriber (300 at 1 s: the last five minutes).
    public init(series: [Series], interval: Duration = .seconds(1), keep: Int = 300, scrape: @escaping @Sendable () -> String) {
        self.series = series
        self.interval = interval
        self.keep = max(1, keep)
        self.scrape = scrape
    }

    /// The samples kept now, oldest first.
    public var samples: [Sample] { state.withLock { $0.samples } }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var previous: (at: ContinuousClock.Instant, samples: [PrometheusSample])?
            while !Task.isCancelled {
                let now = ContinuousClock.now
                let current = PrometheusSample.parse(self.scrape())
                if let previous {
                    let seconds = Double((now - previous.at).nanoseconds) / 1e9
                    self.record(Sample(time: Date().timeIntervalSince1970,
                                       values: Self.derive(self.series, previous: previous.samples, current: current, seconds: seconds)))
                }
                previous = (now, current)
                try await Task.sleep(for: self.interval)
            }
        }
        let subscribers = state.withLock { state -> [AsyncStream<Sample>.Continuation] in
            state.stopped = true
            defer { state.subscribers.removeAll() }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
    }

    private func record(_ sample: Sample) {
        let subscribers = state.withLock { state -> [AsyncStream<Sample>.Continuation] in
            state.samples.append(sample)
            if state.samples.count > keep { state.samples.removeFirst(state.samples.count - keep) }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.yield(sample) }
    }

    /// The samples kept so far and a stream of the next ones; the stream ends when the history stops.
    public func subscribe() -> (history: [Sample], next: AsyncStream<Sample>) {
        let (stream, continuation) = AsyncStream.makeStream(of: Sample.self, bufferingPolicy: .bufferingNewest(16))
        let (history, id) = state.withLock { state -> ([Sample], UInt64?) in
            guard !state.stopped else { return (state.samples, nil) }
            state.nextSubscriber += 1
            state.subscribers[state.nextSubscriber] = continuation
            return (state.samples, state.nextSubscriber)
        }
        if let id {
            continuation.onTermination = { [weak self] _ in _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) } }
        } else {
            continuation.finish()
        }
        return (history, stream)
    }

    /// How many streams are open (for tests and diagnostics).
    public var subscribers: Int { state.withLock { $0.subscribers.count } }

    /// `GET path`: Server-Sent Events — first `event: history` with the kept samples (a JSON array), then one
    /// `event: sample` a sample. A stream ends after `maxDuration` (the browser's EventSource reconnects by
    /// itself), when the client goes away, or when the history stops. No token: serve it on a private address.
    public func streamRoute(_ path: String, maxDuration: Duration = .seconds(600)) -> GatewayRoute {
        GatewayRoute(.get, path, summary: "The dashboard's series, pushed every second (Server-Sent Events)", requiresAuth: false,
                     responses: [APIResponse(200, "An event stream: the history, then a sample a second", schema: .string, contentType: "text/event-stream")]) { _, _ in
            let (history, next) = self.subscribe()
            let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-store"]
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                let encoder = JSONEncoder()
                encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
                func event(_ name: String, _ data: Data) -> ByteBuffer {
                    var buffer = ByteBuffer(string: "event: \(name)\ndata: ")
                    buffer.writeBytes(data)
                    buffer.writeString("\n\n")
                    return buffer
                }
                try await writer.write(event("history", try encoder.encode(history)))
                let deadline = ContinuousClock.now + maxDuration
                for await sample in next {
                    try await writer.write(event("sample", try encoder.encode(sample)))
                    if ContinuousClock.now >= deadline { break }
                }
                try await writer.finish(nil)
            })
        }
    }

    // MARK: - Derivation (pure)

    /// The series' values over an interval of `seconds` between two readings of the same process.
    public static func derive(_ series: [Series], previous: [PrometheusSample], current: [PrometheusSample], seconds: Double) -> [String: [String: Double]] {
        guard seconds > 0 else { return [:] }
        var values: [String: [String: Double]] = [:]
        for one in series {
            let derived: [String: Double]
            switch one.kind {
            case .gauge:
                derived = sums(current, one, family: one.family)
            case .rate:
                derived = increases(one, family: one.family, previous: previous, current: current).mapValues { $0 / seconds }
            case .ratio(let label, let chosen):
                let all = increases(one, family: one.family, previous: previous, current: current)
                var picked = one
                picked.by.append(label)
                let detailed = increases(picked, family: one.family, previous: previous, current: current)
                var result: [String: Double] = [:]
                for (group, total) in all where total > 0 {
                    let part = chosen.reduce(0.0) { sum, value in sum + (detailed[group == "all" ? value : "\(group)/\(value)"] ?? 0) }
                    result[group] = part / total
                }
                derived = result
            case .quantile(let q):
                derived = quantiles(one, q: q, previous: previous, current: current)
            }
            if !derived.isEmpty { values[one.name] = derived }
        }
        return values
    }

    /// Sums of the samples of `family` that match, by group.
    static func sums(_ samples: [PrometheusSample], _ series: Series, family: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for sample in samples where sample.name == family && series.matching.allSatisfy({ sample.labels[$0.key] == $0.value }) {
            guard sample.value.isFinite else { continue }
            result[group(sample, by: series.by), default: 0] += sample.value
        }
        return result
    }

    static func group(_ sample: PrometheusSample, by labels: [String]) -> String {
        labels.isEmpty ? "all" : labels.map { sample.labels[$0] ?? "" }.joined(separator: "/")
    }

    /// A counter's increase; a smaller value means it restarted from zero.
    static func increase(from before: Double?, to after: Double) -> Double {
        guard let before, after >= before else { return after }
        return after - before
    }

    /// Each series' own increase (a restart of one is seen even when its group's sum still grew), summed by group.
    static func increases(_ series: Series, family: String, previous: [PrometheusSample], current: [PrometheusSample],
                          extra: String? = nil) -> [String: Double] {
        func matches(_ sample: PrometheusSample) -> Bool {
            sample.name == family && sample.value.isFinite && series.matching.allSatisfy { sample.labels[$0.key] == $0.value }
        }
        var before: [[String: String]: Double] = [:]
        for sample in previous where matches(sample) { before[sample.labels] = sample.value }
        var result: [String: Double] = [:]
        for sample in current where matches(sample) {
            var key = group(sample, by: series.by)
            if let extra { key += "\u{0}" + (sample.labels[extra] ?? "") }
            result[key, default: 0] += increase(from: before[sample.labels], to: sample.value)
        }
        return result
    }

    /// Prometheus' `histogram_quantile` over the buckets' increase: linear within the bucket that holds the rank.
    static func quantiles(_ series: Series, q: Double, previous: [PrometheusSample], current: [PrometheusSample]) -> [String: Double] {
        let increased = increases(series, family: series.family + "_bucket", previous: previous, current: current, extra: "le")
        var buckets: [String: [(bound: Double, count: Double)]] = [:]
        for (key, count) in increased {
            let parts = key.split(separator: "\u{0}", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let bound = PrometheusSample.number(String(parts[1])) else { continue }
            buckets[String(parts[0]), default: []].append((bound, count))
        }
        var result: [String: Double] = [:]
        for (group, unsorted) in buckets {
            let sorted = unsorted.sorted { $0.bound < $1.bound }
            guard let total = sorted.last?.count, total > 0 else { continue }
            let rank = q * total
            var lower = 0.0
            var below = 0.0
            for bucket in sorted {
                if bucket.count >= rank {
                    guard bucket.bound.isFinite else { result[group] = lower; break }
                    let inBucket = bucket.count - below
                    result[group] = inBucket > 0 ? lower + (bucket.bound - lower) * (rank - below) / inBucket : bucket.bound
                    break
                }
                lower = bucket.bound.isFinite ? bucket.bound : lower
                below = bucket.count
            }
        }
        return result
    }
}
