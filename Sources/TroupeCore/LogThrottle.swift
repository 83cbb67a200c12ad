/// Which occurrences of a repeated log message to write: the first at once, then at most one per `interval`,
/// each saying how many were held back since the one before — so that a loop retrying every 100 ms against a
/// server that is down writes a line every 30 s, not 300. ``reset()`` after a success: the next failure is
/// written at once. A value owned by the loop that logs (see ``SharedLogThrottle`` for one shared by tasks).
///
/// ```swift
/// var throttle = LogThrottle()
/// …
/// if let held = throttle.admit(now: clock.now) { logger.warning("read failed", metadata: ["log.suppressed": "\(held)"]) }
/// ```
public struct LogThrottle: Sendable {
    /// The least time between two occurrences written.
    public let interval: Duration
    private var lastWritten: ContinuousClock.Instant?
    private var held = 0

    /// A throttle writing at most one occurrence per `interval` (default 30 s).
    public init(interval: Duration = .seconds(30)) {
        self.interval = interval
    }

    /// nil: hold this occurrence back; else write it, noting the number held back since the last one written.
    public mutating func admit(now: ContinuousClock.Instant) -> Int? {
        if let lastWritten, now - lastWritten < interval {
            held += 1
            return nil
        }
        defer { held = 0 }
        lastWritten = now
        return held
    }

    /// The trouble is over: the next occurrence is written at once.
    public mutating func reset() {
        lastWritten = nil
        held = 0
    }
}

/// A ``LogThrottle`` shared by the tasks of one component (each message's task of a consumer, say).
public final class SharedLogThrottle: Sendable {
    private let throttle: Guarded<LogThrottle>

    /// A shared throttle writing at most one occurrence per `interval` (default 30 s).
    public init(interval: Duration = .seconds(30)) {
        throttle = Guarded(LogThrottle(interval: interval))
    }

    /// See ``LogThrottle/admit(now:)``.
    public func admit(now: ContinuousClock.Instant = .now) -> Int? { throttle.withLock { $0.admit(now: now) } }

    /// See ``LogThrottle/reset()``.
    public func reset() { throttle.withLock { $0.reset() } }
}
