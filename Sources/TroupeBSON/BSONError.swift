/// The one error type of TroupeBSON: malformed bytes, malformed Extended JSON, or a value that does not fit.
public struct BSONError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of problem a ``BSONError`` reports.
    public enum Kind: Sendable, Hashable {
        /// The bytes are not valid BSON (bad length, truncated, unknown type, invalid UTF-8, ...).
        case malformedBytes
        /// The text is not valid JSON / Extended JSON.
        case malformedJSON
        /// A document nests deeper than the configured limit.
        case nestingTooDeep
        /// A document is larger than the configured limit.
        case documentTooLarge
        /// A value cannot be represented (decimal overflow, inexact rounding, key with a NUL byte, ...).
        case invalidValue
        /// Codable: the document does not match the Swift type.
        case typeMismatch
        /// Codable: a required key is missing.
        case keyNotFound
    }

    /// What kind of failure this is.
    public var kind: Kind
    /// What happened, in one line.
    public var message: String
    /// Byte offset (BSON) or character offset (JSON) where the problem was found, when known.
    public var offset: Int?

    /// An error of `kind` saying `message`, at `offset` when known.
    public init(_ kind: Kind, _ message: String, offset: Int? = nil) {
        self.kind = kind
        self.message = message
        self.offset = offset
    }

    public var description: String {
        if let offset { return "BSONError.\(kind): \(message) (at offset \(offset))" }
        return "BSONError.\(kind): \(message)"
    }
}
