import NIOCore
import TroupeRESP

/// The keys a command touches, for slot routing; `nil` when the command has no key we know of
/// (it then goes to any primary, and a redirect corrects the choice).
enum CommandKeys {
    static func keys(_ arguments: [any RESPArgument]) -> [String]? {
        guard let name = (arguments.first as? String)?.uppercased() else { return nil }
        func text(_ index: Int) -> String? {
            guard index < arguments.count else { return nil }
            switch arguments[index] {
            case let string as String: return string
            case let substring as Substring: return String(substring)
            case let buffer as ByteBuffer: return String(buffer: buffer)
            case let number as Int: return String(number)
            default: return nil
            }
        }
        switch name {
        case "MGET", "DEL", "EXISTS", "UNLINK", "TOUCH", "WATCH", "SINTER", "SUNION", "SDIFF", "PFCOUNT":
            return (1..<arguments.count).compactMap(text)
        case "MSET", "MSETNX":
            return stride(from: 1, to: arguments.count, by: 2).compactMap(text)
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            guard let count = text(2).flatMap(Int.init), count >= 0, 3 + count <= arguments.count else { return nil }
            return count == 0 ? nil : (3..<(3 + count)).compactMap(text)
        case "XREAD", "XREADGROUP":
            guard let streams = (0..<arguments.count).first(where: { text($0)?.uppercased() == "STREAMS" }) else { return nil }
            let remaining = arguments.count - streams - 1
            return ((streams + 1)..<(streams + 1 + remaining / 2)).compactMap(text)
        case "PING", "INFO", "SCRIPT", "CLUSTER", "CONFIG", "FLUSHALL", "FLUSHDB", "DBSIZE", "PUBLISH", "MULTI", "EXEC",
             "ASKING", "CLIENT", "HELLO", "AUTH", "SELECT", "TIME", "COMMAND", "KEYS", "SCAN", "RANDOMKEY":
            return nil
        default:
            return text(1).map { [$0] }
        }
    }
}
