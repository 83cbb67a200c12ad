import DequeModule
import TroupeRESP

/// One Redis connection's replies matched to its requests, as a pure value (no I/O, no clock).
///
/// Replies arrive in request order (pipelining). RESP3 push frames are routed by their kind, never
/// matched to the head of the queue — except the confirmations of (un)subscribe commands, which in
/// RESP3 arrive as pushes and complete the pending subscribe request once all have arrived.
/// Generic over `Promise` so tests can use plain values.
struct RedisConnectionStateMachine<Promise>: ~Copyable {
    /// What a queued request waits for.
    enum Pending {
        /// One ordinary reply.
        case reply(Promise, deadline: ContinuousClock.Instant)
        /// `count` push confirmations of kind `kind` (`subscribe`, `psubscribe`, …).
        case confirmations(kind: String, remaining: Int, Promise, deadline: ContinuousClock.Instant)
        /// The replies of a pipeline of `count` commands, completed once as an array.
        case batch(count: Int, collected: ReplyCollector, Promise, deadline: ContinuousClock.Instant)

        var deadline: ContinuousClock.Instant {
            switch self {
            case .reply(_, let deadline), .confirmations(_, _, _, let deadline), .batch(_, _, _, let deadline): deadline
            }
        }

        var promise: Promise {
            switch self {
            case .reply(let promise, _), .confirmations(_, _, let promise, _), .batch(_, _, let promise, _): promise
            }
        }
    }

    enum ReplyAction {
        case succeed(Promise, RESPValue)
        case deliverPush(RESPValue)
        case failAllAndClose([Promise], RedisError)
        case none
    }

    enum SendAction {
        case write
        case fail(RedisError)
    }

    private enum State: ~Copyable {
        case active(Deque<Pending>)
        case closed(RedisError)
    }

    private var state: State

    init() {
        self.state = .active([])
    }

    private init(_ state: consuming State) {
        self.state = state
    }

    /// Requests about to be written, in write order.
    mutating func enqueue(_ requests: [Pending]) -> SendAction {
        switch consume state {
        case .active(var queue):
            queue.append(contentsOf: requests)
            self = Self(.active(queue))
            return .write
        case .closed(let error):
            self = Self(.closed(error))
            return .fail(error)
        }
    }

    mutating func received(_ value: consuming RESPValue) -> ReplyAction {
        switch consume state {
        case .active(var queue):
            if let items = value.pushItems {
                let kind = items.first?.string?.lowercased() ?? ""
                if Self.confirmationKinds.contains(kind), case .confirmations(let expected, let remaining, let promise, let deadline)? = queue.first,
                   expected == kind {
                    if remaining <= 1 {
                        queue.removeFirst()
                        self = Self(.active(queue))
                        return .succeed(promise, value)
                    }
                    queue[queue.startIndex] = .confirmations(kind: expected, remaining: remaining - 1, promise, deadline: deadline)
                    self = Self(.active(queue))
                    return .none
                }
                self = Self(.active(queue))
                return .deliverPush(value)
            }
            if case .batch(let count, let collected, let promise, _)? = queue.first {
                collected.values.append(value)
                guard collected.values.count >= count else {
                    self = Self(.active(queue))
                    return .none
                }
                queue.removeFirst()
                self = Self(.active(queue))
                return .succeed(promise, .array(collected.values))
            }
            guard let head = queue.popFirst() else {
                let error = RedisError(.protocolViolation, "reply without a request")
                self = Self(.closed(error))
                return .failAllAndClose([], error)
            }
            switch head {
            case .reply(let promise, _):
                self = Self(.active(queue))
                return .succeed(promise, value)
            case .confirmations(_, _, let promise, _):
                // A RESP2 server (or an error) answers a subscribe with ordinary replies.
                self = Self(.active(queue))
                return .succeed(promise, value)
            case .batch:
                preconditionFailure("RedisConnectionStateMachine: batch heads are handled above")
            }
        case .closed(let error):
            self = Self(.closed(error))
            return .none
        }
    }

    /// The oldest request's deadline passed: the connection cannot be trusted any more.
    mutating func checkDeadline(now: ContinuousClock.Instant) -> ReplyAction {
        switch consume state {
        case .active(let queue):
            guard let head = queue.first, head.deadline <= now else {
                self = Self(.active(queue))
                return .none
            }
            let error = RedisError(.timeout, "no reply before the deadline")
            self = Self(.closed(error))
            return .failAllAndClose(queue.map(\.promise), error)
        case .closed(let error):
            self = Self(.closed(error))
            return .none
        }
    }

    mutating func closed(_ error: RedisError) -> ReplyAction {
        switch consume state {
        case .active(let queue):
            self = Self(.closed(error))
            return .failAllAndClose(queue.map(\.promise), error)
        case .closed(let previous):
            self = Self(.closed(previous))
            return .none
        }
    }

    var inFlight: Int {
        switch state {
        case .active(let queue): queue.count
        case .closed: 0
        }
    }

    static var confirmationKinds: Set<String> {
        ["subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"]
    }
}

extension RedisConnectionStateMachine.Pending: Sendable where Promise: Sendable {}

/// The replies of one pipeline as they arrive; a reference so that appending never copies the array.
/// Only the connection's event loop touches it (through the state machine).
final class ReplyCollector: @unchecked Sendable {
    // Invariant: mutated only by the state machine, which runs on the channel's event loop.
    var values: [RESPValue] = []

    init(capacity: Int) {
        values.reserveCapacity(capacity)
    }
}
