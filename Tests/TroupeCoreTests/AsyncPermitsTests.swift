import Testing
import TroupeCore

@Suite("AsyncPermits")
struct AsyncPermitsTests {
    @Test("never more holders than permits; every waiter gets one as permits come back")
    func bounded() async throws {
        let permits = AsyncPermits(3)
        let holders = Locked((now: 0, most: 0, done: 0))
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<50 {
                group.addTask {
                    guard await permits.acquire() else { return }
                    holders.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
                    try? await Task.sleep(for: .milliseconds(2))
                    holders.withLock { $0.now -= 1; $0.done += 1 }
                    permits.release()
                }
            }
        }
        let seen = holders.withLock { $0 }
        #expect(seen.done == 50)
        #expect(seen.most == 3, "the bound was reached and never passed: \(seen.most)")
        #expect(permits.available == 3)
    }

    @Test("waiters are served in arrival order")
    func fifo() async throws {
        let permits = AsyncPermits(1)
        #expect(await permits.acquire())
        let order = Locked<[Int]>([])
        let waiting = Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<5 {
                group.addTask {
                    waiting.withLock { $0 += 1 }
                    #expect(await permits.acquire())
                    order.withLock { $0.append(index) }
                    permits.release()
                }
                // Each waiter queues before the next one starts.
                while waiting.withLock({ $0 }) <= index { try await Task.sleep(for: .milliseconds(1)) }
                try await Task.sleep(for: .milliseconds(5))
            }
            permits.release()
            try await group.waitForAll()
        }
        #expect(order.withLock { $0 } == [0, 1, 2, 3, 4])
    }

    @Test("a cancelled waiter gives up without a permit, and the permit goes to the next one")
    func cancellation() async throws {
        let permits = AsyncPermits(1)
        #expect(await permits.acquire())
        let cancelled = Task { await permits.acquire() }
        try await Task.sleep(for: .milliseconds(20))
        cancelled.cancel()
        #expect(await cancelled.value == false)
        let next = Task { await permits.acquire() }
        try await Task.sleep(for: .milliseconds(20))
        permits.release()
        #expect(await next.value == true, "the returned permit went to the live waiter")
        #expect(permits.available == 0)
        permits.release()
        #expect(permits.available == 1)
    }
}
