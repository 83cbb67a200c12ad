import Foundation

/// Reads a JSON configuration file strictly, so that a mistake fails at start-up saying what to fix:
/// syntax errors give the line and column, a value of the wrong type names its key path and the type
/// expected in plain words, and a key the configuration does not have is an error (with the known key it
/// most resembles) instead of being ignored — a typo `ettcd` must not start a node on its static list.
///
/// It decodes from the parsed JSON tree and records every key the `Decodable` types ask for, present or
/// not; a key in the file that no type asked for at its place is unknown.
struct ConfigurationDecoder {
    /// A problem in the file, as one line an operator can act on.
    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    static func decode<T: Decodable>(_ type: T.Type, from data: Data, environment: [String: String] = [:]) throws(Problem) -> T {
        try decode(from: data, environment: environment) { try T(from: $0) }
    }

    /// Decodes with `body`, which may read the same object with several types (the node's configuration and an
    /// application's own section): a key is unknown only when none of them asked for it.
    /// `environment` overrides keys of the file (``EnvironmentOverrides``).
    static func decode<T>(from data: Data, environment: [String: String] = [:], _ body: (any Decoder) throws -> T) throws(Problem) -> T {
        let tree: Any
        do {
            tree = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw Problem(description: "not valid JSON\(Self.position(of: error, in: data))")
        }
        let keys = KeyRecorder(overrides: EnvironmentOverrides(environment))
        let value: T
        do {
            value = try body(TreeDecoder(value: tree, codingPath: [], keys: keys))
        } catch let error as DecodingError {
            var description = Self.describe(error)
            // A required key missing beside an unknown one is usually a typo: say which.
            if case .keyNotFound(let key, let context) = error,
               let unknown = keys.unknown().first(where: {
                   $0.path == Self.path(context.codingPath) && Self.closest(to: $0.key, among: [key.stringValue]) != nil
               }) {
                description += "; the file has \"\(unknown.key)\" there (did you mean \"\(key.stringValue)\"?)"
            }
            throw Problem(description: description)
        } catch {
            throw Problem(description: "\(error)")
        }
        if let unknown = keys.unknown().first {
            let path = unknown.path.isEmpty ? "" : " in \(unknown.path)"
            let hint = Self.closest(to: unknown.key, among: unknown.known).map { " (did you mean \"\($0)\"?)" } ?? ""
            throw Problem(description: "unknown key \"\(unknown.key)\"\(path)\(hint)")
        }
        return value
    }

    /// " at line L, column C" from Foundation's "around character N", or "".
    static func position(of error: any Error, in data: Data) -> String {
        let text = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? ""
        guard let range = text.range(of: #"character (\d+)"#, options: .regularExpression),
              let offset = Int(text[range].dropFirst("character ".count)) else { return text.isEmpty ? "" : ": \(text)" }
        var line = 1, column = 1
        for byte in data.prefix(offset) {
            if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
        }
        return " at line \(line), column \(column)"
    }

    static func path(_ codingPath: [any CodingKey]) -> String {
        var out = ""
        for key in codingPath {
            if let index = key.intValue { out += "[\(index)]" } else { out += out.isEmpty ? key.stringValue : ".\(key.stringValue)" }
        }
        return out
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let at = path(context.codingPath)
            return at.isEmpty ? context.debugDescription : "\(at): \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            let at = path(context.codingPath + [key])
            return "\(at): missing (required)"
        @unknown default:
            return "\(error)"
        }
    }

    /// The known key within edit distance 2 of `key`, if one is.
    static func closest(to key: String, among known: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var row = Array(0...b.count)
            for (i, ca) in a.enumerated() {
                var previous = row[0]
                row[0] = i + 1
                for (j, cb) in b.enumerated() {
                    let current = row[j + 1]
                    row[j + 1] = min(row[j + 1] + 1, row[j] + 1, previous + (ca == cb ? 0 : 1))
                    previous = current
                }
            }
            return row[b.count]
        }
        let lowered = Array(key.lowercased())
        return known.map { ($0, distance(lowered, Array($0.lowercased()))) }.filter { $0.1 <= 2 }.min { $0.1 < $1.1 }?.0
    }
}

/// The keys each JSON object of the file has, and the keys the decoded types asked for there.
final class KeyRecorder {
    private var objects: [String: (present: [String], asked: Set<String>)] = [:]
    private var order: [String] = []
    let overrides: EnvironmentOverrides

    init(overrides: EnvironmentOverrides = EnvironmentOverrides([:])) {
        self.overrides = overrides
    }

    func visit(_ path: String, keys: [String]) {
        if objects[path] == nil { order.append(path) }
        objects[path, default: (keys, [])].present = keys
    }

    func ask(_ path: String, key: String) {
        objects[path]?.asked.insert(key)
    }

    /// Every unknown key, object by object in the order the objects were read, keys sorted.
    func unknown() -> [(path: String, key: String, known: [String])] {
        order.flatMap { path -> [(path: String, key: String, known: [String])] in
            guard let object = objects[path] else { return [] }
            let known = object.asked.sorted()
            return object.present.sorted().filter { !object.asked.contains($0) }.map { (path, $0, known) }
        }
    }
}

/// A `Decoder` over a JSONSerialization tree that reports to a ``KeyRecorder``.
struct TreeDecoder: Decoder {
    let value: Any
    let codingPath: [any CodingKey]
    let keys: KeyRecorder
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard let object = value as? [String: Any] else { throw mismatch([String: Any].self, "an object", value, codingPath) }
        let path = ConfigurationDecoder.path(codingPath)
        keys.visit(path, keys: Array(object.keys))
        return KeyedDecodingContainer(TreeKeyedContainer<Key>(object: object, codingPath: codingPath, path: path, keys: keys))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard let array = value as? [Any] else { throw mismatch([Any].self, "a list", value, codingPath) }
        return TreeUnkeyedContainer(array: array, codingPath: codingPath, keys: keys)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        TreeSingleValue(value: value, codingPath: codingPath, keys: keys)
    }
}

