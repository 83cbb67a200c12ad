/// A TLS setting, file or peer that cannot be used; the message says what to fix.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    /// Which file or setting to fix, and why.
    public var message: String
    /// The error underneath (NIOSSL's or the parser's), if any.
    public var underlying: (any Error)?

    /// An error saying `message`, with its `underlying` cause.
    public init(_ message: String, underlying: (any Error)? = nil) {
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        guard let underlying else { return "TLS: \(message)" }
        return "TLS: \(message) (\(underlying))"
    }
}
