import Synchronization
import VaporCSQLite
import TroupeCore

/// A value bound to or read from an SQLite statement.
enum SQLiteValue: Sendable, Hashable {
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
    /// The most statements kept prepared; past it the cache is emptied (filters with many shapes).
    static let statementCacheLimit = 128

    private init(database: sending OpaquePointer) {
        connection = Guarded(Connection(database: database))
    }

    /// Opens (or creates) the database at `path`; nil keeps it in memory.
    static func open(path: String?) throws(SQLiteFailure) -> SQLiteHandle {
        var database: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI
        let status = sqlite_nio_sqlite3_open_v2(path ?? ":memory:", &database, flags, nil)
        guard status == SQLITE_OK, let database else {
            let message = database.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite_nio_sqlite3_close_v2(database)
            throw SQLiteFailure(code: status, message: message)
        }
        // Another process holding a file lock is waited for (briefly): this connection is the only writer we expect.
        sqlite_nio_sqlite3_busy_timeout(database, 2_000)
        return SQLiteHandle(database: database)
    }

    /// Runs one statement and returns its rows (each an array of column values, in select order).
    @discardableResult
    func query(_ sql: String, _ binds: [SQLiteValue] = []) throws(SQLiteFailure) -> [[SQLiteValue]] {
        try connection.withLock { (connection: inout Connection) throws(SQLiteFailure) -> [[SQLiteValue]] in
            guard let database = connection.database else { throw SQLiteFailure(code: SQLITE_MISUSE, message: "the database is closed") }
            let statement = try Self.statement(sql, in: &connection, database: database)
            defer {
                sqlite_nio_sqlite3_reset(statement)
                sqlite_nio_sqlite3_clear_bindings(statement)
            }
            for (offset, value) in binds.enumerated() {
                let status = Self.bind(value, at: Int32(offset + 1), to: statement)
                guard status == SQLITE_OK else { throw Self.failure(status, database) }
            }
            var rows: [[SQLiteValue]] = []
            let columns = sqlite_nio_sqlite3_column_count(statement)
            while true {
                let status = sqlite_nio_sqlite3_step(statement)
                if status == SQLITE_DONE { return rows }
                guard status == SQLITE_ROW else { throw Self.failure(status, database) }
                var row: [SQLiteValue] = []
                row.reserveCapacity(Int(columns))
                for column in 0..<columns { row.append(Self.column(column, of: statement)) }
                rows.append(row)
            }
        }
    }

    /// Finalises the cached statements and closes the database (later queries fail).
    func close() {
        connection.withLock { connection in
            for statement in connection.statements.values { sqlite_nio_sqlite3_finalize(statement) }
            connection.statements.removeAll()
            if let database = connection.database { sqlite_nio_sqlite3_close_v2(database) }
            connection.database = nil
        }
    }

    deinit { close() }

    private static func statement(_ sql: String, in connection: inout Connection, database: OpaquePointer) throws(SQLiteFailure) -> OpaquePointer {
        if let cached = connection.statements[sql] { return cached }
        if connection.statements.count >= statementCacheLimit {
            for statement in connection.statements.values { sqlite_nio_sqlite3_finalize(statement) }
            connection.statements.removeAll()
        }
        var statement: OpaquePointer?
        let status = sqlite_nio_sqlite3_prepare_v3(database, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard status == SQLITE_OK, let statement else { throw failure(status, database) }
        connection.statements[sql] = statement
        return statement
    }

    /// SQLite copies bound text and blobs before the bind call returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private static func bind(_ value: SQLiteValue, at index: Int32, to statement: OpaquePointer) -> Int32 {
        switch value {
        case .null:
            return sqlite_nio_sqlite3_bind_null(statement, index)
        case .integer(let integer):
            return sqlite_nio_sqlite3_bind_int64(statement, index, sqlite3_int64(integer))
        case .float(let double):
            return sqlite_nio_sqlite3_bind_double(statement, index, double)
        case .text(var text):
            return text.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    guard let base = chars.baseAddress else { return sqlite_nio_sqlite3_bind_text(statement, index, "", 0, transient) }
                    return sqlite_nio_sqlite3_bind_text(statement, index, base, Int32(chars.count), transient)
                }
            }
        case .blob(let bytes):
            return bytes.withUnsafeBytes { raw in
                sqlite_nio_sqlite3_bind_blob(statement, index, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(raw.count), transient)
            }
        }
    }

    private static func column(_ index: Int32, of statement: OpaquePointer) -> SQLiteValue {
        switch sqlite_nio_sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER:
            return .integer(Int(sqlite_nio_sqlite3_column_int64(statement, index)))
        case SQLITE_FLOAT:
            return .float(sqlite_nio_sqlite3_column_double(statement, index))
        case SQLITE_TEXT:
            guard let text = sqlite_nio_sqlite3_column_text(statement, index) else { return .text("") }
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, index))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, index))
            guard let blob = sqlite_nio_sqlite3_column_blob(statement, index), count > 0 else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: blob, count: count)))
        default:
            return .null
        }
    }

    private static func failure(_ status: Int32, _ database: OpaquePointer) -> SQLiteFailure {
        SQLiteFailure(code: sqlite_nio_sqlite3_extended_errcode(database), message: String(cString: sqlite_nio_sqlite3_errmsg(database)))
    }
}
