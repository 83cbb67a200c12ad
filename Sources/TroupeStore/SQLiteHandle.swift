import Synchronization
import TroupeCore

/// A value bound to or read from an SQLite statement.
package enum SQLiteValue: Sendable, Hashable {
    case null
    case integer(Int)
    case float(Double)
    case text(String)
    case blob([UInt8])
}

/// Why a statement failed: SQLite's primary result code and its message.
struct SQLiteFailure: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { "SQLite error \(code): \(message)" }
    var isConstraint: Bool { code & 0xFF == SQLITE_CONSTRAINT }
}

/// One SQLite connection used synchronously from the caller's thread, with its prepared statements cached.
///
/// The embedded engine's statements are short (an in-memory or WAL database, one row by primary key most
/// of the time: a few microseconds), so they run inline under a mutex instead of hopping to a thread pool
/// and back for every statement — those hops cost far more than the statement on a busy machine. Long
/// scans of large collections block the calling thread for their duration: this engine serves embedded sizes.
final class SQLiteHandle: Sendable {
    private struct Connection: ~Copyable {
        var database: OpaquePointer?
        var statements: [String: OpaquePointer] = [:]
    }

    private let connection: Guarded<Connection>
    private let sqlite: SQLiteLibrary
    /// The most statements kept prepared; past it the cache is emptied (filters with many shapes).
    static let statementCacheLimit = 128

    private init(database: sending OpaquePointer, sqlite: SQLiteLibrary) {
        connection = Guarded(Connection(database: database))
        self.sqlite = sqlite
    }

    /// Opens (or creates) the database at `path`; nil keeps it in memory.
    static func open(path: String?) throws(SQLiteFailure) -> SQLiteHandle {
        let sqlite = try SQLiteLibrary.shared.get()
        var database: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI
        let status = sqlite.open(path ?? ":memory:", &database, flags, nil)
        guard status == SQLITE_OK, let database else {
            let message = database.map { sqlite.errmsg($0).map { String(cString: $0) } ?? "unknown" } ?? "out of memory"
            _ = sqlite.close(database)
            throw SQLiteFailure(code: status, message: message)
        }
        // Another process holding a file lock is waited for (briefly): this connection is the only writer we expect.
        _ = sqlite.busyTimeout(database, 2_000)
        return SQLiteHandle(database: database, sqlite: sqlite)
    }

    /// Runs one statement and returns its rows (each an array of column values, in select order).
    @discardableResult
    func query(_ sql: String, _ binds: [SQLiteValue] = []) throws(SQLiteFailure) -> [[SQLiteValue]] {
        try connection.withLock { (connection: inout Connection) throws(SQLiteFailure) -> [[SQLiteValue]] in
            guard let database = connection.database else { throw SQLiteFailure(code: SQLITE_MISUSE, message: "the database is closed") }
            let statement = try self.statement(sql, in: &connection, database: database)
            defer {
                _ = sqlite.reset(statement)
                _ = sqlite.clearBindings(statement)
            }
            for (offset, value) in binds.enumerated() {
                let status = bind(value, at: Int32(offset + 1), to: statement)
                guard status == SQLITE_OK else { throw failure(status, database) }
            }
            var rows: [[SQLiteValue]] = []
            let columns = sqlite.columnCount(statement)
            while true {
                let status = sqlite.step(statement)
                if status == SQLITE_DONE { return rows }
                guard status == SQLITE_ROW else { throw failure(status, database) }
                var row: [SQLiteValue] = []
                row.reserveCapacity(Int(columns))
                for column in 0..<columns { row.append(self.column(column, of: statement)) }
                rows.append(row)
            }
        }
    }

    /// Finalises the cached statements and closes the database (later queries fail).
    func close() {
        connection.withLock { connection in
            for statement in connection.statements.values { _ = sqlite.finalize(statement) }
            connection.statements.removeAll()
            if let database = connection.database { _ = sqlite.close(database) }
            connection.database = nil
        }
    }

    deinit { close() }

    private func statement(_ sql: String, in connection: inout Connection, database: OpaquePointer) throws(SQLiteFailure) -> OpaquePointer {
        if let cached = connection.statements[sql] { return cached }
        if connection.statements.count >= Self.statementCacheLimit {
            for statement in connection.statements.values { _ = sqlite.finalize(statement) }
            connection.statements.removeAll()
        }
        var statement: OpaquePointer?
        let status = sqlite.prepare(database, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, nil)
        guard status == SQLITE_OK, let statement else { throw failure(status, database) }
        connection.statements[sql] = statement
        return statement
    }

    private func bind(_ value: SQLiteValue, at index: Int32, to statement: OpaquePointer) -> Int32 {
        switch value {
        case .null:
            return sqlite.bindNull(statement, index)
        case .integer(let integer):
            return sqlite.bindInt64(statement, index, Int64(integer))
        case .float(let double):
            return sqlite.bindDouble(statement, index, double)
        case .text(var text):
            return text.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    guard let base = chars.baseAddress else { return sqlite.bindText(statement, index, "", 0, SQLITE_TRANSIENT) }
                    return sqlite.bindText(statement, index, base, Int32(chars.count), SQLITE_TRANSIENT)
                }
            }
        case .blob(let bytes):
            return bytes.withUnsafeBytes { raw in
                sqlite.bindBlob(statement, index, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(raw.count), SQLITE_TRANSIENT)
            }
        }
    }

    private func column(_ index: Int32, of statement: OpaquePointer) -> SQLiteValue {
        switch sqlite.columnType(statement, index) {
        case SQLITE_INTEGER:
            return .integer(Int(sqlite.columnInt64(statement, index)))
        case SQLITE_FLOAT:
            return .float(sqlite.columnDouble(statement, index))
        case SQLITE_TEXT:
            guard let text = sqlite.columnText(statement, index) else { return .text("") }
            let count = Int(sqlite.columnBytes(statement, index))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite.columnBytes(statement, index))
            guard let blob = sqlite.columnBlob(statement, index), count > 0 else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: blob, count: count)))
        default:
            return .null
        }
    }

    private func failure(_ status: Int32, _ database: OpaquePointer) -> SQLiteFailure {
        SQLiteFailure(code: sqlite.extendedErrcode(database), message: sqlite.errmsg(database).map { String(cString: $0) } ?? "unknown")
    }
}
