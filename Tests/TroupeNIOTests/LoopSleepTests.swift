import NIOCore
import NIOPosix
import Testing
import TroupeNIO

@Suite("Sleeping on the current event loop")
struct LoopSleepTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test("on a loop: the loop's timer, at least the duration, resumed on that loop")
    func onLoop() async throws {
        let executor = EventLoopTaskExecutor(loop)
        let (elapsed, resumedOnLoop) = try await withTaskExecutorPreference(executor) { () async throws -> (Duration, Bool) in
            #expect(loop.inEventLoop)
            let start = ContinuousClock.now
            try await sleepOnCurrentEventLoop(for: .milliseconds(30))
            return (ContinuousClock.now - start, loop.inEventLoop)
        }
        #expect(elapsed >= .milliseconds(30))
        #expect(elapsed < .seconds(5))
        #expect(resumedOnLoop)
    }

    @Test("cancellation ends the sleep at once with CancellationError, before or during it")
    func cancellation() async throws {
        let executor = EventLoopTaskExecutor(loop)
        let sleeper = Task(executorPreference: executor) { () async throws -> Void in
            try await sleepOnCurrentEventLoop(for: .seconds(30))
        }
        try await Task.sleep(for: .milliseconds(20))
        let start = ContinuousClock.now
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        #expect(ContinuousClock.now - start < .seconds(5))

        let cancelledFirst = Task(executorPreference: executor) { () async throws -> Void in
            withUnsafeCurrentTask { $0?.cancel() }
            try await sleepOnCurrentEventLoop(for: .seconds(30))
        }
        await #expect(throws: CancellationError.self) { try await cancelledFirst.value }
    }

    @Test("off any loop it is Task.sleep")
    func offLoop() async throws {
        #expect(MultiThreadedEventLoopGroup.currentEventLoop == nil)
        let start = ContinuousClock.now
        try await sleepOnCurrentEventLoop(for: .milliseconds(20))
        #expect(ContinuousClock.now - start >= .milliseconds(20))
    }
}
