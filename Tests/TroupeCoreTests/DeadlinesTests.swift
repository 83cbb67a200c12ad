import Synchronization
import Testing
import TroupeCore

@Suite("Deadlines (the shared timer thread)")
struct DeadlinesTests {
    /// Waits until `action`'s timer fires and returns how long that took.
    static func fired(after duration: Duration, on deadlines: Deadlines = .shared) async -> Duration {
        let start = ContinuousClock.now
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            _ = deadlines.arm(after: duration) { continuation.resume() }
        }
        return ContinuousClock.now - start
    }

    @Test("a deadline fires once it has passed, not before")
    func fires() async {
        let elapsed = await Self.fired(after: .milliseconds(50))
        #expect(elapsed >= .milliseconds(50))
        #expect(elapsed < .seconds(1))
    }

    @Test("disarmed deadlines never fire; disarm reports whether the deadline was still armed")
    func disarmed() async throws {
        let count = Atomic(0)
        let timers = (0..<2_000).map { _ in Deadlines.shared.arm(after: .milliseconds(30)) { count.add(1, ordering: .relaxed) } }
        #expect(timers.allSatisfy { $0.disarm() })
        #expect(!timers[0].disarm())
        let probe = Deadlines.shared.arm(after: .milliseconds(10)) { count.add(1_000_000, ordering: .relaxed) }
        try await Task.sleep(for: .milliseconds(150))
        #expect(count.load(ordering: .relaxed) == 1_000_000)  // only the probe
        #expect(!probe.disarm())
    }

    @Test("an earlier deadline armed while the thread sleeps until a later one still fires on time")
    func earlierWakes() async {
        let late = Deadlines.shared.arm(after: .seconds(30)) {}
        defer { late.disarm() }
        let elapsed = await Self.fired(after: .milliseconds(40))
        #expect(elapsed >= .milliseconds(40))
        #expect(elapsed < .seconds(1))
    }

    @Test("1,000 deadlines at random instants fire in a burst, each once")
    func many() async throws {
        let fired = Guarded<[Int: Int]>([:])
        for index in 0..<1_000 {
            _ = Deadlines.shared.arm(after: .milliseconds(Int.random(in: 1...80))) { fired.withLock { $0[index, default: 0] += 1 } }
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while fired.withLock({ $0.count }) < 1_000, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(fired.withLock { $0.count } == 1_000)
        #expect(fired.withLock { $0.values.allSatisfy { $0 == 1 } })
    }
}
