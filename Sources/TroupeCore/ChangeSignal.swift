import Synchronization

/// Wakes waiters when something changes: `wait(after:timeout:)` returns as soon as `notify()` moves
/// the version on, or at the timeout — no polling.
public final class ChangeSignal: Sendable {
    private struct State {
        var version: UInt64 = 0
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Guarded(State())

    /// A signal at version 0 with no waiters.
    public init() {}

    /// How many times ``notify()`` was called (wrapping); pass it to `wait(after:timeout:)`.
    public var version: UInt64 { state.withLock { $0.version } }

    /// Moves the version on and wakes every waiter.
    public func notify() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.version &+= 1
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when the version moves past `version`, after `timeout` on `clock`, or on cancellation.
    public func wait(after version: UInt64, timeout: Duration, clock: any RuntimeClock = SystemRuntimeClock()) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await clock.sleep(for: timeout) }
            group.addTask { await self.waitForChange(after: version) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForChange(after version: UInt64) async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter &+= 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.version != version || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}
