/// A value that becomes known once, later (a port once a listener binds, an object once the servers it reads answer),
/// awaited with a deadline.
public final class Eventual<Value: Sendable>: Sendable {
    private let value = Locked<Value?>(nil)
    private let signal = ChangeSignal()

    /// Not known yet.
    public init() {}

    /// Makes `newValue` known and wakes whoever waits for it (a later call replaces it).
    public func set(_ newValue: Value) {
        value.withLock { $0 = newValue }
        signal.notify()
    }

    /// The value if it is known now.
    public var current: Value? { value.withLock { $0 } }

    /// The value, once known; nil when it is not within `timeout`.
    public func value(within timeout: Duration) async -> Value? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let version = signal.version
            if let known = current { return known }
            guard ContinuousClock.now < deadline else { return nil }
            await signal.wait(after: version, timeout: deadline - ContinuousClock.now)
        }
    }
}
