import Dispatch
import Foundation
import Synchronization
/// Where a runtime reads the time and sleeps: the system's monotonic clock in production, a clock moved by
/// hand in tests and simulations (``ManualClock``), so that timeouts, idleness and sweeps can be exercised
/// without waiting for them. Instants are `ContinuousClock.Instant`s either way.
public protocol RuntimeClock: Sendable {
    /// The current instant.
    var now: ContinuousClock.Instant { get }
    /// Suspends until `deadline` (at once when it has passed); throws `CancellationError` when cancelled.
    func sleep(until deadline: ContinuousClock.Instant) async throws
    /// Milliseconds since 1970 (times that are stored and outlive the process: saga deadlines, order times).
    var wallClockMilliseconds: Int64 { get }
    /// Calls `action` once when the clock reaches `deadline` (soon, when it has passed) unless the timer is
    /// cancelled first; nil when this clock cannot set timers, and the caller sleeps in a task instead.
    ///
    /// A timer is what a wait with a deadline needs when something else may end it first: one callback,
    /// where a sleep needs a task of its own to run beside the waiter.
    func timer(at deadline: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) -> RuntimeTimer?
}

/// A callback set on a ``RuntimeClock`` with `timer(at:_:)`.
public struct RuntimeTimer: Sendable {
    private let cancelAction: @Sendable () -> Void

    /// A timer that `cancel` stops.
    public init(cancel: @escaping @Sendable () -> Void) { cancelAction = cancel }

    /// Stops the timer; its action does not run if it had not started. No effect once it ran.
    public func cancel() { cancelAction() }
}

extension RuntimeClock {
    /// The operating system's time of day.
    public var wallClockMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// No timers: a clock that does not provide them is waited on by sleeping.
    public func timer(at deadline: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) -> RuntimeTimer? { nil }
}

extension RuntimeClock {
    /// Suspends for `duration` from now.
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now + duration)
    }
}

/// The system's monotonic clock (`ContinuousClock`).
public struct SystemRuntimeClock: RuntimeClock {
    /// The system's monotonic clock.
    public init() {}

    /// Now, on the monotonic clock.
    public var now: ContinuousClock.Instant { .now }

    /// Sleeps until `deadline`; throws `CancellationError` when the task is cancelled.
    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await Task.sleep(until: deadline, clock: .continuous)
    }

    /// A timer on a global dispatch queue (the queues Swift's global executor also times its sleeps on). A
    /// cancelled timer still wakes at its deadline, and then does nothing.
    public func timer(at deadline: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) -> RuntimeTimer? {
        let cancelled = CancelFlag()
        let delay = max(Duration.zero, deadline - .now)
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(clamping: delay.nanoseconds))) {
            if !cancelled.flag.load(ordering: .acquiring) { action() }
        }
        return RuntimeTimer { cancelled.flag.store(true, ordering: .releasing) }
    }
}

private final class CancelFlag: Sendable {
    let flag = Atomic(false)
}

/// A clock that moves only when told (``advance(by:)``): sleepers wake, earliest first, when the time they wait
/// for is reached. Starts at the system clock's now.
public final class ManualClock: RuntimeClock {
    private struct State: ~Copyable {
        var now: ContinuousClock.Instant
        var sleepers: [UInt64: (deadline: ContinuousClock.Instant, continuation: CheckedContinuation<Void, any Error>)] = [:]
        /// Sleepers cancelled before they were registered (an id whose cancellation came after `advance` woke
        /// it stays here: one entry per such race, harmless).
        var cancelled: Set<UInt64> = []
        var timers: [UInt64: (deadline: ContinuousClock.Instant, action: @Sendable () -> Void)] = [:]
        var nextID: UInt64 = 0
    }

    private let state: Guarded<State>
    private let start: ContinuousClock.Instant
    private let startWallClock = Int64((Date().timeIntervalSince1970 * 1000).rounded())

    /// A clock standing at `start` until moved.
    public init(start: ContinuousClock.Instant = .now) {
        self.start = start
        state = Guarded(State(now: start))
    }

    /// The time of day when the clock was made, moved with it.
    public var wallClockMilliseconds: Int64 { startWallClock + (now - start).nanoseconds / 1_000_000 }

    /// The clock's time: `start` plus every ``advance(by:)`` so far.
    public var now: ContinuousClock.Instant { state.withLock { $0.now } }

    /// How many tasks are sleeping on this clock and timers are set on it (a test waits for the sleeper it
    /// expects before moving time).
    public var sleepers: Int { state.withLock { $0.sleepers.count + $0.timers.count } }

    /// A timer that ``advance(by:)`` fires when it moves the clock to `deadline` or past it (at once if it is there).
    public func timer(at deadline: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) -> RuntimeTimer? {
        let id = state.withLock { state -> UInt64? in
            guard deadline > state.now else { return nil }
            state.nextID += 1
            state.timers[state.nextID] = (deadline, action)
            return state.nextID
        }
        guard let id else {
            action()
            return RuntimeTimer {}
        }
        return RuntimeTimer { [self] in _ = state.withLock { $0.timers.removeValue(forKey: id) } }
    }

    /// Suspends until the clock is moved to `deadline` or past it (at once if it is there); throws
    /// `CancellationError` when the task is cancelled.
    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Outcome { case wait, due, cancelled }
                let outcome = state.withLock { state -> Outcome in
                    if state.cancelled.remove(id) != nil { return .cancelled }
                    if deadline <= state.now { return .due }
                    state.sleepers[id] = (deadline, continuation)
                    return .wait
                }
                switch outcome {
                case .wait: break
                case .due: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard let sleeper = state.sleepers.removeValue(forKey: id) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return sleeper.continuation
            }
            sleeper?.resume(throwing: CancellationError())
        }
    }

    /// Moves the time forward by `duration` and wakes the sleepers now due, earliest first.
    public func advance(by duration: Duration) {
        let due = state.withLock { state -> [@Sendable () -> Void] in
            state.now = state.now + duration
            let now = state.now
            var ready: [(deadline: ContinuousClock.Instant, id: UInt64, wake: @Sendable () -> Void)] = []
            for (id, sleeper) in state.sleepers where sleeper.deadline <= now {
                ready.append((sleeper.deadline, id, { [continuation = sleeper.continuation] in continuation.resume() }))
            }
            for (id, timer) in state.timers where timer.deadline <= now { ready.append((timer.deadline, id, timer.action)) }
            ready.sort { ($0.deadline, $0.id) < ($1.deadline, $1.id) }
            for entry in ready {
                state.sleepers[entry.id] = nil
                state.timers[entry.id] = nil
            }
            return ready.map(\.wake)
        }
        for wake in due { wake() }
    }
}
