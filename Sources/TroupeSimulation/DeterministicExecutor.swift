@_spi(ExperimentalCustomExecutors) @_spi(ExperimentalScheduling) public import _Concurrency
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import TroupeCore

/// The one queue every job of a simulated process runs from: tasks, actors and (through ``pump``) the
/// simulated network's event loop, all on the thread that calls ``runLoop()``.
///
/// Ready jobs are picked with the seeded generator, not in arrival order, so that a seed explores one
/// interleaving and replays it exactly. Time is virtual: when nothing is ready, it jumps to the earliest
/// timer. Determinism holds while every job is enqueued from the simulation thread itself — the simulation
/// starts no other thread (no NIO event loop group, no timer thread) and counts stray sleeps it had to
/// convert from real time (``convertedSleeps``).
public final class SimulationScheduler: Sendable {
    enum Kind { case main, task }
    private enum Work {
        case job(UnownedJob, Kind)
        case action(@Sendable () -> Void)
    }
    private struct Timer {
        var at: Int64
        var seq: UInt64
        var work: Work
    }
    private struct State: ~Copyable {
        var ready: [(UnownedJob, Kind)] = []
        var timers: [Timer] = []
        var cancelled: Set<UInt64> = []
        var seq: UInt64 = 0
        var now: Int64 = 0
        var stopped = false
        var steps: UInt64 = 0
        var random = SplitMix(seed: 0)
        var convertedSleeps = 0
        var pump: (@Sendable () -> Void)?
        var advanced: (@Sendable (Int64) -> Void)?
    }

    private let state = Mutex(State())
    /// Set by TROUPE_SIMULATION_STRICT: a sleep on a real clock traps (its backtrace names the caller).
    static let strict = getenv("TROUPE_SIMULATION_STRICT") != nil

    init() {}

    /// Restarts the job choice from `seed` (call before the simulated work starts).
    public func seed(_ seed: UInt64) { state.withLock { $0.random = SplitMix(seed: seed) } }

    /// Called before every pick (runs the simulated network's event loop).
    public func setPump(_ pump: (@Sendable () -> Void)?) { state.withLock { $0.pump = pump } }

    /// Called with the new virtual time whenever time moves.
    public func setAdvanced(_ advanced: (@Sendable (Int64) -> Void)?) { state.withLock { $0.advanced = advanced } }

    /// Virtual nanoseconds since the simulation started.
    public var now: Int64 { state.withLock { $0.now } }
    /// Jobs run so far.
    public var steps: UInt64 { state.withLock { $0.steps } }
    /// Sleeps on a real clock whose deadline had to be converted to virtual time (rounded to milliseconds).
    public var convertedSleeps: Int { state.withLock { $0.convertedSleeps } }

    func enqueue(_ job: UnownedJob, _ kind: Kind) {
        state.withLock { $0.ready.append((job, kind)) }
    }

    func enqueue(_ job: UnownedJob, _ kind: Kind, afterNanoseconds delay: Int64, converted: Bool = false) {
        if converted, Self.strict { fatalError("a sleep on a real clock in the simulation (TROUPE_SIMULATION_STRICT is set)") }
        state.withLock { state in
            if converted { state.convertedSleeps += 1 }
            state.seq += 1
            Self.push(Timer(at: state.now + max(0, delay), seq: state.seq, work: .job(job, kind)), into: &state.timers)
        }
    }

    /// Runs `action` on the simulation thread when virtual time reaches `at`; returns an id for ``cancel(_:)``.
    @discardableResult
    public func schedule(atNanoseconds at: Int64, _ action: @escaping @Sendable () -> Void) -> UInt64 {
        state.withLock { state in
            state.seq += 1
            Self.push(Timer(at: max(at, state.now), seq: state.seq, work: .action(action)), into: &state.timers)
            return state.seq
        }
    }

    /// Cancels a scheduled action (no effect once it ran).
    public func cancel(_ id: UInt64) { _ = state.withLock { $0.cancelled.insert(id) } }

    /// A uniformly chosen value below `bound` from the job-choice generator's stream.
    func pick(_ bound: Int) -> Int { state.withLock { Int($0.random.next() % UInt64(bound)) } }

    /// Ends ``runLoop()`` after the current job.
    public func stop() { state.withLock { $0.stopped = true } }

    /// Runs jobs until ``stop()`` or until nothing is ready and no timer is left (everything blocked).
    public func runLoop() {
        while true {
            let pump = state.withLock { $0.pump }
            pump?()
            enum Next { case run(UnownedJob, Kind), advanced, idle, stopped }
            let next = state.withLock { state -> Next in
                if state.stopped { return .stopped }
                if !state.ready.isEmpty {
                    let index = Int(state.random.next() % UInt64(state.ready.count))
                    state.ready.swapAt(index, state.ready.count - 1)
                    let (job, kind) = state.ready.removeLast()
                    state.steps += 1
                    return .run(job, kind)
                }
                return state.timers.isEmpty ? .idle : .advanced
            }
            switch next {
            case .run(let job, let kind):
                switch kind {
                case .main: job.runSynchronously(on: SimulationExecutors.mainInstance.asUnownedSerialExecutor())
                case .task: job.runSynchronously(on: SimulationExecutors.taskInstance.asUnownedTaskExecutor())
                }
            case .advanced:
                fireEarliestTimers()
            case .idle, .stopped:
                return
            }
        }
    }

