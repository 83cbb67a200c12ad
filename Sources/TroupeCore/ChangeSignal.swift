import Synchronization

/// Wakes waiters when something changes: `wait(after:timeout:)` returns as soon as `notify()` moves
/// the version on, or at the timeout — no polling.
public final class ChangeSignal: Sendable {
    /// One wait: registered before its task suspends, so that a notification, its timer or a cancellation
    /// arriving first is not lost.
    private struct Waiter {
        /// Set once the task has suspended.
        var continuation: CheckedContinuation<Bool, Never>?
        /// Ended before the task suspended (and whether by its timer).
        var ended = false
        var endedByTimer = false
    }

    private struct State {
        var version: UInt64 = 0
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
    }

    private let state = Guarded(State())

    /// A signal at version 0 with no waiters.
    public init() {}

    /// How many times ``notify()`` was called (wrapping); pass it to `wait(after:timeout:)`.
    public var version: UInt64 { state.withLock { $0.version } }

    /// Moves the version on and wakes every waiter.
    public func notify() {
        let suspended = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.version &+= 1
            var suspended: [CheckedContinuation<Bool, Never>] = []
            for (id, waiter) in state.waiters {
                if let continuation = waiter.continuation {
                    suspended.append(continuation)
                    state.waiters[id] = nil
                } else {
                    state.waiters[id]!.ended = true
                }
            }
            return suspended
        }
        for continuation in suspended { continuation.resume(returning: false) }
    }

    /// Returns when the version moves past `version`, after `timeout` on `clock`, or on cancellation.
    ///
    /// On a clock that sets timers (the system's, a ``ManualClock``, a simulation's) the wait is one
    /// suspension, ended by whichever comes first; on another clock a child task sleeps beside it.
    public func wait(after version: UInt64, timeout: Duration, clock: any RuntimeClock = SystemRuntimeClock()) async {
        guard timeout > .zero else { return }
        let deadline = clock.now + timeout
        let registered = state.withLock { state -> UInt64? in
            guard state.version == version else { return nil }
            state.nextWaiter &+= 1
            state.waiters[state.nextWaiter] = Waiter()
            return state.nextWaiter
        }
        guard let id = registered else { return }
        if let timer = clock.timer(at: deadline, { [self] in end(id, byTimer: true) }) {
            if await !suspend(id) { timer.cancel() }
        } else {
            // The sleeper is a child of this call's group: cancelled once the wait ends, awaited before it returns.
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    try? await clock.sleep(until: deadline)
                    self.end(id, byTimer: true)
                }
                _ = await suspend(id)
                group.cancelAll()
            }
        }
    }

    /// Suspends until the wait `id` ends; returns whether its timer ended it.
    private func suspend(_ id: UInt64) async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let endedEarly = state.withLock { state -> Bool? in
                    guard let waiter = state.waiters[id] else { return false }
                    if waiter.ended || Task.isCancelled {
                        state.waiters[id] = nil
                        return waiter.endedByTimer
                    }
                    state.waiters[id]!.continuation = continuation
                    return nil
                }
                if let endedEarly { continuation.resume(returning: endedEarly) }
            }
        } onCancel: {
            end(id, byTimer: false)
        }
    }

    /// Ends the wait `id` (its timer fired, or its task was cancelled); no effect when it had ended.
    private func end(_ id: UInt64, byTimer: Bool) {
        let suspended = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard let waiter = state.waiters[id] else { return nil }
            if let continuation = waiter.continuation {
                state.waiters[id] = nil
                return continuation
            }
            if !waiter.ended {
                state.waiters[id]!.ended = true
                state.waiters[id]!.endedByTimer = byTimer
            }
            return nil
        }
        suspended?.resume(returning: byTimer)
    }
}
