import Foundation
import Testing

/// The positive control of `scripts/tsan`: a deliberate data race, run only when the script asks for it
/// (TROUPE_TSAN_CONTROL=1), which must produce a ThreadSanitizer report — proof that the sanitizer is live in
/// the build whose suites then report nothing. In every other run it is off.
@Suite("ThreadSanitizer control")
struct ThreadSanitizerControlTests {
    final class Unguarded: @unchecked Sendable { var value = 0 }

    @Test("a deliberate data race (only for scripts/tsan's control run)",
          .enabled(if: ProcessInfo.processInfo.environment["TROUPE_TSAN_CONTROL"] == "1", "runs only as scripts/tsan's control"))
    func deliberateRace() async {
        let shared = Unguarded()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<2 { group.addTask { for _ in 0..<1_000 { shared.value += 1 } } }
        }
        #expect(shared.value > 0)
    }
}
