import Foundation
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
}

extension RuntimeClock {
    /// The operating system's time of day.
    public var wallClockMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
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

    /// How many tasks are sleeping on this clock (a test waits for the sleeper it expects before moving time).
    public var sleepers: Int { state.withLock { $0.sleepers.count } }

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
        let due = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.now = state.now + duration
            let now = state.now
            let ready = state.sleepers.filter { $0.value.deadline <= now }.sorted { $0.value.deadline < $1.value.deadline }
            for (id, _) in ready { state.sleepers[id] = nil }
            return ready.map(\.value.continuation)
        }
        for continuation in due { continuation.resume() }
    }
}
