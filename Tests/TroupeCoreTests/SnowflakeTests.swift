import Foundation
import Synchronization
import Testing
import TroupeCore

final class ManualClock: MillisecondClock, Sendable {
    let now = Guarded<Int64>(1_800_000_000_000)
    func nowMilliseconds() -> Int64 { now.withLock { $0 } }
    func set(_ value: Int64) { now.withLock { $0 = value } }
}

@Suite("Snowflake ids")
struct SnowflakeTests {
    @Test("1,000,000 ids from 4 concurrent generators are unique and increasing per generator")
    func uniqueAndIncreasing() async throws {
        let generators = try (0..<4).map { try SnowflakeGenerator(workerID: $0 * 100 + 1) }
        let perGenerator = 250_000
        let batches = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for generator in generators {
                group.addTask {
                    var ids = [Int64]()
                    ids.reserveCapacity(perGenerator)
                    for _ in 0..<perGenerator { ids.append(try generator.next()) }
                    return ids
                }
            }
            return try await group.reduce(into: [[Int64]]()) { $0.append($1) }
        }
        var all = Set<Int64>()
        for ids in batches {
            #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 }, "ids of one generator increase")
            all.formUnion(ids)
        }
        #expect(all.count == 4 * perGenerator)
        let parts = SnowflakeGenerator.decompose(batches[0][0])
        #expect([1, 101, 201, 301].contains(parts.workerID))
    }

    @Test("4,096 ids per millisecond, then the generator waits for the next millisecond")
    func sequenceExhaustion() throws {
        let clock = ManualClock()
        let generator = try SnowflakeGenerator(workerID: 7, clock: clock)
        var ids = [Int64]()
        for _ in 0..<4096 { ids.append(try generator.next()) }
        #expect(SnowflakeGenerator.decompose(ids.last!).sequence == 4095)
        // The 4,097th id needs the next millisecond: move the clock from another thread while it waits.
        let mover = Thread { usleep(20_000); clock.set(clock.nowMilliseconds() + 1) }
        mover.start()
        let next = try generator.next()
        let parts = SnowflakeGenerator.decompose(next)
        #expect(parts.sequence == 0)
        #expect(parts.timestampMS == clock.nowMilliseconds())
        #expect(next > ids.last!)
    }

    @Test("a small backward clock step is waited out; a large one is refused with a clear error")
    func clockBack() throws {
        let clock = ManualClock()
        let generator = try SnowflakeGenerator(workerID: 1, maxBackwardStep: .milliseconds(5), clock: clock)
        let first = try generator.next()
        clock.set(clock.nowMilliseconds() - 3)
        let mover = Thread { usleep(20_000); clock.set(clock.nowMilliseconds() + 4) }
        mover.start()
        let second = try generator.next()
        #expect(second > first, "the small step was waited out")
        clock.set(clock.nowMilliseconds() - 1_000)
        let error = #expect(throws: SnowflakeError.self) { try generator.next() }
        #expect(error?.kind == .clockMovedBackwards)
        #expect(error?.message.contains("moved back 1000 ms") == true)
        #expect(throws: SnowflakeError.self) { try SnowflakeGenerator(workerID: 1024) }
    }
}
