#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// SQLite's C API as the embedded store uses it, loaded at run time from the system's shared library
// (libsqlite3.so.0 on Linux — the Swift toolchain itself needs it — libsqlite3.dylib on macOS): no headers,
// no C target, nothing to install to build. Result codes and flags are SQLite's documented values.
let SQLITE_OK: Int32 = 0
let SQLITE_CONSTRAINT: Int32 = 19
let SQLITE_MISUSE: Int32 = 21
let SQLITE_ROW: Int32 = 100
let SQLITE_DONE: Int32 = 101
let SQLITE_INTEGER: Int32 = 1
let SQLITE_FLOAT: Int32 = 2
let SQLITE_TEXT: Int32 = 3
let SQLITE_BLOB: Int32 = 4
let SQLITE_OPEN_READWRITE: Int32 = 0x0000_0002
let SQLITE_OPEN_CREATE: Int32 = 0x0000_0004
let SQLITE_OPEN_URI: Int32 = 0x0000_0040
let SQLITE_OPEN_NOMUTEX: Int32 = 0x0000_8000
let SQLITE_PREPARE_PERSISTENT: UInt32 = 0x01
/// `SQLITE_TRANSIENT`: SQLite copies bound text and blobs before the bind call returns. Passed where C takes a
/// destructor pointer (a pointer-sized argument either way).
let SQLITE_TRANSIENT = -1

/// The functions of the SQLite library, resolved once per process.
struct SQLiteLibrary: Sendable {
    typealias Database = OpaquePointer
    typealias Statement = OpaquePointer

    let open: @Sendable @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<Database?>?, Int32, UnsafePointer<CChar>?) -> Int32
    let errmsg: @Sendable @convention(c) (Database?) -> UnsafePointer<CChar>?
    let extendedErrcode: @Sendable @convention(c) (Database?) -> Int32
    let close: @Sendable @convention(c) (Database?) -> Int32
    let busyTimeout: @Sendable @convention(c) (Database?, Int32) -> Int32
    let prepare: @Sendable @convention(c) (Database?, UnsafePointer<CChar>?, Int32, UInt32, UnsafeMutablePointer<Statement?>?,
                                           UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32
    let reset: @Sendable @convention(c) (Statement?) -> Int32
    let clearBindings: @Sendable @convention(c) (Statement?) -> Int32
    let finalize: @Sendable @convention(c) (Statement?) -> Int32
    let step: @Sendable @convention(c) (Statement?) -> Int32
    let bindNull: @Sendable @convention(c) (Statement?, Int32) -> Int32
    let bindInt64: @Sendable @convention(c) (Statement?, Int32, Int64) -> Int32
    let bindDouble: @Sendable @convention(c) (Statement?, Int32, Double) -> Int32
    let bindText: @Sendable @convention(c) (Statement?, Int32, UnsafePointer<CChar>?, Int32, Int) -> Int32
    let bindBlob: @Sendable @convention(c) (Statement?, Int32, UnsafeRawPointer?, Int32, Int) -> Int32
    let columnCount: @Sendable @convention(c) (Statement?) -> Int32
    let columnType: @Sendable @convention(c) (Statement?, Int32) -> Int32
    let columnInt64: @Sendable @convention(c) (Statement?, Int32) -> Int64
    let columnDouble: @Sendable @convention(c) (Statement?, Int32) -> Double
    let columnText: @Sendable @convention(c) (Statement?, Int32) -> UnsafePointer<UInt8>?
    let columnBlob: @Sendable @convention(c) (Statement?, Int32) -> UnsafeRawPointer?
    let columnBytes: @Sendable @convention(c) (Statement?, Int32) -> Int32

    /// The process's SQLite, or why it could not be loaded.
    static let shared: Result<SQLiteLibrary, SQLiteFailure> = load()

    #if canImport(Darwin)
    static let candidates = ["/usr/lib/libsqlite3.dylib", "libsqlite3.dylib"]
    #else
    static let candidates = ["libsqlite3.so.0", "libsqlite3.so"]
    #endif

    private static func load() -> Result<SQLiteLibrary, SQLiteFailure> {
        guard let handle = candidates.lazy.compactMap({ dlopen($0, RTLD_NOW | RTLD_LOCAL) }).first else {
            return .failure(SQLiteFailure(code: SQLITE_MISUSE, message:
                "the SQLite library could not be loaded (tried \(candidates.joined(separator: ", "))); install it (Debian: apt-get install libsqlite3-0)"))
        }
        return Result { () throws(SQLiteFailure) in try SQLiteLibrary(handle) }
    }

    private init(_ handle: UnsafeMutableRawPointer) throws(SQLiteFailure) {
        func function<Function>(_ name: String) throws(SQLiteFailure) -> Function {
            guard let address = dlsym(handle, name) else {
                throw SQLiteFailure(code: SQLITE_MISUSE, message: "the SQLite library lacks \(name) (SQLite 3.20 or later is needed)")
            }
            // A C function's address as the C function type it has (SQLite's documented signature).
            return unsafeBitCast(address, to: Function.self)
        }
        open = try function("sqlite3_open_v2")
        errmsg = try function("sqlite3_errmsg")
        extendedErrcode = try function("sqlite3_extended_errcode")
        close = try function("sqlite3_close_v2")
        busyTimeout = try function("sqlite3_busy_timeout")
        prepare = try function("sqlite3_prepare_v3")
        reset = try function("sqlite3_reset")
        clearBindings = try function("sqlite3_clear_bindings")
        finalize = try function("sqlite3_finalize")
        step = try function("sqlite3_step")
        bindNull = try function("sqlite3_bind_null")
        bindInt64 = try function("sqlite3_bind_int64")
        bindDouble = try function("sqlite3_bind_double")
        bindText = try function("sqlite3_bind_text")
        bindBlob = try function("sqlite3_bind_blob")
        columnCount = try function("sqlite3_column_count")
        columnType = try function("sqlite3_column_type")
        columnInt64 = try function("sqlite3_column_int64")
        columnDouble = try function("sqlite3_column_double")
        columnText = try function("sqlite3_column_text")
        columnBlob = try function("sqlite3_column_blob")
        columnBytes = try function("sqlite3_column_bytes")
    }
}
