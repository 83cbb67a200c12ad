import Metrics
import ServiceContextModule
import Tracing
import TroupeCore
public import TroupeBSON
import Logging

extension MongoClient {
    enum CommandKind {
        case read(MongoReadPreference)
        /// A write, retried as `MongoWriteRetry` says.
        case write(MongoWriteRetry)
        /// Neither retried nor decorated with a read/write concern (cursor management, admin commands).
        case other
    }

    /// Runs a command with a client span (`mongo.<command>`) and the command metrics
    /// (`troupe_mongo_commands_total`, `troupe_mongo_command_failures_total`, `troupe_mongo_command_duration_seconds`).
    func execute(
        _ command: BSONDocument,
        database: String,
        kind: CommandKind,
        session: MongoSession?,
        sequences: [(String, [BSONDocument])] = [],
        pool pinned: MongoConnectionPool? = nil
    ) async throws(MongoError) -> (BSONDocument, MongoConnectionPool) {
        let name = command.keys.first ?? "command"
        let dimensions = [("command", name)]
        let span = InstrumentationSystem.tracer.startSpan("mongo.\(name)", context: ServiceContext.current ?? .topLevel, ofKind: .client)
        if span.isRecording {
            span.attributes["db.system"] = "mongodb"
            span.attributes["db.namespace"] = database
            span.attributes["db.operation.name"] = name
        }
        let started = ContinuousClock.now
        defer {
            Timer(label: MetricFamilies.mongoCommandDuration.name, dimensions: dimensions).recordNanoseconds((ContinuousClock.now - started).nanosecondsClamped)
            span.end()
        }
        Counter(label: MetricFamilies.mongoCommands.name, dimensions: dimensions).increment()
        do {
            return try await executeUntraced(command, database: database, kind: kind, session: session, sequences: sequences, pool: pinned)
        } catch {
            Counter(label: MetricFamilies.mongoCommandFailures.name, dimensions: dimensions + [("kind", "\(error.kind)")]).increment()
            span.recordError(error)
            if let code = error.code { span.attributes["db.response.status_code"] = String(code) }
            throw error
        }
    }

    /// Runs a command where it belongs: selects the server, adds session, cluster time, read preference and
    /// concerns, and retries once on a retryable error (retryable writes and reads).
    private func executeUntraced(
        _ command: BSONDocument,
        database: String,
        kind: CommandKind,
        session: MongoSession?,
        sequences: [(String, [BSONDocument])] = [],
        pool pinned: MongoConnectionPool? = nil
    ) async throws(MongoError) -> (BSONDocument, MongoConnectionPool) {
        var command = command
        var inTransaction = false
        var implicit: MongoSessionPool.ServerSession?
        if let session {
            inTransaction = session.decorate(&command, isWrite: { if case .write = kind { return true }; return false }()).inTransaction
        } else {
            implicit = sessionPool.checkout()
            command["lsid"] = .document(implicit!.lsid)
        }
        defer { if let implicit { sessionPool.checkin(implicit) } }

        var retryable = false
        var operation: MongoServerSelector.Operation = .write
        switch kind {
        case .read(let preference):
            operation = inTransaction ? .write : .read(preference)
            retryable = settings.retryReads && !inTransaction
            if !inTransaction, let level = settings.readConcernLevel, command["readConcern"] == nil {
                command["readConcern"] = ["level": .string(level)]
            }
            if preference.mode != .primary, !inTransaction {
                var pref: BSONDocument = ["mode": .string(preference.mode.rawValue)]
                if !preference.tagSets.isEmpty {
                    pref["tags"] = .array(preference.tagSets.map { set in .document(BSONDocument(set.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })) })
                }
                if let staleness = preference.maxStalenessSeconds { pref["maxStalenessSeconds"] = .int32(Int32(staleness)) }
                command["$readPreference"] = .document(pref)
            }
        case .write(let retry):
            if !inTransaction, let concern = settings.writeConcern, command["writeConcern"] == nil {
                command["writeConcern"] = .document(concern)
            }
            let unacknowledged = command["writeConcern"]?.documentValue?["w"] == .int32(0)
            if retry != .never, settings.retryWrites, !inTransaction, !unacknowledged {
                if retry == .retryableWrite {
                    let server = session?.server ?? implicit!
                    command["txnNumber"] = .int64(server.nextTxnNumber())
                }
                retryable = true
            }
        case .other:
            break
        }
        if let clusterTime { command["$clusterTime"] = clusterTime }

