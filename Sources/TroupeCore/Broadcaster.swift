import Synchronization

/// A value that changes over time and the subscribers that follow it: each subscriber gets the
/// current value first, then every later one (a slow subscriber skips to the newest).
///
/// Subscribers are resumed outside the value's lock, but in update order (a separate delivery
/// lock): resuming a consumer can take the runtime's task-status lock, which a concurrent
/// cancellation holds while it runs `onTermination` — and that takes the value's lock.
public final class Broadcaster<Value: Sendable>: Sendable {
    private struct State {
        var value: Value
        var subscribers: [Int: AsyncStream<Value>.Continuation] = [:]
        var next = 0
    }

    private let state: Guarded<State>
    private let delivery = Guarded(())

    /// A broadcaster holding `initial` until the first update.
    public init(_ initial: Value) {
        state = Guarded(State(value: initial))
    }

    /// The current value.
    public var value: Value { state.withLock { $0.value } }

    /// Changes the value and delivers the result to every subscriber.
    public func update(_ body: (inout Value) -> Void) {
        delivery.withLock { _ in
            let (value, subscribers) = state.withLock { state in
                body(&state.value)
                return (state.value, Array(state.subscribers.values))
            }
            for subscriber in subscribers { subscriber.yield(value) }
        }
    }

    /// Replaces the value and delivers it to every subscriber.
    public func set(_ value: Value) {
        update { $0 = value }
    }

    /// The current value, then every later one, until the consumer stops iterating or ``finish()``.
    public func subscribe() -> AsyncStream<Value> {
        let (stream, continuation) = AsyncStream.makeStream(of: Value.self, bufferingPolicy: .bufferingNewest(1))
        let id = delivery.withLock { _ in
            let (id, value) = state.withLock { state in
                let id = state.next
                state.next += 1
                state.subscribers[id] = continuation
                return (id, state.value)
            }
            continuation.yield(value)
            return id
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    /// Ends every subscription.
    public func finish() {
        let subscribers = state.withLock { state in
            defer { state.subscribers.removeAll() }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
    }
}
