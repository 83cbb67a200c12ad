public import NIOCore
import Synchronization
import TroupeCore

/// Suspends the current task for `duration`, timed by `loop`'s own timer; the task resumes on its own
/// executor. `Task.sleep` arms a timer on the global executor's timer thread, which wakes when it fires and
/// then wakes a pool thread to resume the task; a loop that is awake anyway serves the timer without either
/// (and a task running on that loop resumes there without a thread hop).
/// - Throws: `CancellationError` when the task is cancelled first.
public func sleep(for duration: Duration, timerOn loop: any EventLoop) async throws {
    let nanoseconds = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    let timer = LoopTimer()
    try await withTaskCancellationHandler {
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            let scheduled = loop.scheduleTask(in: .nanoseconds(nanoseconds)) {}
            scheduled.futureResult.whenComplete { result in
                switch result {
                case .success: continuation.resume()
                case .failure: continuation.resume(throwing: CancellationError())
                }
            }
            timer.armed(scheduled)
        }
    } onCancel: {
        timer.cancel()
    }
}

/// The scheduled task of one sleep, cancellable from any thread, whichever comes first.
private final class LoopTimer: Sendable {
    private enum State { case idle, armed(Scheduled<Void>), cancelled }
    private let state = Guarded(State.idle)

    func armed(_ scheduled: Scheduled<Void>) {
        let cancelled = state.withLock { state -> Bool in
            if case .cancelled = state { return true }
            state = .armed(scheduled)
            return false
        }
        if cancelled { scheduled.cancel() }
    }

    func cancel() {
        let scheduled = state.withLock { state -> Scheduled<Void>? in
            defer { state = .cancelled }
            if case .armed(let scheduled) = state { return scheduled }
            return nil
        }
        scheduled?.cancel()
    }
}
