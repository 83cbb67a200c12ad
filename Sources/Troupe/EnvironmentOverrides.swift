import Configuration
import Foundation

/// Environment variables that override keys of the configuration file, named by apple/swift-configuration's
/// convention for the key path under `troupe`: `TROUPE_CALL_TIMEOUT_MS` sets `callTimeoutMs`,
/// `TROUPE_GATEWAY_MAX_IN_FLIGHT` sets `gateway.maxInFlight` (of a `gateway` section the file has),
/// `TROUPE_ETCD_ENDPOINTS` a list (comma-separated). A value of the wrong type is an error naming the variable.
/// Keys inside list entries (`members[0].port`) are not overridden.
struct EnvironmentOverrides {
    private let reader: ConfigReader?

    init(_ environment: [String: String]) {
        let relevant = environment.filter { $0.key.hasPrefix("TROUPE_") }
        reader = relevant.isEmpty ? nil : ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: relevant))
    }

    /// What the environment sets at `path` (nil: nothing, or a path inside a list).
    func value(at path: [any CodingKey]) -> Value? {
        guard let reader, path.allSatisfy({ $0.intValue == nil }) else { return nil }
        let key = ConfigKey(["troupe"] + path.map(\.stringValue))
        guard let text = reader.string(forKey: key) else { return nil }
        return Value(text: text, variable: Self.variableName(of: ["troupe"] + path.map(\.stringValue)))
    }

    /// The variable swift-configuration reads for a key path (for messages): words upper-cased, joined by `_`.
    static func variableName(of components: [String]) -> String {
        components.map { component in
            var name = ""
            for character in component {
                if character.isUppercase, !name.isEmpty, name.last != "_" { name.append("_") }
                name.append(character.isLetter || character.isNumber ? Character(character.uppercased()) : "_")
            }
            return name
        }.joined(separator: "_")
    }

    /// A value from the environment, converted to the type the configuration asks for.
    struct Value {
        var text: String
        var variable: String

        func decode<T: Decodable>(_ type: T.Type, _ path: [any CodingKey]) throws -> T {
            func refuse(_ expected: String) -> DecodingError {
                .typeMismatch(type, .init(codingPath: path, debugDescription: "\(variable) must be \(expected)"))
            }
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            // Each `as! T` below follows a `case is X.Type` that proved T is X: the cast cannot fail.
            switch type {
            case is String.Type: return text as! T
            case is Bool.Type:
                switch trimmed.lowercased() {
                case "true", "1", "yes", "on": return true as! T
                case "false", "0", "no", "off": return false as! T
                default: throw refuse("true or false")
                }
            case is Int.Type:
                guard let value = Int(trimmed) else { throw refuse("a whole number") }
                return value as! T
            case is Double.Type:
                guard let value = Double(trimmed), value.isFinite else { throw refuse("a number") }
                return value as! T
            case is [String].Type:
                return trimmed.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } as! T
            default:
                throw refuse("set in the file (a section or list cannot come from an environment variable)")
            }
        }
    }
}
