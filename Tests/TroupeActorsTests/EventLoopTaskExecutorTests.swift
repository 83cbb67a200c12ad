import NIOCore
import NIOPosix
import Testing
@testable import TroupeActors
import TroupeNIO

@Suite("EventLoopTaskExecutor")
struct EventLoopTaskExecutorTests {
    @Test("a task preferring the executor runs on its loop, before and after suspensions")
    func runsOnLoop() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let executor = EventLoopTaskExecutor(loop)
        let observed = await withTaskExecutorPreference(executor) { () async -> [Bool] in
            var seen = [loop.inEventLoop]
            await Task.yield()
            seen.append(loop.inEventLoop)
            try? await Task.sleep(for: .milliseconds(5))
            seen.append(loop.inEventLoop)
            return seen
        }
        #expect(observed == [true, true, true])
        #expect(!loop.inEventLoop, "outside the preference the test runs on the pool again")
    }

    @Test("child tasks of a group inherit the loop; different loops stay apart")
    func childTasks() async throws {
        let loops = [MultiThreadedEventLoopGroup.singleton.next(), MultiThreadedEventLoopGroup.singleton.next()]
        let results = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<20 {
                let loop = loops[i % 2]
                group.addTask(executorPreference: EventLoopTaskExecutor(loop)) {
                    await Task.yield()
                    return loop.inEventLoop
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.count == 20 && results.allSatisfy { $0 })
    }
}
