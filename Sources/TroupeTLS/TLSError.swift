/// A TLS setting, file or peer that cannot be used; the message says what to fix.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var underlying: (any Error)?

    public init(_ message: String, underlying: (any Error)? = nil) {
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        guard let underlying else { return "TLS: \(message)" }
        return "TLS: \(message) (\(underlying))"
    }
}
