public import CoreMetrics
import Foundation
public import Prometheus
public import TroupeCore

/// swift-metrics onto a Prometheus registry the way Troupe's executables bootstrap it: every family of
/// `MetricFamilies` gets its HELP line, duration histograms have buckets from 100 µs to 10 s
/// (`MetricFamilies/durationBuckets`), and ``scrape()`` adds the process' own figures (CPU, memory, open
/// files) before it renders the text a Prometheus server reads.
///
/// ```swift
/// let metrics = TroupeMetricsFactory()
/// MetricsSystem.bootstrap(metrics)          // once, in the executable
/// … serve metrics.scrape() on /metrics
/// ```
public struct TroupeMetricsFactory: MetricsFactory {
    /// The registry the metrics are kept in (its text is what ``scrape()`` renders).
    public let registry: PrometheusCollectorRegistry
    private let help: [String: String]
    private let process: ProcessMetrics

    /// - Parameters:
    ///   - registry: the registry the metrics are kept in.
    ///   - families: the families to describe (Troupe's, plus an application's own).
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), families: [MetricFamily] = MetricFamilies.all) {
        self.registry = registry
        self.help = Dictionary(families.map { ($0.name, $0.help) }, uniquingKeysWith: { first, _ in first })
        self.process = ProcessMetrics(registry: registry)
    }

    /// The Prometheus text of every metric, with the process' figures read now.
    public func scrape() -> String {
        process.update()
        return registry.emitToString()
    }

    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help[label] ?? "")
    }

    /// swift-metrics' requirement: a counter of the registry.
    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    /// swift-metrics' requirement: a floating-point counter of the registry.
    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    /// swift-metrics' requirement: a gauge, or a histogram when `aggregate` (Troupe's buckets).
    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(descriptor: descriptor(label), labels: dimensions, buckets: Self.valueBuckets)
    }

    /// swift-metrics' requirement: a gauge that moves up and down.
    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    /// swift-metrics' requirement: a duration histogram (buckets from 100 µs to 10 s).
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: MetricFamilies.durationBuckets)
    }

    /// swift-metrics' requirement: forgets a counter.
    public func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    /// swift-metrics' requirement: forgets a floating-point counter.
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    /// swift-metrics' requirement: forgets a recorder.
    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
        if let histogram = handler as? ValueHistogram { registry.unregisterValueHistogram(histogram) }
    }

    /// swift-metrics' requirement: forgets a meter.
    public func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    /// swift-metrics' requirement: forgets a timer.
    public func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? DurationHistogram { registry.unregisterDurationHistogram(histogram) }
    }

    static let valueBuckets: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000]
}

/// The process' own figures under the names Prometheus' client libraries use (`process_*`), read from
/// /proc on each scrape (Linux; elsewhere they are not reported).
final class ProcessMetrics: Sendable {
    private let cpu: Prometheus.Counter
    private let resident: Prometheus.Gauge
    private let virtual: Prometheus.Gauge
    private let openFiles: Prometheus.Gauge
    private let maxFiles: Prometheus.Gauge
    private let started: Prometheus.Gauge
    /// CPU seconds already added to the counter (it only grows by the difference).
    private let reported = Guarded(0.0)

    init(registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, _ help: String) -> Prometheus.Gauge {
            registry.makeGauge(descriptor: .init(metricName: name, unitName: "", helpText: help), labels: [])
        }
        cpu = registry.makeCounter(descriptor: .init(metricName: "process_cpu_seconds_total", unitName: "",
                                                     helpText: "Total user and system CPU time spent in seconds."), labels: [])
        resident = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        virtual = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
        openFiles = gauge("process_open_fds", "Number of open file descriptors.")
        maxFiles = gauge("process_max_fds", "Maximum number of open file descriptors.")
        started = gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
        started.set(Date().timeIntervalSince1970 - ProcessInfo.processInfo.systemUptime + Self.startedAfterBoot())
    }

    func update() {
        #if os(Linux)
        if let stat = Self.stat() {
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            let seconds = Double(stat.userTicks + stat.systemTicks) / ticks
            let delta = reported.withLock { reported -> Double in
                defer { reported = max(reported, seconds) }
                return max(0, seconds - reported)
            }
            if delta > 0 { cpu.increment(by: delta) }
            virtual.set(Double(stat.virtualBytes))
            resident.set(Double(stat.residentPages) * Double(sysconf(Int32(_SC_PAGESIZE))))
        }
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") { openFiles.set(Double(entries.count)) }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { maxFiles.set(Double(limit.rlim_cur)) }
        #endif
    }

    /// The fields of /proc/self/stat used here (see proc(5)): after the command name in parentheses, field 14
    /// utime, 15 stime, 22 starttime, 23 vsize, 24 rss.
    struct Stat {
        var userTicks: UInt64, systemTicks: UInt64, startTicks: UInt64, virtualBytes: UInt64, residentPages: UInt64
    }

    static func stat() -> Stat? {
        guard let text = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields from 3 (state) on; the command name may hold spaces, hence the last ")".
        let fields = text[text.index(after: close)...].split(separator: " ")
        func field(_ number: Int) -> UInt64? { number - 3 < fields.count ? UInt64(fields[number - 3]) : nil }
        guard let user = field(14), let system = field(15), let start = field(22), let vsize = field(23), let rss = field(24) else { return nil }
        return Stat(userTicks: user, systemTicks: system, startTicks: start, virtualBytes: vsize, residentPages: rss)
    }

    /// Seconds from boot to this process' start (0 where /proc is not there).
    static func startedAfterBoot() -> Double {
        #if os(Linux)
        guard let stat = stat() else { return 0 }
        return Double(stat.startTicks) / Double(sysconf(Int32(_SC_CLK_TCK)))
        #else
        return 0
        #endif
    }
}
