/// An error that knows whether trying again can succeed: a dropped connection, a timeout, a server that is
/// restarting or a cluster that is changing can; a refusal, a malformed request or a bug cannot.
///
/// The gateway answers a retryable failure with 503 and `Retry-After`, any other with a status that does
/// not invite a retry.
public protocol TransientError: Error {
    var isTransient: Bool { get }
}

/// Whether `error` (or, for a wrapper, the error it carries) says a retry can succeed.
public func isTransient(_ error: any Error) -> Bool {
    if let error = error as? any TransientError { return error.isTransient }
    return false
}

/// What kind of failure an error is, from the point of view of a caller outside the process — how an HTTP
/// gateway answers it, without knowing the module that threw it.
public enum FailureClass: Sendable, Hashable {
    /// The request itself is at fault (a key too long, a quantity out of range): 400.
    case invalidRequest
    /// What the request names does not exist: 404.
    case notFound
    /// The request conflicts with the current state (an empty cart checked out): 409.
    case conflict
    /// Well-formed but refused (an idempotency key reused for another request): 422.
    case rejected
    /// No answer in time: 503, retry.
    case timeout
    /// Temporarily unavailable (a member died, a server restarts): 503, retry.
    case unavailable
    /// Anything else: 500.
    case failure
}

/// An error that says its ``FailureClass`` and a short stable name for logs and metrics (no values in it).
/// The gateway answers a classified error by its class; adopt it on the errors of your domain.
public protocol ClassifiedError: Error {
    var failureClass: FailureClass { get }
    /// "timeout", "invalidKey", "emptyCart": the kind, never the values (keys, amounts) of the request.
    var failureName: String { get }
    /// The title said to the client (problem+json `title`); nil: the class's ("invalid request", …).
    var publicTitle: String? { get }
    /// The detail said to the client (keep it free of secrets); nil: ``failureName``.
    var publicDetail: String? { get }
}

extension ClassifiedError {
    /// None: the class's title.
    public var publicTitle: String? { nil }
    /// None: ``ClassifiedError/failureName``.
    public var publicDetail: String? { nil }
}
