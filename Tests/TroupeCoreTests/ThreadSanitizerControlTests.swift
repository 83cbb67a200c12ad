import Foundation
import Synchronization
import Testing

/// The positive control of `scripts/tsan`: a deliberate data race, run only when the script asks for it
/// (TROUPE_TSAN_CONTROL=1), which must produce a ThreadSanitizer report — proof that the sanitizer is live in
/// the build whose suites then report nothing. In every other run it is off.
@Suite("ThreadSanitizer control")
struct ThreadSanitizerControlTests {
    final class Unguarded: @unchecked Sendable { var value = 0 }
    final class Barrier: Sendable { let arrived = Atomic<Int>(0) }

    @Test("a deliberate data race (only for scripts/tsan's control run)",
          .enabled(if: ProcessInfo.processInfo.environment["TROUPE_TSAN_CONTROL"] == "1", "runs only as scripts/tsan's control"))
    func deliberateRace() {
        // Two threads of their own (tasks could run one after the other on one pool thread), both waiting at
        // a barrier so that their loops overlap: a thread that ended before the other started can be ordered
        // by the thread library's own locks, and then there is no race to see.
        let shared = Unguarded()
        let done = DispatchSemaphore(value: 0)
        let barrier = Barrier()
        for _ in 0..<2 {
            Thread {
                barrier.arrived.add(1, ordering: .relaxed)
                while barrier.arrived.load(ordering: .relaxed) < 2 {}
                for _ in 0..<1_000_000 { shared.value += 1 }
                done.signal()
            }.start()
        }
        done.wait()
        done.wait()
        #expect(shared.value > 0)
    }
}