    /// Moves time to the earliest timer and fires every timer due then, in the order they were set.
    private func fireEarliestTimers() {
        let (due, now, advanced) = state.withLock { state -> ([Work], Int64, (@Sendable (Int64) -> Void)?) in
            guard let first = state.timers.first else { return ([], state.now, nil) }
            state.now = max(state.now, first.at)
            var due: [Work] = []
            while let top = state.timers.first, top.at <= state.now {
                let timer = Self.pop(from: &state.timers)
                if state.cancelled.remove(timer.seq) != nil { continue }
                due.append(timer.work)
            }
            return (due, state.now, state.advanced)
        }
        advanced?(now)
        for work in due {
            switch work {
            case .job(let job, let kind): enqueue(job, kind)
            case .action(let action): action()
            }
        }
    }

    // MARK: - Heap on (at, seq)

    private static func less(_ a: Timer, _ b: Timer) -> Bool { a.at != b.at ? a.at < b.at : a.seq < b.seq }

    private static func push(_ timer: Timer, into heap: inout [Timer]) {
        heap.append(timer)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard less(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func pop(from heap: inout [Timer]) -> Timer {
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count, less(heap[left], heap[smallest]) { smallest = left }
            if right < heap.count, less(heap[right], heap[smallest]) { smallest = right }
            guard smallest != parent else { return top }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}

/// SplitMix64, inline (the scheduler's own stream, separate from the simulation's).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Converts a clock's delay or deadline to virtual nanoseconds. Durations convert exactly; a deadline on a
/// real clock (a stray `Task.sleep(until:)`) is taken relative to that clock's now and rounded up to whole
/// milliseconds, which keeps it deterministic while less than a millisecond of real time passed since the
/// deadline was computed.
private func virtualDelay<C: Clock>(after delay: C.Duration, clock: C) -> Int64 {
    (delay as? Duration).map { $0.nanoseconds } ?? 0
}

private func virtualDelay<C: Clock>(until instant: C.Instant, clock: C) -> Int64 {
    let remaining: Duration
    if let instant = instant as? ContinuousClock.Instant {
        remaining = instant - ContinuousClock.now
    } else if let instant = instant as? SuspendingClock.Instant {
        remaining = instant - SuspendingClock.now
    } else {
        return 0
    }
    let millisecond: Int64 = 1_000_000
    let nanoseconds = max(0, remaining.nanoseconds)
    return (nanoseconds + millisecond - 1) / millisecond * millisecond
}

/// The main executor of a simulated process (its `run()` is the simulation's loop).
final class SimulationMainExecutor: MainExecutor, SchedulingExecutor, Sendable {
    let scheduler: SimulationScheduler

    init(scheduler: SimulationScheduler) { self.scheduler = scheduler }

    func enqueue(_ job: consuming ExecutorJob) { scheduler.enqueue(UnownedJob(job), .main) }

    func enqueue<C: Clock>(_ job: consuming ExecutorJob, after delay: C.Duration, tolerance: C.Duration?, clock: C) {
        scheduler.enqueue(UnownedJob(job), .main, afterNanoseconds: virtualDelay(after: delay, clock: clock))
    }

    func enqueue<C: Clock>(_ job: consuming ExecutorJob, at instant: C.Instant, tolerance: C.Duration?, clock: C) {
        scheduler.enqueue(UnownedJob(job), .main, afterNanoseconds: virtualDelay(until: instant, clock: clock), converted: true)
    }

    func run() throws { scheduler.runLoop() }
    func stop() { scheduler.stop() }
    var isMainExecutor: Bool { true }
    func checkIsolated() {}
}

/// The default (global) executor of a simulated process: the same queue as the main executor.
final class SimulationTaskExecutor: TaskExecutor, SchedulingExecutor, Sendable {
    let scheduler: SimulationScheduler

    init(scheduler: SimulationScheduler) { self.scheduler = scheduler }

    func enqueue(_ job: consuming ExecutorJob) { scheduler.enqueue(UnownedJob(job), .task) }

    func enqueue<C: Clock>(_ job: consuming ExecutorJob, after delay: C.Duration, tolerance: C.Duration?, clock: C) {
        scheduler.enqueue(UnownedJob(job), .task, afterNanoseconds: virtualDelay(after: delay, clock: clock))
    }

    func enqueue<C: Clock>(_ job: consuming ExecutorJob, at instant: C.Instant, tolerance: C.Duration?, clock: C) {
        scheduler.enqueue(UnownedJob(job), .task, afterNanoseconds: virtualDelay(until: instant, clock: clock), converted: true)
    }
}

/// The executors a simulation binary installs (its `DefaultExecutorFactory` returns these): one scheduler.
public enum SimulationExecutors {
    /// The one scheduler every simulated task runs on.
    public static let scheduler = SimulationScheduler()
    static let mainInstance = SimulationMainExecutor(scheduler: scheduler)
    static let taskInstance = SimulationTaskExecutor(scheduler: scheduler)
    /// The main executor the simulation binary installs.
    @_spi(Simulation) public static var main: any MainExecutor { mainInstance }
    /// The task executor the simulation binary installs.
    @_spi(Simulation) public static var task: any TaskExecutor { taskInstance }
}
