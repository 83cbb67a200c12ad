import NIOCore
import NIOPosix
import Testing
import TroupeNIO

@Suite("Sleeping on an event loop's timer")
struct LoopSleepTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test("a task on the loop: at least the duration, resumed on that loop")
    func onLoop() async throws {
        let executor = EventLoopTaskExecutor(loop)
        let (elapsed, resumedOnLoop) = try await withTaskExecutorPreference(executor) { () async throws -> (Duration, Bool) in
            #expect(loop.inEventLoop)
            let start = ContinuousClock.now
            try await sleep(for: .milliseconds(30), timerOn: loop)
            return (ContinuousClock.now - start, loop.inEventLoop)
        }
        #expect(elapsed >= .milliseconds(30))
        #expect(elapsed < .seconds(5))
        #expect(resumedOnLoop)
    }

    @Test("a task on the pool: at least the duration, resumed on the pool")
    func offLoop() async throws {
        let start = ContinuousClock.now
        try await sleep(for: .milliseconds(20), timerOn: loop)
        #expect(ContinuousClock.now - start >= .milliseconds(20))
        #expect(MultiThreadedEventLoopGroup.currentEventLoop == nil)
    }

    @Test("cancellation ends the sleep at once with CancellationError, before or during it")
    func cancellation() async throws {
        let loop = self.loop
        let sleeper = Task { () async throws -> Void in try await sleep(for: .seconds(30), timerOn: loop) }
        try await Task.sleep(for: .milliseconds(20))
        let start = ContinuousClock.now
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        #expect(ContinuousClock.now - start < .seconds(5))

        let cancelledFirst = Task { () async throws -> Void in
            withUnsafeCurrentTask { $0?.cancel() }
            try await sleep(for: .seconds(30), timerOn: loop)
        }
        await #expect(throws: CancellationError.self) { try await cancelledFirst.value }
    }
}
