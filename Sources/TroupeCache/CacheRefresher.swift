public import Logging
public import ServiceLifecycle
import Synchronization
import TroupeCore

/// Runs the background refreshes of logically expired cache entries, at most one per key at a time.
/// A `Service`: put it in your `ServiceGroup` (refreshes submitted before `run()` wait for it).
public final class CacheRefresher: Service, Sendable {
    /// A refresh to run in the background (reloading one cache entry).
    public typealias Job = @Sendable () async throws -> Void

    private let jobs: AsyncStream<(String, Job)>
    private let continuation: AsyncStream<(String, Job)>.Continuation
    private let running = Guarded<Set<String>>([])
    private let logger: Logger
    private let completed = Atomic<Int>(0)

    /// A refresher logging failed refreshes to `logger` (default: nowhere).
    public init(logger: Logger = Logger(label: "troupe.cache", factory: { _ in SwiftLogNoOpLogHandler() })) {
        (jobs, continuation) = AsyncStream.makeStream(of: (String, Job).self)
        self.logger = logger
    }

    /// Queues `job` unless a refresh of `key` is already queued or running.
    public func submit(key: String, _ job: @escaping Job) {
        let fresh = running.withLock { $0.insert(key).inserted }
        guard fresh else { return }
        continuation.yield((key, job))
    }

    /// Refreshes completed (successfully or not) since start.
    public var refreshesCompleted: Int { completed.load(ordering: .relaxed) }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            for await (key, job) in jobs.cancelOnGracefulShutdown() {
                group.addTask {
                    do {
                        try await job()
                    } catch {
                        self.logger.info("cache refresh failed", metadata: ["cache.key": "\(key)", "error": "\(String(reflecting: error))"])
                    }
                    _ = self.running.withLock { $0.remove(key) }
                    self.completed.add(1, ordering: .relaxed)
                }
            }
        }
    }

    /// Stops accepting refreshes; `run()` returns once the running ones finish.
    public func shutdown() {
        continuation.finish()
    }
}
