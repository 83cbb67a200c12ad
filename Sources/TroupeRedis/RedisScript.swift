import Crypto
public import TroupeRESP

/// A Lua script run with `EVALSHA`, loaded automatically when the server does not know it yet.
public struct RedisScript: Sendable, Hashable {
    /// The Lua source.
    public let source: String
    /// The SHA-1 of ``source`` as Redis computes it (lower-case hex).
    public let sha1: String

    /// A script of `source` (its SHA-1 computed once).
    public init(_ source: String) {
        self.source = source
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

extension RedisCommandSender {
    /// Runs `script` with `EVALSHA`; on `NOSCRIPT` (a restarted or flushed server, or a cluster node
    /// that never saw it) runs it with `EVAL`, which also caches it on the node that owns the keys.
    public func evaluate(_ script: RedisScript, keys: [String] = [], arguments: [any RESPArgument] = []) async throws -> RESPValue {
        let command: [any RESPArgument] = ["EVALSHA", script.sha1, keys.count] + keys + arguments
        do {
            return try await send(command, timeout: nil)
        } catch let error as RedisError where error.code == .server && error.serverErrorPrefix == "NOSCRIPT" {
            return try await send(["EVAL", script.source, keys.count] + keys + arguments, timeout: nil)
        }
    }
}