        var attempt = 0
        var lastError: MongoError?
        while true {
            attempt += 1
            do throws(MongoError) {
                let pool: MongoConnectionPool
                if let pinned { pool = pinned } else { pool = try await selectServer(operation) }
                do throws(MongoError) {
                    let connection = try await pool.connection()
                    let reply = try await connection.rawCommand(command, database: database, sequences: sequences)
                    gossip(reply)
                    try MongoConnection.check(reply)
                    try Self.checkWriteConcern(reply)
                    return (reply, pool)
                } catch {
                    if error.kind == .connectionClosed || error.kind == .timeout || error.kind == .connectFailed {
                        markUnknown(pool.address, error: error)
                    } else if error.kind == .server, let code = error.code, Self.notPrimaryCodes.contains(code) {
                        markUnknown(pool.address, error: error)
                    }
                    throw error
                }
            } catch {
                var error = error
                if inTransaction, error.kind == .connectionClosed || error.kind == .serverSelection, !error.hasLabel("TransientTransactionError") {
                    error.labels.append("TransientTransactionError")
                }
                // The original error is reported if the retry cannot even select a server.
                if attempt == 2, error.kind == .serverSelection, let lastError { throw lastError }
                guard retryable, attempt == 1, pinned == nil, error.isRetryable, error.kind != .serverSelection else { throw error }
                if case .write = kind, error.kind == .server, !error.hasLabel("RetryableWriteError"), !MongoError.retryableCodes.contains(error.code ?? -1) {
                    throw error
                }
                logger.debug("retrying after a retryable error", metadata: ["mongo.error": "\(error)"])
                lastError = error
            }
        }
    }

    static let notPrimaryCodes: Set<Int> = [10107, 13435, 13436, 11600, 11602, 189, 91]

    static func checkWriteConcern(_ reply: BSONDocument) throws(MongoError) {
        guard case .document(let wce)? = reply["writeConcernError"] else { return }
        var labels = reply["errorLabels"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if let code = wce["code"]?.intValue, MongoError.retryableCodes.contains(code), !labels.contains("RetryableWriteError") {
            labels.append("RetryableWriteError")
        }
        throw MongoError(.server, "write concern error: \(wce["errmsg"]?.stringValue ?? "")", code: wce["code"]?.intValue,
                         codeName: wce["codeName"]?.stringValue, labels: labels, reply: reply.extendedJSON(.relaxed))
    }

    /// A command on the primary (transaction commit/abort, admin).
    func runOnPrimary(_ command: BSONDocument, database: String, retryable: Bool) async throws(MongoError) -> BSONDocument {
        let pool = try await selectServer(.write)
        let connection = try await pool.connection()
        var command = command
        if let clusterTime { command["$clusterTime"] = clusterTime }
        do throws(MongoError) {
            let reply = try await connection.rawCommand(command, database: database)
            gossip(reply)
            try MongoConnection.check(reply)
            try Self.checkWriteConcern(reply)
            return reply
        } catch {
            if error.kind == .connectionClosed { markUnknown(pool.address, error: error) }
            throw error
        }
    }

    /// Runs any command on the selected server (primary unless a read preference is given).
    @discardableResult
    public func runCommand(_ command: BSONDocument, database: String = "admin", readPreference: MongoReadPreference? = nil,
                           session: MongoSession? = nil) async throws(MongoError) -> BSONDocument {
        let kind: CommandKind = readPreference.map { .read($0) } ?? .other
        return try await execute(command, database: database, kind: kind, session: session).0
    }
}
