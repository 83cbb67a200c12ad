import Testing
import TroupeCore

@Suite("Repeated log messages")
struct LogThrottleTests {
    @Test("the first is written, then one per interval with how many were held back; a reset writes the next at once")
    func throttle() {
        var throttle = LogThrottle(interval: .seconds(30))
        let start = ContinuousClock.now
        #expect(throttle.admit(now: start) == 0)
        for second in 1..<30 { #expect(throttle.admit(now: start + .seconds(second)) == nil, "held back at \(second) s") }
        #expect(throttle.admit(now: start + .seconds(30)) == 29, "29 held back since the first")
        #expect(throttle.admit(now: start + .seconds(31)) == nil)
        throttle.reset()
        #expect(throttle.admit(now: start + .seconds(32)) == 0, "after a success the next failure is written at once")
        let shared = SharedLogThrottle(interval: .seconds(30))
        #expect(shared.admit(now: start) == 0)
        #expect(shared.admit(now: start + .seconds(1)) == nil)
        #expect(shared.admit(now: start + .seconds(31)) == 1)
    }
}
