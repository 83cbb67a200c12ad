import Synchronization

/// A value behind a mutex, as a reference that closures and tasks can share.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Guarded<Value>

    public init(_ value: Value) {
        self.mutex = Guarded(value)
    }

    public func withLock<Result: Sendable>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try mutex.withLock { value in try body(&value) }
    }

    public var value: Value { mutex.withLock { $0 } }
}
