import Foundation
import Synchronization

/// Timers for deadlines that almost never fire (step and call timeouts), on one dedicated thread.
///
/// Arming and disarming a deadline is a lock and a heap operation: no task is created, no thread is woken
/// unless the new deadline is earlier than every armed one. `Task.sleep` in a task group would instead
/// create two tasks, a dispatch timer and several executor hops for every guarded operation.
///
/// Owned, not process-wide: its owner (a `ClusterActorSystem`) starts the thread by arming the first deadline
/// and ends it with ``stop()``.
public final class Deadlines: Sendable {

    /// An armed deadline; ``disarm()`` it once the guarded operation finished.
    public struct Timer: Sendable {
        let id: UInt64
        let owner: Deadlines

        /// Cancels the deadline; true when it had not fired yet.
        @discardableResult
        public func disarm() -> Bool { owner.disarm(id) }
    }

    private struct Entry {
        var deadline: ContinuousClock.Instant
        var id: UInt64
    }

    private struct State: ~Copyable {
        var heap: [Entry] = []
        var actions: [UInt64: @Sendable () -> Void] = [:]
        var nextID: UInt64 = 1
        /// When the thread wakes next (nil: it waits for a signal).
        var sleepingUntil: ContinuousClock.Instant?
        var started = false
        var stopped = false
    }

    private let state = Guarded(State())
    private let condition = NSCondition()
    private let name: String
    /// Set for deadlines on a clock other than the system's: no thread; the owner calls ``fireDue()``.
    private let clock: (any RuntimeClock)?

    /// Deadlines on the system clock, fired by a thread of their own named `name`.
    public init(name: String) {
        self.name = name
        self.clock = nil
    }

    /// Deadlines on `clock` (a manual or simulated clock): no thread is started; the owner calls ``fireDue()``
    /// often enough for the precision it needs (the actor system does at every sweep).
    public init(drivenBy clock: any RuntimeClock) {
        self.name = "driven"
        self.clock = clock
    }

    /// Whether ``fireDue()`` must be called by the owner.
    public var isDriven: Bool { clock != nil }

    /// Runs the actions whose deadline has passed on the driving clock (driven deadlines only).
    public func fireDue() {
        guard let clock else { return }
        let now = clock.now
        let due = state.withLock { state -> [@Sendable () -> Void] in
            var due: [@Sendable () -> Void] = []
            while let top = state.heap.first, top.deadline <= now {
                let entry = Self.pop(&state.heap)
                if let action = state.actions.removeValue(forKey: entry.id) { due.append(action) }
            }
            return due
        }
        for action in due { action() }
    }

    /// Runs `action` on the timer thread at `deadline` unless disarmed first. Keep actions short
    /// (cancel a task, resume a continuation). Once stopped, every deadline is due: `action` runs at once.
    public func arm(at deadline: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) -> Timer {
        let armed = state.withLock { state -> (UInt64, Bool, Bool)? in
            guard !state.stopped else { return nil }
            let id = state.nextID
            state.nextID += 1
            state.actions[id] = action
            Self.push(Entry(deadline: deadline, id: id), into: &state.heap)
            let wake = state.sleepingUntil.map { deadline < $0 } ?? true
            let start = !state.started && clock == nil
            state.started = true
            return (id, wake, start)
        }
        guard let (id, wake, start) = armed else {
            action()
            return Timer(id: 0, owner: self)
        }
        guard clock == nil else { return Timer(id: id, owner: self) }
        if start {
            let thread = Thread { [self] in run() }
            thread.name = name
            thread.start()
        }
        if wake {
            condition.lock()
            condition.signal()
            condition.unlock()
        }
        return Timer(id: id, owner: self)
    }

    /// Ends the timer thread; what is still armed runs now (its owner is stopping: every deadline is due), and
    /// so does what is armed later.
    public func stop() {
        let due = state.withLock { state -> [@Sendable () -> Void] in
            state.stopped = true
            defer { state.actions = [:]; state.heap = [] }
            return Array(state.actions.values)
        }
        condition.lock()
        condition.signal()
        condition.unlock()
        for action in due { action() }
    }

    /// Runs `action` after `duration`.
    public func arm(after duration: Duration, _ action: @escaping @Sendable () -> Void) -> Timer {
        arm(at: (clock?.now ?? .now) + duration, action)
    }

    private func disarm(_ id: UInt64) -> Bool {
        state.withLock { state in
            let removed = state.actions.removeValue(forKey: id) != nil
            // Disarmed entries stay in the heap until they reach its top; compact when they dominate.
            if state.heap.count > 1024, state.heap.count > 4 * state.actions.count {
                let live = state.actions
                state.heap.removeAll { live[$0.id] == nil }
                Self.heapify(&state.heap)
            }
            return removed
        }
    }

    private func run() {
        while true {
            var due: [@Sendable () -> Void] = []
            // The condition's lock is held from reading the next deadline until waiting, so a signal from
            // `arm` for an earlier deadline cannot fall in between and be lost.
            condition.lock()
            let (next, stopped) = state.withLock { state -> (ContinuousClock.Instant?, Bool) in
                guard !state.stopped else { return (nil, true) }
                let now = ContinuousClock.now
                while let top = state.heap.first, top.deadline <= now {
                    let entry = Self.pop(&state.heap)
                    if let action = state.actions.removeValue(forKey: entry.id) { due.append(action) }
                }
                while let top = state.heap.first, state.actions[top.id] == nil { _ = Self.pop(&state.heap) }
                state.sleepingUntil = state.heap.first?.deadline
                return (state.sleepingUntil, false)
            }
            if stopped {
                condition.unlock()
                return
            }
            if due.isEmpty {
                if let next {
                    let wait = ContinuousClock.now.duration(to: next)
                    if wait > .zero {
                        let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
                        _ = condition.wait(until: Date(timeIntervalSinceNow: seconds))
                    }
                } else {
                    condition.wait()
                }
            }
            condition.unlock()
            for action in due { action() }
        }
    }

    // MARK: Binary min-heap on the deadline

    private static func push(_ entry: Entry, into heap: inout [Entry]) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func pop(_ heap: inout [Entry]) -> Entry {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(&heap, from: 0)
        }
        return top
    }

    private static func siftDown(_ heap: inout [Entry], from start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count, heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count, heap[right].deadline < heap[smallest].deadline { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }

    private static func heapify(_ heap: inout [Entry]) {
        guard heap.count > 1 else { return }
        for index in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(&heap, from: index) }
    }
}