/// "expected an integer, found a string" (the error of a value of the wrong type).
func mismatch(_ type: Any.Type, _ expected: String, _ value: Any, _ path: [any CodingKey]) -> DecodingError {
    .typeMismatch(type, .init(codingPath: path, debugDescription: "expected \(expected), found \(describeJSON(value))"))
}

func describeJSON(_ value: Any) -> String {
    switch value {
    case is NSNull: return "null"
    case let string as String: return "a string (\"\(string.prefix(40))\")"
    case let number as NSNumber: return isJSONBool(number) ? "true or false" : "a number (\(number))"
    case is [Any]: return "a list"
    case is [String: Any]: return "an object"
    default: return "\(type(of: value))"
    }
}

func isJSONBool(_ number: NSNumber) -> Bool {
    String(cString: number.objCType) == "c"
}

/// Decodes one JSON value as a primitive, or as any `Decodable` through a nested ``TreeDecoder``.
func decodeTree<T: Decodable>(_ type: T.Type, _ value: Any, _ path: [any CodingKey], _ keys: KeyRecorder) throws -> T {
    if let override = value as? EnvironmentOverrides.Value { return try override.decode(type, path) }
    func number() throws -> NSNumber {
        guard let number = value as? NSNumber, !isJSONBool(number) else { throw mismatch(type, "a number", value, path) }
        return number
    }
    func integer<I: FixedWidthInteger>(_: I.Type) throws -> I {
        let double = try number().doubleValue
        guard double.rounded() == double, let result = I(exactly: double) else {
            throw mismatch(type, "a whole number in range", value, path)
        }
        return result
    }
    // Each `as! T` below follows a `case is X.Type` that proved T is X: the cast cannot fail.
    switch type {
    case is String.Type:
        guard let string = value as? String else { throw mismatch(type, "a string", value, path) }
        return string as! T
    case is Bool.Type:
        guard let number = value as? NSNumber, isJSONBool(number) else { throw mismatch(type, "true or false", value, path) }
        return number.boolValue as! T
    case is Int.Type: return try integer(Int.self) as! T
    case is Int64.Type: return try integer(Int64.self) as! T
    case is Int32.Type: return try integer(Int32.self) as! T
    case is UInt.Type: return try integer(UInt.self) as! T
    case is UInt64.Type: return try integer(UInt64.self) as! T
    case is UInt32.Type: return try integer(UInt32.self) as! T
    case is UInt16.Type: return try integer(UInt16.self) as! T
    case is Double.Type: return try number().doubleValue as! T
    case is Float.Type: return try number().floatValue as! T
    default: return try T(from: TreeDecoder(value: value, codingPath: path, keys: keys))
    }
}

struct TreeKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: [String: Any]
    let codingPath: [any CodingKey]
    let path: String
    let keys: KeyRecorder

    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool {
        keys.ask(path, key: key.stringValue)
        return object[key.stringValue] != nil || override(key) != nil
    }

    /// The environment's value of this key, if it sets one (it wins over the file's).
    private func override(_ key: Key) -> EnvironmentOverrides.Value? {
        keys.overrides.value(at: codingPath + [key])
    }

    private func value(_ key: Key) throws -> Any {
        keys.ask(path, key: key.stringValue)
        if let override = override(key) { return override }
        guard let value = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        return value
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        keys.ask(path, key: key.stringValue)
        if override(key) != nil { return false }
        return object[key.stringValue] == nil || object[key.stringValue] is NSNull
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decodeTree(type, try value(key), codingPath + [key], keys)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try TreeDecoder(value: try value(key), codingPath: codingPath + [key], keys: keys).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try TreeDecoder(value: try value(key), codingPath: codingPath + [key], keys: keys).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { TreeDecoder(value: object, codingPath: codingPath, keys: keys) }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        TreeDecoder(value: try value(key), codingPath: codingPath + [key], keys: keys)
    }
}

struct TreeUnkeyedContainer: UnkeyedDecodingContainer {
    struct Index: CodingKey {
        var intValue: Int?
        var stringValue: String { "\(intValue ?? 0)" }
        init(intValue: Int) { self.intValue = intValue }
        init?(stringValue: String) { nil }
    }

    let array: [Any]
    let codingPath: [any CodingKey]
    let keys: KeyRecorder
    var currentIndex = 0
    var count: Int? { array.count }
    var isAtEnd: Bool { currentIndex >= array.count }

    private mutating func next<T>(_ type: T.Type) throws -> (Any, [any CodingKey]) {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath, debugDescription: "the list has fewer items than needed"))
        }
        defer { currentIndex += 1 }
        return (array[currentIndex], codingPath + [Index(intValue: currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, array[currentIndex] is NSNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (value, path) = try next(type)
        return try decodeTree(type, value, path, keys)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (value, path) = try next([String: Any].self)
        return try TreeDecoder(value: value, codingPath: path, keys: keys).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (value, path) = try next([Any].self)
        return try TreeDecoder(value: value, codingPath: path, keys: keys).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let (value, path) = try next(Any.self)
        return TreeDecoder(value: value, codingPath: path, keys: keys)
    }
}

struct TreeSingleValue: SingleValueDecodingContainer {
    let value: Any
    let codingPath: [any CodingKey]
    let keys: KeyRecorder

    func decodeNil() -> Bool { value is NSNull }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try decodeTree(type, value, codingPath, keys)
    }
}
