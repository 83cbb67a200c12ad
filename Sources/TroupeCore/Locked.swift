import Synchronization

/// A value behind a mutex, as a reference that closures and tasks can share.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Guarded<Value>

    /// A lock holding `value`.
    public init(_ value: Value) {
        self.mutex = Guarded(value)
    }

    /// Runs `body` with exclusive access to the value.
    public func withLock<Result: Sendable>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try mutex.withLock { value in try body(&value) }
    }

    /// A copy of the value.
    public var value: Value { mutex.withLock { $0 } }
}
