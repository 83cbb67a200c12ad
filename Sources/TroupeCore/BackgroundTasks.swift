/// Work started in the background that belongs to a running service instead of to nobody: a job is tracked
/// from ``spawn(_:)`` until it ends, and when the service stops (its `run()` ends with ``stop()``) every job still
/// running is cancelled and waited for — at most `grace`, since a job may not react to cancellation — and later
/// jobs are refused.
///
/// ```swift
/// // anywhere in the service:
/// background.spawn { await self.retryLater() }
/// // at the end of the service's run():
/// await background.stop()
/// ```
public final class BackgroundTasks: Sendable {
    /// A unit of background work of an actor system.
    public typealias Job = @Sendable () async -> Void

    private struct State {
        var stopped = false
        var nextID: UInt64 = 0
        var running: [UInt64: Task<Void, Never>] = [:]
        /// Callers of ``stop()`` waiting for the running jobs to end.
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Guarded(State())
    private let grace: Duration
    private let clock: any RuntimeClock

    /// - Parameters:
    ///   - grace: how long ``stop()`` waits for the cancelled jobs to end.
    ///   - clock: the clock `grace` is measured on.
    public init(grace: Duration = .seconds(5), clock: any RuntimeClock = SystemRuntimeClock()) {
        self.grace = grace
        self.clock = clock
    }

    /// How many jobs are running.
    public var count: Int { state.withLock { $0.running.count } }

    /// Starts `job`. Returns false, dropping the job, once the owner has stopped.
    @discardableResult
    public func spawn(_ job: @escaping Job) -> Bool {
        state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.nextID &+= 1
            let id = state.nextID
            // Unstructured, but owned here: created under the lock (so `stop` cannot miss it), kept until it
            // ends (it removes itself), cancelled and waited for by `stop`.
            state.running[id] = Task {
                await job()
                self.ended(id)
            }
            return true
        }
    }

    private func ended(_ id: UInt64) {
        let none = state.withLock { state -> Bool in
            state.running[id] = nil
            return state.running.isEmpty
        }
        if none { releaseWaiters() }
    }

    private func releaseWaiters() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Refuses new jobs, cancels the running ones and waits (at most `grace`, also when the caller is cancelled)
    /// until they have ended. Returns how many were still running when the wait gave up.
    @discardableResult
    public func stop() async -> Int {
        let running = state.withLock { state -> [Task<Void, Never>] in
            state.stopped = true
            return Array(state.running.values)
        }
        guard !running.isEmpty else { return 0 }
        for task in running { task.cancel() }
        // The grace period runs in its own task so that a cancelled caller still waits it out (a child task
        // would be cancelled with the caller). It is cancelled before `stop` returns, and a cancelled timer
        // releases nothing.
        let timer = Task { [grace, clock] in
            do { try await clock.sleep(for: grace) } catch { return }
            self.releaseWaiters()
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                guard !state.running.isEmpty else { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
        timer.cancel()
        return count
    }
}
