import Synchronization
import TroupeCore

/// A FIFO async mutex: holders may suspend while holding it (an SQLite transaction spans awaits).
final class AsyncLock: Sendable {
    private struct State {
        var held = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Guarded(State())

    func lock() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { state -> Bool in
                if state.held {
                    state.waiters.append(continuation)
                    return false
                }
                state.held = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    func unlock() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.held = false
                return nil
            }
            return state.waiters.removeFirst()  // ownership passes straight to the next waiter
        }
        next?.resume()
    }
}

/// A FIFO async readers–writer lock: any number of shared holders, or one exclusive holder. Waiters are
/// served in arrival order (a waiting exclusive holder stops later shared ones from overtaking it).
final class AsyncSharedLock: Sendable {
    private struct Waiter {
        var exclusive: Bool
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var shared = 0
        var exclusive = false
        var waiters: [Waiter] = []

        func canGrant(exclusive wantsExclusive: Bool) -> Bool {
            guard waiters.isEmpty, !exclusive else { return false }
            return wantsExclusive ? shared == 0 : true
        }

        /// Whom to wake now that the lock was released.
        mutating func grantWaiting() -> [CheckedContinuation<Void, Never>] {
            var granted: [CheckedContinuation<Void, Never>] = []
            while let first = waiters.first, !exclusive {
                if first.exclusive {
                    guard shared == 0 else { break }
                    exclusive = true
                } else {
                    shared += 1
                }
                granted.append(waiters.removeFirst().continuation)
            }
            return granted
        }
    }

    private let state = Guarded(State())

    func lock(exclusive: Bool) async {
        let granted = state.withLock { state -> Bool in
            guard state.canGrant(exclusive: exclusive) else { return false }
            if exclusive { state.exclusive = true } else { state.shared += 1 }
            return true
        }
        if granted { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.canGrant(exclusive: exclusive) {
                    if exclusive { state.exclusive = true } else { state.shared += 1 }
                    return true
                }
                state.waiters.append(Waiter(exclusive: exclusive, continuation: continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }

    func unlock(exclusive: Bool) {
        let wake = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if exclusive { state.exclusive = false } else { state.shared -= 1 }
            return state.grantWaiting()
        }
        for continuation in wake { continuation.resume() }
    }
}
