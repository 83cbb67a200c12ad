import Synchronization
public import TroupeCore

/// The runtime clock of a simulation: virtual time from the scheduler; a sleep is a timer that fires when
/// the simulation reaches its deadline (at once in wall time).
public struct SimulationClock: RuntimeClock {
    let scheduler: SimulationScheduler
    /// The instant virtual time 0 stands for.
    let origin: ContinuousClock.Instant

    /// A clock reading `scheduler`'s virtual time, which starts at `origin`.
    public init(scheduler: SimulationScheduler, origin: ContinuousClock.Instant = .now) {
        self.scheduler = scheduler
        self.origin = origin
    }

    /// `origin` plus the virtual time that has passed.
    public var now: ContinuousClock.Instant { origin + .nanoseconds(scheduler.now) }

    /// 2026-01-01T00:00:00Z plus the virtual time: the same in every replay.
    public var wallClockMilliseconds: Int64 { 1_767_225_600_000 + scheduler.now / 1_000_000 }

    /// Virtual nanoseconds of `instant`.
    func nanoseconds(_ instant: ContinuousClock.Instant) -> Int64 { (instant - origin).nanoseconds }

    /// A timer of the scheduler: its action runs on the simulation thread when virtual time reaches `deadline`.
    public func timer(at deadline: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) -> RuntimeTimer? {
        let id = scheduler.schedule(atNanoseconds: nanoseconds(deadline), action)
        return RuntimeTimer { [scheduler] in scheduler.cancel(id) }
    }

    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        let at = nanoseconds(deadline)
        guard at > scheduler.now else {
            try Task.checkCancellation()
            return
        }
        let sleeper = Sleeper()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                guard sleeper.set(continuation) else {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                let timer = scheduler.schedule(atNanoseconds: at) { sleeper.resume(nil) }
                sleeper.setTimer(timer)
            }
        } onCancel: {
            if let timer = sleeper.resume(CancellationError()) { scheduler.cancel(timer) }
        }
    }
}

/// One sleep's continuation, resumed once: by its timer or by cancellation, whichever comes first.
private final class Sleeper: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Void, any Error>?
        var timer: UInt64?
        var finished = false
    }
    private let state = Mutex(State())

    /// False when cancellation came first.
    func set(_ continuation: CheckedContinuation<Void, any Error>) -> Bool {
        state.withLock { state in
            guard !state.finished else { return false }
            state.continuation = continuation
            return true
        }
    }

    func setTimer(_ timer: UInt64) { state.withLock { $0.timer = timer } }

    /// Resumes (with `error`, or normally) unless already done; returns the timer to cancel.
    @discardableResult
    func resume(_ error: (any Error)?) -> UInt64? {
        let (continuation, timer) = state.withLock { state -> (CheckedContinuation<Void, any Error>?, UInt64?) in
            guard !state.finished else { return (nil, nil) }
            state.finished = true
            defer { state.continuation = nil }
            return (state.continuation, state.timer)
        }
        if let error { continuation?.resume(throwing: error) } else { continuation?.resume() }
        return timer
    }
}
