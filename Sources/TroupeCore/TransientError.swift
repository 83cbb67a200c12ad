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
