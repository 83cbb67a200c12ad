import Metrics
import Foundation
import Instrumentation
import Logging
import OTel
import ServiceLifecycle
import Synchronization
import Troupe

/// What the executable reports besides `/metrics`: traces, metrics and logs over OTLP when OpenTelemetry's
/// standard variables ask for them, and logs as text or JSON on standard error.
///
/// - OTLP: set `OTEL_EXPORTER_OTLP_ENDPOINT` (or a signal's own, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
///   `…_METRICS_ENDPOINT`, `…_LOGS_ENDPOINT`); `OTEL_TRACES_EXPORTER=none` (or METRICS, LOGS) leaves one out. Metrics
///   are exported every `OTEL_METRIC_EXPORT_INTERVAL` ms (60 s by default) besides `/metrics`; log records at the
///   process's level go out besides standard error, with the trace and span ids of the span they were made in.
///   The protocol is
///   `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` by default, or `http/protobuf`), the service name `OTEL_SERVICE_NAME`
///   (default `troupe-<command>`), the batch delay `OTEL_BSP_SCHEDULE_DELAY`, and so on as OpenTelemetry
///   defines them. Trace context crosses processes in W3C `traceparent` (HTTP, actor calls, bus messages).
/// - Logs: `TROUPE_LOG_FORMAT=json` writes one JSON object a line (`JSONLogHandler`); `TROUPE_LOG_LEVEL`
///   overrides `--log-level`. While traces are exported, every record made inside a span carries its
///   `trace_id` and `span_id`.
enum Observability {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// Whether the environment asks for `signal` (TRACES, METRICS, LOGS) over OTLP: an endpoint is set (the common
    /// one or the signal's own) and `OTEL_<signal>_EXPORTER` is not `none` — OpenTelemetry's defaults.
    static func requested(_ signal: String) -> Bool {
        let env = environment
        guard env["OTEL_\(signal)_EXPORTER"] != "none", env["OTEL_SDK_DISABLED"] != "true" else { return false }
        return env["OTEL_EXPORTER_OTLP_ENDPOINT"] != nil || env["OTEL_EXPORTER_OTLP_\(signal)_ENDPOINT"] != nil
    }

    static var tracingRequested: Bool { requested("TRACES") }

    /// The OTLP backends for metrics and logs that ``withTelemetry(service:instance:_:)`` made, for the bootstraps
    /// run inside it (`bootstrapLogging`, `bootstrapMetrics`). Set once per process, before either bootstrap.
    static let otlp = Mutex<(logs: (@Sendable (String) -> any LogHandler)?, metrics: (any MetricsFactory)?)>((nil, nil))

    /// Runs `body` with what the environment asks to export over OTLP — traces (the tracer is bootstrapped
    /// here), metrics (beside Prometheus' `/metrics`) and logs (beside standard error) — and their exporters
    /// running; after `body` the exporters flush what they hold (a graceful stop) before this returns.
    /// The service is named `service` (`service.instance.id` is `instance`) unless the environment says otherwise.
    static func withTelemetry<T: Sendable>(service: String, instance: String?, _ body: @Sendable () async throws -> T) async throws -> T {
        var configuration = OTel.Configuration.default
        configuration.serviceName = service
        if let instance { configuration.resourceAttributes["service.instance.id"] = instance }
        var exporters: [any Service] = []
        /// The configuration with only `signal` on (each backend is made by its own call).
        func only(_ signal: WritableKeyPath<OTel.Configuration, Bool>) -> OTel.Configuration {
            var one = configuration
            one.traces.enabled = false
            one.metrics.enabled = false
            one.logs.enabled = false
            one[keyPath: signal] = true
            return one
        }
        if requested("TRACES") {
            let (tracer, exporter) = try OTel.makeTracingBackend(configuration: only(\.traces.enabled))
            InstrumentationSystem.bootstrap(tracer)
            exporters.append(exporter)
        }
        if requested("METRICS") {
            let (factory, exporter) = try OTel.makeMetricsBackend(configuration: only(\.metrics.enabled))
            otlp.withLock { $0.metrics = factory }
            exporters.append(exporter)
        }
        if requested("LOGS") {
            let (factory, exporter) = try OTel.makeLoggingBackend(configuration: only(\.logs.enabled))
            otlp.withLock { $0.logs = factory }
            exporters.append(exporter)
        }
        guard !exporters.isEmpty else { return try await body() }
        let group = ServiceGroup(configuration: .init(services: exporters.map { .init(service: $0) }, logger: Logger(label: "troupe.otel")))
        return try await withThrowingTaskGroup(of: T?.self) { tasks in
            tasks.addTask { try await group.run(); return nil }
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return try result.get()
        }
    }

    /// The log handler factory for `level` (`TROUPE_LOG_LEVEL` wins) in the format `TROUPE_LOG_FORMAT` names.
    static func logHandler(level: Logger.Level) -> @Sendable (String) -> any LogHandler {
        let env = environment
        let level = env["TROUPE_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? level
        let provider: Logger.MetadataProvider? = tracingRequested ? OTel.makeLoggingMetadataProvider() : nil
        if env["TROUPE_LOG_FORMAT"]?.lowercased() == "json" {
            return { label in JSONLogHandler(label: label, level: level, metadataProvider: provider) }
        }
        return { label in
            var handler = StreamLogHandler.standardError(label: label, metadataProvider: provider)
            handler.logLevel = level
            return handler
        }
    }
}
