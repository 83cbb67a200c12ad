/// A counting semaphore for tasks: at most `count` permits are out at a time; `acquire()` suspends (no
/// polling, no thread blocked) until one is returned, first come first served, and gives up when its task is
/// cancelled.
public final class AsyncPermits: Sendable {
    private struct State {
        var available: Int
        var nextWaiter: UInt64 = 0
        /// Waiting tasks in arrival order.
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Bool, Never>)] = []
    }

    private let state: Guarded<State>
    /// The number of permits in all (fixed at creation).
    public let count: Int

    /// Permits for `count` holders at a time; `count` must be at least 1.
    public init(_ count: Int) {
        precondition(count > 0, "AsyncPermits needs at least one permit")
        self.count = count
        state = Guarded(State(available: count))
    }

    /// Permits not taken right now.
    public var available: Int { state.withLock { $0.available } }

    /// Takes a permit, waiting for one if none is free. Returns false, holding nothing, if the task was
    /// cancelled before it got one.
    public func acquire() async -> Bool {
        if state.withLock({ state -> Bool in
            guard state.available > 0, state.waiters.isEmpty else { return false }
            state.available -= 1
            return true
        }) { return true }
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let resumeNow: Bool? = state.withLock { state in
                    if Task.isCancelled { return false }
                    if state.available > 0, state.waiters.isEmpty {
                        state.available -= 1
                        return true
                    }
                    state.waiters.append((id, continuation))
                    return nil
                }
                if let resumeNow { continuation.resume(returning: resumeNow) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index).continuation
            }
            waiter?.resume(returning: false)
        }
    }

    /// Returns a permit: the longest-waiting task gets it.
    public func release() {
        let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if state.waiters.isEmpty {
                precondition(state.available < count, "AsyncPermits: more permits returned than taken")
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst().continuation
        }
        next?.resume(returning: true)
    }
}
