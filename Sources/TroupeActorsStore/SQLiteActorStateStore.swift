import Foundation
public import TroupeActors
import TroupeBSON
import TroupeCore
public import TroupeStore

/// The runtime's actor-state store on the embedded SQLite engine: one row per actor in its own table
/// (`type`, `key`, `version`, `state`), compare-and-set on the version in one statement.
///
/// The state is JSON text (``JSONStateCodec``: `Date`s as ISO 8601 with milliseconds), so SQLite's own tools
/// read and query it — `SELECT key FROM "a_actor_state" WHERE type = 'OrderActor' AND
/// json_extract(state, '$.info.status') = 'completed'`. Rows written by earlier versions in Troupe's binary form
/// (a BLOB) are still read, and become JSON with their next write (until then, SQL over such a table filters
/// them out with `typeof(state) = 'text'`: `json_extract` refuses a BLOB).
///
/// It shares the database (and its locking) with the `SQLiteDocumentStore` it is opened on, but skips
/// the document layer. (``DocumentActorStateStore`` on the same engine stores states as documents of a
/// collection.)
public struct SQLiteActorStateStore: ScannableActorStateStore {
    /// The SQLite database the table lives in.
    public let store: SQLiteDocumentStore
    /// The table's name as SQL names it (quoted, with the store's `a_` prefix).
    public let table: String

    /// JSON text; the older binary form is read too.
    public var codec: any ActorStateCodec { JSONStateCodec() }

    /// Opens the store on `store`'s database, creating `table` and the `indexes` when they do not exist.
    /// - Parameter store: the SQLite database.
    /// - Parameter table: the table's name (ASCII letters, digits and `_`; `a_` is put before it).
    /// - Parameter indexes: fields of the states to index, as dot paths in the JSON (`"info.status"`): each
    ///   becomes an index on `json_extract(state, '$.info.status')` (then the table's key, type and key) over
    ///   the JSON rows — a query uses it when it says `type = ? AND typeof(state) = 'text' AND
    ///   json_extract(state, '$.info.status') = ?`. Rows
    ///   still in the older binary form are left out of the index (SQLite's JSON functions refuse a BLOB).
    /// - Throws: `DocumentStoreError` with `invalidOperation` for a table name or path that is not plain
    ///   (ASCII letters, digits and `_`, paths dotted).
    public init(store: SQLiteDocumentStore, table: String = "actor_state", indexes: [String] = []) async throws(DocumentStoreError) {
        guard Self.isPlainName(table) else {
            throw DocumentStoreError(.invalidOperation, "actor-state table \"\(table)\" must be ASCII letters, digits and _")
        }
        for path in indexes where !path.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ Self.isPlainName(String($0)) }) {
            throw DocumentStoreError(.invalidOperation, "index path \"\(path)\" must be names of ASCII letters, digits and _ joined by dots")
        }
        self.store = store
        self.table = "\"a_\(table)\""
        try await store.execute(exclusive: true,
            "CREATE TABLE IF NOT EXISTS \(self.table) (type TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, state BLOB NOT NULL, PRIMARY KEY (type, key)) WITHOUT ROWID")
        for path in indexes {
            let name = "\"a_\(table)__\(path.replacingOccurrences(of: ".", with: "_"))\""
            try await store.execute(exclusive: true,
                "CREATE INDEX IF NOT EXISTS \(name) ON \(self.table) (json_extract(state, '$.\(path)')) WHERE typeof(state) = 'text'")
        }
    }

    private static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }
    }

    public func load(type: String, key: String) async throws -> VersionedState? {
        let rows = try await store.execute("SELECT version, state FROM \(table) WHERE type = ? AND key = ?", [.text(type), .text(key)])
        guard let row = rows.first, row.count == 2, case .integer(let version) = row[0] else { return nil }
        return try Self.state(row[1], version: version, id: "\(type)/\(key)")
    }

    /// A stored state: JSON text, or a BLOB in the binary form of earlier versions.
    private static func state(_ value: SQLiteValue, version: Int, id: String) throws(DocumentStoreError) -> VersionedState {
        switch value {
        case .text(let json): return VersionedState(bytes: Array(json.utf8), version: Int64(version), encoding: .json)
        case .blob(let bytes): return VersionedState(bytes: bytes, version: Int64(version), encoding: .binary)
        default: throw DocumentStoreError(.engine, "the stored state of \(id) is neither JSON text nor a BLOB")
        }
    }

    public func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
        guard let json = String(validating: bytes, as: UTF8.self) else {
            throw DocumentStoreError(.codec, "the state of \(type)/\(key) to store is not UTF-8 JSON (encode it with this store's codec)")
        }
        if expectedVersion == 0 {
            let inserted: Result<Void, DocumentStoreError>
            do throws(DocumentStoreError) {
                try await store.execute("INSERT INTO \(table) (type, key, version, state) VALUES (?, ?, 1, ?)", [.text(type), .text(key), .text(json)])
                inserted = .success(())
            } catch {
                inserted = .failure(error)
            }
            switch inserted {
            case .success: return true
            case .failure(let error) where error.kind == .duplicateKey: return false  // someone else created it first
            case .failure(let error): throw error
            }
        }
        let rows = try await store.execute(
            "UPDATE \(table) SET version = ?, state = ? WHERE type = ? AND key = ? AND version = ? RETURNING version",
            [.integer(Int(expectedVersion + 1)), .text(json), .text(type), .text(key), .integer(Int(expectedVersion))])
        return !rows.isEmpty
    }

    public func delete(type: String, key: String) async throws {
        try await store.execute("DELETE FROM \(table) WHERE type = ? AND key = ?", [.text(type), .text(key)])
    }

    public func states(ofType type: String) async throws -> [String: VersionedState] {
        var out: [String: VersionedState] = [:]
        for row in try await store.execute("SELECT key, version, state FROM \(table) WHERE type = ?", [.text(type)]) {
            guard row.count == 3, case .text(let key) = row[0], case .integer(let version) = row[1] else { continue }
            out[key] = try Self.state(row[2], version: version, id: "\(type)/\(key)")
        }
        return out
    }
}

