public import Logging
public import ServiceLifecycle
import TroupeActors
import TroupeCore

/// Services that can only be built once other services of the group run (a shop needs its MongoDB client
/// running before it can read the catalog): `build` is retried with backoff for up to `deadline`, then the
/// services it returned run as a nested group until shutdown.
public struct LateServices: Service {
    let name: String
    let logger: Logger
    /// How long `build` is retried (a minute by default).
    public var deadline: Duration = .seconds(60)
    let build: @Sendable () async throws -> [any Service]

    /// Services named `name` (in its log lines) that `build` makes once the group's others run.
    public init(name: String, logger: Logger, build: @escaping @Sendable () async throws -> [any Service]) {
        self.name = name
        self.logger = logger
        self.build = build
    }

    /// Builds the services (retrying), runs them until the graceful shutdown.
    public func run() async throws {
        let services: [any Service]
        do {
            // A stop asked while the servers are still awaited ends the wait at once (SIGTERM at any time).
            services = try await cancelWhenGracefulShutdown { try await self.buildWithRetries() }
        } catch where Task.isShuttingDownGracefully {
            logger.notice("\(name) stopped before it was ready")
            return
        }
        logger.notice("\(name) ready")
        guard !services.isEmpty else {
            try await gracefulShutdown()
            return
        }
        try await ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: logger)).run()
    }

    /// Builds the services, retrying with backoff until `deadline`; each failed attempt is logged once, at the step
    /// it waits for (100 ms doubling to 5 s: a dozen lines a minute at most).
    private func buildWithRetries() async throws -> [any Service] {
        let stop = ContinuousClock.now + deadline
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        while true {
            do {
                return try await build()
            } catch {
                try Task.checkCancellation()
                guard ContinuousClock.now < stop else {
                    throw ActorSystemError(.timeout, "\(name) could not start within \(deadline): \(error)", underlying: error)
                }
                let pause = backoff.next()
                logger.warning("\(name) is waiting for its servers", metadata: [
                    "error": "\(error)", "retry.in_ms": "\(Int(pause.components.seconds * 1000 + pause.components.attoseconds / 1_000_000_000_000_000))",
                ])
                try await Task.sleep(for: pause)
            }
        }
    }
}
