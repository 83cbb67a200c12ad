public import Configuration
import Foundation

/// Reads a ``ConfigSource`` (etcd's `/config/{app}/{env}/`, or memory) through apple/swift-configuration:
/// `ConfigReader(provider: ConfigSourceProvider(source: etcdConfig))`.
///
/// Keys map by joining components with dots (`http.port` ↔ `/config/shop/prod/http.port`). Values are
/// stored as text and converted to the requested type on read: integers, doubles, booleans
/// (`true/false/1/0/yes/no/on/off`), bytes (UTF-8), and comma-separated arrays. Watches follow the
/// source's hot reload.
public struct ConfigSourceProvider: ConfigProvider {
    /// The source read.
    public let source: any ConfigSource
    /// The name swift-configuration shows for this provider.
    public let providerName: String

    /// A provider reading `source`, named `name`.
    public init(source: any ConfigSource, name: String = "etcd") {
        self.source = source
        self.providerName = name
    }

    /// The value of `key` converted to `type`, or none when unset.
    /// - Throws: ``ConversionError`` when the stored text is not a valid `type`.
    public func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        try Self.lookup(source.snapshot(), key: key, type: type)
    }

    nonisolated(nonsending) public func fetchValue(forKey key: AbsoluteConfigKey, type: ConfigType) async throws -> LookupResult {
        try value(forKey: key, type: type)
    }

    nonisolated(nonsending) public func watchValue<Return: ~Copyable>(
        forKey key: AbsoluteConfigKey,
        type: ConfigType,
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<Result<LookupResult, any Error>, Never>) async throws -> Return
    ) async throws -> Return {
        let updates = source.updates().map { @Sendable values in
            Result { try Self.lookup(values, key: key, type: type) }
        }
        return try await updatesHandler(ConfigUpdatesAsyncSequence(updates))
    }

    public func snapshot() -> any ConfigSnapshot {
        Snapshot(providerName: providerName, values: source.snapshot())
    }

    nonisolated(nonsending) public func watchSnapshot<Return: ~Copyable>(
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<any ConfigSnapshot, Never>) async throws -> Return
    ) async throws -> Return {
        let name = providerName
        let updates = source.updates().map { @Sendable values -> any ConfigSnapshot in Snapshot(providerName: name, values: values) }
        return try await updatesHandler(ConfigUpdatesAsyncSequence(updates))
    }

    struct Snapshot: ConfigSnapshot {
        let providerName: String
        let values: [String: String]

        func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
            try ConfigSourceProvider.lookup(values, key: key, type: type)
        }
    }

    /// Why a stored text cannot be read as the requested type.
    public struct ConversionError: Error, CustomStringConvertible {
        /// The key whose text did not convert.
        public var key: String
        /// The type asked for.
        public var type: String
        public var description: String { "config value at \(key) is not a valid \(type)" }
    }

    static func lookup(_ values: [String: String], key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        let encoded = key.components.joined(separator: ".")
        guard let text = values[encoded] else { return LookupResult(encodedKey: encoded, value: nil) }
        func fail() -> ConversionError { ConversionError(key: encoded, type: type.rawValue) }
        func items() -> [String] { text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        func int(_ text: String) throws -> Int { guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else { throw fail() }; return value }
        func double(_ text: String) throws -> Double { guard let value = Double(text.trimmingCharacters(in: .whitespaces)) else { throw fail() }; return value }
        func bool(_ text: String) throws -> Bool {
            switch text.trimmingCharacters(in: .whitespaces).lowercased() {
            case "true", "1", "yes", "on": return true
            case "false", "0", "no", "off": return false
            default: throw fail()
            }
        }
        let content: ConfigContent
        switch type {
        case .string: content = .string(text)
        case .int: content = .int(try int(text))
        case .double: content = .double(try double(text))
        case .bool: content = .bool(try bool(text))
        case .bytes: content = .bytes(Array(text.utf8))
        case .stringArray: content = .stringArray(items())
        case .intArray: content = .intArray(try items().map(int))
        case .doubleArray: content = .doubleArray(try items().map(double))
        case .boolArray: content = .boolArray(try items().map(bool))
        case .byteChunkArray: content = .byteChunkArray(items().map { Array($0.utf8) })
        }
        return LookupResult(encodedKey: encoded, value: ConfigValue(content, isSecret: false))
    }
}
