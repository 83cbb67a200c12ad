import Testing
import TroupeCore

@Suite("BackgroundTasks")
struct BackgroundTasksTests {
    @Test("jobs run while the owner runs; stopping cancels them, waits for them and refuses new ones")
    func ownedByTheRun() async throws {
        let tasks = BackgroundTasks()
        let log = Locked<[String]>([])
        #expect(tasks.spawn { log.withLock { $0.append("quick") } })
        #expect(tasks.spawn {
            // Runs until cancelled, then records that it saw the cancellation.
            while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(5)) }
            log.withLock { $0.append("cancelled") }
        })
        let deadline = ContinuousClock.now + .seconds(5)
        while tasks.count > 1, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(tasks.count == 1, "the quick job ended and left; the long one runs")
        await tasks.stop()
        #expect(tasks.count == 0, "stop() returned only after its jobs ended")
        #expect(log.withLock { $0 } == ["quick", "cancelled"])
        #expect(!tasks.spawn { log.withLock { $0.append("late") } }, "a stopped owner refuses new jobs")
        try await Task.sleep(for: .milliseconds(20))
        #expect(!log.withLock { $0 }.contains("late"))
    }

    @Test("a job that ignores cancellation holds the stop for the grace period only")
    func graceBoundsTheWait() async throws {
        let tasks = BackgroundTasks(grace: .milliseconds(200))
        let release = Locked(false)
        tasks.spawn {
            while !release.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
        }
        let started = ContinuousClock.now
        let left = await tasks.stop()
        let waited = ContinuousClock.now - started
        #expect(left == 1, "reported as still running")
        #expect(waited >= .milliseconds(200) && waited < .seconds(3), "waited the grace period, not forever: \(waited)")
        release.withLock { $0 = true }
    }
}
