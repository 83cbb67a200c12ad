import Synchronization
import Testing
import TroupeCore

@Suite("Deadlines (a timer thread of its owner)")
struct DeadlinesTests {
    /// Waits until `action`'s timer fires and returns how long that took.
    static func fired(after duration: Duration, on deadlines: Deadlines) async -> Duration {
        let start = ContinuousClock.now
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            _ = deadlines.arm(after: duration) { continuation.resume() }
        }
        return ContinuousClock.now - start
    }

    @Test("a deadline fires once it has passed, not before")
    func fires() async {
        let deadlines = Deadlines(name: "test")
        defer { deadlines.stop() }
        let elapsed = await Self.fired(after: .milliseconds(50), on: deadlines)
        #expect(elapsed >= .milliseconds(50))
        #expect(elapsed < .seconds(1))
    }

    @Test("disarmed deadlines never fire; disarm reports whether the deadline was still armed")
    func disarmed() async throws {
        let deadlines = Deadlines(name: "test")
        defer { deadlines.stop() }
        let count = Atomic(0)
        let timers = (0..<2_000).map { _ in deadlines.arm(after: .milliseconds(30)) { count.add(1, ordering: .relaxed) } }
        #expect(timers.allSatisfy { $0.disarm() })
        #expect(!timers[0].disarm())
        let probe = deadlines.arm(after: .milliseconds(10)) { count.add(1_000_000, ordering: .relaxed) }
        try await Task.sleep(for: .milliseconds(150))
        #expect(count.load(ordering: .relaxed) == 1_000_000)  // only the probe
        #expect(!probe.disarm())
    }

    @Test("an earlier deadline armed while the thread sleeps until a later one still fires on time")
    func earlierWakes() async {
        let deadlines = Deadlines(name: "test")
        defer { deadlines.stop() }
        let late = deadlines.arm(after: .seconds(30)) {}
        defer { late.disarm() }
        let elapsed = await Self.fired(after: .milliseconds(40), on: deadlines)
        #expect(elapsed >= .milliseconds(40))
        #expect(elapsed < .seconds(1))
    }

    @Test("1,000 deadlines at random instants fire in a burst, each once")
    func many() async throws {
        let deadlines = Deadlines(name: "test")
        defer { deadlines.stop() }
        let fired = Guarded<[Int: Int]>([:])
        for index in 0..<1_000 {
            _ = deadlines.arm(after: .milliseconds(Int.random(in: 1...80))) { fired.withLock { $0[index, default: 0] += 1 } }
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while fired.withLock({ $0.count }) < 1_000, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(fired.withLock { $0.count } == 1_000)
        #expect(fired.withLock { $0.values.allSatisfy { $0 == 1 } })
    }

    @Test("stop: what is armed runs at once, so does what is armed afterwards (its owner is stopping: every deadline is due)")
    func stop() async {
        let deadlines = Deadlines(name: "test")
        let fired = Atomic(0)
        let armed = deadlines.arm(after: .seconds(60)) { fired.add(1, ordering: .relaxed) }
        let disarmed = deadlines.arm(after: .seconds(60)) { fired.add(100, ordering: .relaxed) }
        #expect(disarmed.disarm())
        deadlines.stop()
        #expect(fired.load(ordering: .relaxed) == 1, "the armed one ran, the disarmed one did not")
        #expect(!armed.disarm(), "it fired")
        let late = deadlines.arm(after: .seconds(60)) { fired.add(10, ordering: .relaxed) }
        #expect(fired.load(ordering: .relaxed) == 11)
        #expect(!late.disarm())
    }
}
