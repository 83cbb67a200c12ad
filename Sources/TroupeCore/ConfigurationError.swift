/// A configuration that cannot work, found before start-up: one line that names the key to fix and what it
/// should be ("gateway.port must be 1…65535", `unknown key "ettcd" (did you mean "etcd"?)`). The message names
/// keys and variables, never a secret's value.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// One line naming the key or variable to fix and what it should be.
    public var message: String
    /// What was found wrong underneath (a file that cannot be read, a TLS file that does not parse).
    public var underlying: (any Error)?

    /// An error saying `message`, with the `underlying` cause if there is one.
    public init(_ message: String, underlying: (any Error)? = nil) {
        self.message = message
        self.underlying = underlying
    }

    public var description: String { message }
}
