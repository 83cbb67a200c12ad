public import TroupeActors
public import TroupeStore

/// The runtime's actor-state store on the embedded SQLite engine: one row per actor in its own table
/// (`type`, `key`, `version`, the state bytes as a BLOB), compare-and-set on the version in one statement.
///
/// It shares the database (and its locking) with the ``SQLiteDocumentStore`` it is opened on, but skips
/// the document layer: no BSON document, no Extended JSON, no Base64 of the state on every write.
/// (``DocumentActorStateStore`` on the same engine stores the same thing as documents; use it when the
/// actor states must be readable as a collection.)
public struct SQLiteActorStateStore: ActorStateStore {
    public let store: SQLiteDocumentStore
    public let table: String

    /// Opens the store on `store`'s database, creating `table` when it does not exist.
    public init(store: SQLiteDocumentStore, table: String = "actor_state") async throws(DocumentStoreError) {
        guard !table.isEmpty, table.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }) else {
            throw DocumentStoreError(.invalidOperation, "actor-state table \"\(table)\" must be ASCII letters, digits and _")
        }
        self.store = store
        self.table = "\"a_\(table)\""
        try await store.execute(exclusive: true,
            "CREATE TABLE IF NOT EXISTS \(self.table) (type TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, state BLOB NOT NULL, PRIMARY KEY (type, key)) WITHOUT ROWID")
    }

    public func load(type: String, key: String) async throws -> VersionedState? {
        let rows = try await store.execute("SELECT version, state FROM \(table) WHERE type = ? AND key = ?", [.text(type), .text(key)])
        guard let row = rows.first, row.count == 2, case .integer(let version) = row[0] else { return nil }
        switch row[1] {
        case .blob(let bytes): return VersionedState(bytes: bytes, version: Int64(version))
        default: throw DocumentStoreError(.engine, "the stored state of \(type)/\(key) is not a BLOB")
        }
    }

    public func compareAndSet(type: String, key: String, expectedVersion: Int64, bytes: [UInt8]) async throws -> Bool {
        if expectedVersion == 0 {
            let inserted: Result<Void, DocumentStoreError>
            do throws(DocumentStoreError) {
                try await store.execute("INSERT INTO \(table) (type, key, version, state) VALUES (?, ?, 1, ?)", [.text(type), .text(key), .blob(bytes)])
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
            [.integer(Int(expectedVersion + 1)), .blob(bytes), .text(type), .text(key), .integer(Int(expectedVersion))])
        return !rows.isEmpty
    }

    public func delete(type: String, key: String) async throws {
        try await store.execute("DELETE FROM \(table) WHERE type = ? AND key = ?", [.text(type), .text(key)])
    }
}
