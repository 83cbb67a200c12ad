import Synchronization
import TroupeCore

/// Mutual exclusion by name with fencing tokens; engines: ``EtcdCoordinator`` and ``InProcessCoordinator``.
public protocol LockCoordinator: Sendable {
    /// Runs `body` while holding the lock `name`; `body` receives the fencing token of this acquisition.
    func withLock<T: Sendable>(
        _ name: String, ttl: Duration, timeout: Duration, _ body: @escaping @Sendable (_ fencingToken: Int64) async throws -> T
    ) async throws -> T
}

extension EtcdCoordinator: LockCoordinator {
    public func withLock<T: Sendable>(
        _ name: String, ttl: Duration, timeout: Duration, _ body: @escaping @Sendable (_ fencingToken: Int64) async throws -> T
    ) async throws -> T {
        try await withLock(name, ttl: ttl, timeout: timeout) { (lease: EtcdLockLease) in try await body(lease.fencingToken) }
    }
}

/// A ``LockCoordinator`` inside one process (tests, `troupe demo`): waiters are served in arrival
/// order, tokens grow with every acquisition, and a holder's `ttl` bounds how long it can block others.
public final class InProcessCoordinator: LockCoordinator {
    private struct Lock {
        var holder: Int64?
        var expiresAt: ContinuousClock.Instant = .now
        var queue: [Int64] = []
    }

    private let state = Guarded<(locks: [String: Lock], tokens: Int64)>(([:], 0))
    /// The value of each election's current leader (see ``ElectionCoordinator``).
    let leaders = Broadcaster<[String: String]>([:])

    /// An in-process coordinator with no locks held.
    public init() {}

    public func withLock<T: Sendable>(
        _ name: String, ttl: Duration, timeout: Duration, _ body: @escaping @Sendable (_ fencingToken: Int64) async throws -> T
    ) async throws -> T {
        let token = state.withLock { state -> Int64 in
            state.tokens += 1
            state.locks[name, default: Lock()].queue.append(state.tokens)
            return state.tokens
        }
        let deadline = ContinuousClock.now + timeout
        var backoff = Backoff(initial: .microseconds(200), maximum: .milliseconds(20))
        while true {
            let now = ContinuousClock.now
            let acquired = state.withLock { state -> Bool in
                var lock = state.locks[name, default: Lock()]
                if let holder = lock.holder, lock.expiresAt <= now {
                    lock.queue.removeAll { $0 == holder }  // the holder outlived its ttl
                    lock.holder = nil
                }
                guard lock.holder == nil, lock.queue.first == token else {
                    state.locks[name] = lock
                    return false
                }
                lock.holder = token
                lock.expiresAt = now + ttl
                state.locks[name] = lock
                return true
            }
            if acquired { break }
            guard now < deadline else {
                state.withLock { $0.locks[name]?.queue.removeAll { $0 == token } }
                throw CoordinationError(message: "lock \(name) not acquired within \(timeout)")
            }
            try await Task.sleep(for: backoff.next())
        }
        defer {
            state.withLock { state in
                guard var lock = state.locks[name] else { return }
                if lock.holder == token { lock.holder = nil }
                lock.queue.removeAll { $0 == token }
                state.locks[name] = lock
            }
        }
        return try await body(token)
    }
}

/// A lock that could not be acquired in time (in-process engine).
public struct CoordinationError: Error, CustomStringConvertible {
    /// What was not acquired and how long was waited.
    public var message: String
    public var description: String { message }
}
