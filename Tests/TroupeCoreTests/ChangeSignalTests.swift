import Testing
import TroupeCore

/// A clock that sleeps but sets no timers (the protocol's default): waits on it take the sleeping path.
private struct SleepOnlyClock: RuntimeClock {
    let base: TroupeCore.ManualClock
    var now: ContinuousClock.Instant { base.now }
    func sleep(until deadline: ContinuousClock.Instant) async throws { try await base.sleep(until: deadline) }
}

@Suite("ChangeSignal")
struct ChangeSignalTests {
    /// Waits (bounded) until `clock` has `count` sleepers and timers.
    private func waitForSleepers(_ clock: TroupeCore.ManualClock, _ count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while clock.sleepers != count {
            #expect(ContinuousClock.now < deadline, "expected \(count) sleeper(s) on the clock, have \(clock.sleepers)")
            if ContinuousClock.now >= deadline { return }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    @Test("a notification ends every wait long before its timeout, and their timers are let go")
    func notifyWakesAll() async throws {
        let clock = TroupeCore.ManualClock()
        let signal = ChangeSignal()
        let version = signal.version
        let waits = (0..<4).map { _ in Task { await signal.wait(after: version, timeout: .seconds(60), clock: clock) } }
        try await waitForSleepers(clock, 4)
        signal.notify()
        for wait in waits { await wait.value }
        #expect(signal.version == version &+ 1)
        #expect(clock.sleepers == 0, "a woken wait cancels its timer")
    }

    @Test("without a notification a wait ends when the clock reaches its timeout, not before")
    func timeoutOnTheClock() async throws {
        let clock = TroupeCore.ManualClock()
        let signal = ChangeSignal()
        let ended = Locked(false)
        let wait = Task {
            await signal.wait(after: signal.version, timeout: .seconds(5), clock: clock)
            ended.withLock { $0 = true }
        }
        try await waitForSleepers(clock, 1)
        clock.advance(by: .seconds(4))
        try await Task.sleep(for: .milliseconds(20))
        #expect(!ended.withLock { $0 }, "4 of 5 s: still waiting")
        clock.advance(by: .seconds(1))
        await wait.value
        #expect(ended.withLock { $0 })
        #expect(clock.sleepers == 0)
    }

    @Test("a wait on a version already passed, or with no time left, returns at once")
    func alreadyChanged() async throws {
        let clock = TroupeCore.ManualClock()
        let signal = ChangeSignal()
        let old = signal.version
        signal.notify()
        await signal.wait(after: old, timeout: .seconds(60), clock: clock)
        await signal.wait(after: signal.version, timeout: .zero, clock: clock)
        #expect(clock.sleepers == 0, "neither wait set a timer")
    }

    @Test("cancelling the waiting task ends its wait at once")
    func cancellation() async throws {
        let clock = TroupeCore.ManualClock()
        let signal = ChangeSignal()
        let wait = Task { await signal.wait(after: signal.version, timeout: .seconds(60), clock: clock) }
        try await waitForSleepers(clock, 1)
        wait.cancel()
        await wait.value
        #expect(clock.sleepers == 0)
        // Cancelled before it started: returns without waiting.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await signal.wait(after: signal.version, timeout: .seconds(60), clock: clock)
        }
        await early.value
    }

    @Test("on a clock without timers a wait sleeps beside itself: it times out and is woken alike")
    func clockWithoutTimers() async throws {
        let base = TroupeCore.ManualClock()
        let clock = SleepOnlyClock(base: base)
        #expect(clock.timer(at: clock.now + .seconds(1), {}) == nil)
        let signal = ChangeSignal()
        let timedOut = Task { await signal.wait(after: signal.version, timeout: .seconds(2), clock: clock) }
        try await waitForSleepers(base, 1)
        base.advance(by: .seconds(2))
        await timedOut.value
        let woken = Task { await signal.wait(after: signal.version, timeout: .seconds(60), clock: clock) }
        try await waitForSleepers(base, 1)
        signal.notify()
        await woken.value
        try await waitForSleepers(base, 0)
    }

    @Test("on the system clock the timeout is real time")
    func systemClock() async throws {
        let signal = ChangeSignal()
        let started = ContinuousClock.now
        await signal.wait(after: signal.version, timeout: .milliseconds(50))
        let took = ContinuousClock.now - started
        #expect(took >= .milliseconds(45) && took < .seconds(5), "took \(took)")
        let wait = Task { await signal.wait(after: signal.version, timeout: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(20))
        let notified = ContinuousClock.now
        signal.notify()
        await wait.value
        #expect(ContinuousClock.now - notified < .seconds(5))
    }
}

@Suite("Eventual")
struct EventualTests {
    @Test("a value set later reaches the waiter; without one the wait ends at its deadline with nil")
    func setLater() async throws {
        let port = Eventual<Int>()
        #expect(port.current == nil)
        let waiter = Task { await port.value(within: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(20))
        port.set(8080)
        #expect(await waiter.value == 8080)
        #expect(await port.value(within: .zero) == 8080, "known: no wait")
        let started = ContinuousClock.now
        #expect(await Eventual<String>().value(within: .milliseconds(50)) == nil)
        #expect(ContinuousClock.now - started < .seconds(5))
    }
}