extension StateEncoding {
    /// JSON text (``SQLiteActorStateStore``).
    public static let json = StateEncoding("json")
}

/// Actor states as JSON text (`Date`s as ISO 8601 strings with milliseconds, keys sorted); reads the binary
/// form too.
public struct JSONStateCodec: ActorStateCodec {
    /// The codec (stateless).
    public init() {}

    /// The JSON text of `value`: what Foundation's `JSONEncoder` writes with sorted keys, unescaped slashes, dates as
    /// ISO 8601 text with milliseconds and data as Base64 — written from the runtime's value tree, several times
    /// faster (every write of an actor state pays it; `JSONEncoder` was a third of a shop order's processor time).
    /// - Throws: `EncodingError` for a number JSON cannot hold (infinite, NaN).
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        try JSONText.write(try BinaryEncoder.encodeValue(value, style: Self.style), into: &out)
        return out
    }

    private static let style = ValueTreeStyle(date: { .string(JSONText.iso8601(milliseconds: $0)) }, data: { .string($0.base64EncodedString()) })

    public func decode<T: Decodable>(_ type: T.Type, from state: VersionedState) throws -> T {
        switch state.encoding {
        case .binary:
            return try BinaryStateCodec().decode(type, from: state)
        case .json:
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .custom { decoder in
                let container = try decoder.singleValueContainer()
                let text = try container.decode(String.self)
                guard let date = try? Date(text, strategy: Self.dateFormat) else {
                    throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 date: \(text.prefix(40))")
                }
                return date
            }
            return try decoder.decode(type, from: Data(state.bytes))
        default:
            throw DocumentStoreError(.codec, "actor state stored as \(state.encoding) cannot be read by the JSON codec")
        }
    }

    private static let dateFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
}

/// JSON text from a value tree (``JSONStateCodec``).
enum JSONText {
    static func write(_ value: BinaryValue, into out: inout [UInt8]) throws {
        switch value {
        case .null: out += "null".utf8
        case .bool(let flag): out += (flag ? "true" : "false").utf8
        case .int(let number): out += String(number).utf8
        case .uint(let number): out += String(number).utf8
        case .double(let number): try writeNumber(number, into: &out)
        case .float(let number): try writeNumber(Double(number), into: &out)
        case .string(let text): writeString(text, into: &out)
        case .bytes(let bytes):
            out.append(UInt8(ascii: "["))
            for (index, byte) in bytes.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                out += String(byte).utf8
            }
            out.append(UInt8(ascii: "]"))
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                try write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .map(let entries):
            out.append(UInt8(ascii: "{"))
            // Sorted (stably) by key; a key encoded twice keeps its last value, as JSONEncoder does.
            let sorted = entries.enumerated().sorted { $0.element.0 != $1.element.0 ? $0.element.0 < $1.element.0 : $0.offset < $1.offset }
            var first = true
            for (index, entry) in sorted.enumerated() {
                if index + 1 < sorted.count, sorted[index + 1].element.0 == entry.element.0 { continue }
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                writeString(entry.element.0, into: &out)
                out.append(UInt8(ascii: ":"))
                try write(entry.element.1, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func writeNumber(_ number: Double, into out: inout [UInt8]) throws {
        guard number.isFinite else {
            throw EncodingError.invalidValue(number, .init(codingPath: [], debugDescription: "JSON cannot hold \(number)"))
        }
        if number == number.rounded(), abs(number) < 1e15 {
            out += String(Int64(number)).utf8
        } else {
            out += "\(number)".utf8
        }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    private static func writeString(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0..<0x20: out += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0x0f)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `2024-12-04T08:13:20.125Z`: UTC, to the nearest millisecond. Outside 1583…9999 — before the Gregorian
    /// calendar began, Foundation writes and reads Julian dates — Foundation's own format, so that it reads them back.
    static func iso8601(milliseconds date: Date) -> String {
        let seconds1970 = date.timeIntervalSince1970
        guard seconds1970 >= -12_212_553_600, seconds1970 < 253_402_300_800 else {
            return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        }
        return ISODate.format(milliseconds: Int64((seconds1970 * 1000).rounded()), alwaysMilliseconds: true)
    }
}
