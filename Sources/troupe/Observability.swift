import Foundation
import Instrumentation
import Logging
import OTel
import ServiceLifecycle
import Troupe

/// What the executable reports besides `/metrics`: traces over OTLP when OpenTelemetry's standard variables
/// ask for them, and logs as text or JSON.
///
/// - Traces: set `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); the protocol is
///   `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` by default, or `http/protobuf`), the service name `OTEL_SERVICE_NAME`
///   (default `troupe-<command>`), the batch delay `OTEL_BSP_SCHEDULE_DELAY`, and so on as OpenTelemetry
///   defines them. Trace context crosses processes in W3C `traceparent` (HTTP, actor calls, bus messages).
/// - Logs: `TROUPE_LOG_FORMAT=json` writes one JSON object a line (`JSONLogHandler`); `TROUPE_LOG_LEVEL`
///   overrides `--log-level`. While traces are exported, every record made inside a span carries its
///   `trace_id` and `span_id`.
enum Observability {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// Whether the environment asks for traces over OTLP.
    static var tracingRequested: Bool {
        let env = environment
        guard env["OTEL_TRACES_EXPORTER"] != "none" else { return false }
        return env["OTEL_EXPORTER_OTLP_ENDPOINT"] != nil || env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != nil
    }

    /// Runs `body` with the tracer bootstrapped and its exporter running when traces are requested; after
    /// `body` the exporter flushes what it holds (a graceful stop) before this returns.
    /// The service is named `service` (`service.instance.id` is `instance`) unless the environment says otherwise.
    static func withTracing<T: Sendable>(service: String, instance: String?, _ body: @Sendable () async throws -> T) async throws -> T {
        guard tracingRequested else { return try await body() }
        var configuration = OTel.Configuration.default
        configuration.serviceName = service
        if let instance { configuration.resourceAttributes["service.instance.id"] = instance }
        // Metrics are Prometheus' (/metrics) and logs go to standard error; only traces leave over OTLP.
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        let (tracer, exporter) = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(tracer)
        let group = ServiceGroup(configuration: .init(services: [exporter], logger: Logger(label: "troupe.otel")))
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
