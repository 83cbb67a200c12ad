import Foundation
import Synchronization
public import TroupeBSON
import TroupeCore

/// Server session ids, reused across operations (as drivers must, to keep the server's session table small).
final class MongoSessionPool: Sendable {
    private let free = Guarded<[ServerSession]>([])

    final class ServerSession: Sendable {
        let lsid: BSONDocument
        let txnNumber = Atomic<Int64>(0)
        init() {
            lsid = ["id": .binary(BSONBinary(subtype: BSONBinary.uuid, data: withUnsafeBytes(of: UUID().uuid) { Array($0) }))]
        }
        func nextTxnNumber() -> Int64 { txnNumber.add(1, ordering: .relaxed).newValue }
    }

    func checkout() -> ServerSession {
        free.withLock { $0.popLast() } ?? ServerSession()
    }

    func checkin(_ session: ServerSession) {
        free.withLock { $0.append(session) }
    }
}

/// A logical session: causally related operations and multi-document transactions.
///
/// ```swift
/// try await client.withSession { session in
///     try await session.withTransaction {
///         try await orders.insertOne(order, session: session)
///         try await stock.updateOne(["_id": sku], ["$inc": ["n": -1]], session: session)
///     }
/// }
/// ```
public final class MongoSession: Sendable {
    let client: MongoClient
    let server: MongoSessionPool.ServerSession
    private let state = Guarded(State())

    struct State {
        var transaction: TransactionState = .none
        var txnNumber: Int64 = 0
        var ended = false
        var pinnedPrimary: MongoConnectionPool?
    }

    enum TransactionState: Equatable {
        case none, starting, inProgress, committed, aborted
    }

    init(client: MongoClient) {
        self.client = client
        self.server = client.sessionPool.checkout()
    }

    /// The session's id as sent to the server.
    public var lsid: BSONDocument { server.lsid }
    /// Whether a transaction is started and not yet committed or aborted.
    public var isInTransaction: Bool {
        state.withLock { $0.transaction == .starting || $0.transaction == .inProgress }
    }

    /// Returns the server session to the pool; an open transaction is aborted first.
    public func end() async {
        if isInTransaction { try? await abortTransaction() }
        let first = state.withLock { state -> Bool in
            defer { state.ended = true }
            return !state.ended
        }
        if first { client.sessionPool.checkin(server) }
    }

    // MARK: Transactions

    /// Starts a transaction: the next operations with this session belong to it.
    /// - Throws: ``MongoError`` with kind `invalidUse` when one is already in progress or the session has ended.
    public func startTransaction() throws(MongoError) {
        try state.withLock { (state: inout State) throws(MongoError) in
            guard !state.ended else { throw MongoError(.invalidUse, "the session has ended") }
            guard state.transaction != .starting, state.transaction != .inProgress else {
                throw MongoError(.invalidUse, "a transaction is already in progress")
            }
            state.transaction = .starting
            state.txnNumber = server.nextTxnNumber()
        }
    }

    /// Commits; retries once on `UnknownTransactionCommitResult` / network errors (with w: majority).
    public func commitTransaction() async throws(MongoError) {
        let (transaction, txnNumber) = state.withLock { ($0.transaction, $0.txnNumber) }
        switch transaction {
        case .none: throw MongoError(.invalidUse, "no transaction started")
        case .aborted: throw MongoError(.invalidUse, "cannot commit after abortTransaction")
        case .starting:
            // Nothing was sent: an empty transaction commits trivially.
            state.withLock { $0.transaction = .committed }
            return
        case .inProgress, .committed:
            break
        }
        var command: BSONDocument = ["commitTransaction": 1, "lsid": .document(lsid), "txnNumber": .int64(txnNumber), "autocommit": false]
        do {
            _ = try await client.runOnPrimary(command, database: "admin", retryable: false)
        } catch {
            if error.kind == .connectionClosed || error.isRetryable || error.hasLabel("UnknownTransactionCommitResult") {
                command["writeConcern"] = ["w": "majority", "wtimeout": .int64(10_000)]
                do {
                    _ = try await client.runOnPrimary(command, database: "admin", retryable: false)
                } catch {
                    var labelled = error
                    if !labelled.labels.contains("UnknownTransactionCommitResult"), error.kind != .server || error.isRetryable {
                        labelled.labels.append("UnknownTransactionCommitResult")
                    }
                    throw labelled
                }
            } else {
                throw error
            }
        }
        state.withLock { $0.transaction = .committed }
    }

    /// Aborts the transaction; its writes are discarded.
    public func abortTransaction() async throws(MongoError) {
        let (transaction, txnNumber) = state.withLock { ($0.transaction, $0.txnNumber) }
        switch transaction {
        case .none, .committed: throw MongoError(.invalidUse, "no transaction in progress to abort")
        case .aborted: throw MongoError(.invalidUse, "abortTransaction called twice")
        case .starting:
            state.withLock { $0.transaction = .aborted }
            return
        case .inProgress:
            break
        }
        state.withLock { $0.transaction = .aborted }
        // Errors of abort are ignored, as the specification says: the server aborts on its own timeout.
        _ = try? await client.runOnPrimary(
            ["abortTransaction": 1, "lsid": .document(lsid), "txnNumber": .int64(txnNumber), "autocommit": false],
            database: "admin", retryable: false)
    }

    /// Runs `body` in a transaction and commits, retrying the whole body on `TransientTransactionError`
    /// and the commit on `UnknownTransactionCommitResult`, for up to `timeout` (120 s by default).
    public func withTransaction<T: Sendable>(timeout: Duration = .seconds(120), _ body: @Sendable () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + timeout
        while true {
            try startTransaction()
            let result: T
            do {
                result = try await body()
            } catch {
                if isInTransaction { try? await abortTransaction() }
                if let mongo = error as? MongoError, mongo.hasLabel("TransientTransactionError"), ContinuousClock.now < deadline { continue }
                throw error
            }
            if !isInTransaction { return result }  // the body committed or aborted itself
            while true {
                do {
                    try await commitTransaction()
                    return result
                } catch {
                    if error.hasLabel("UnknownTransactionCommitResult"), error.code != 50, ContinuousClock.now < deadline { continue }
                    if error.hasLabel("TransientTransactionError"), ContinuousClock.now < deadline { break }
                    throw error
                }
            }
        }
    }

    /// Adds the session (and transaction) fields to a command.
    func decorate(_ command: inout BSONDocument, isWrite: Bool) -> (inTransaction: Bool, txnNumber: Int64?) {
        command["lsid"] = .document(lsid)
        let (transaction, txnNumber) = state.withLock { state -> (TransactionState, Int64) in
            let current = state.transaction
            if current == .starting { state.transaction = .inProgress }
            return (current, state.txnNumber)
        }
        switch transaction {
        case .starting:
            command["txnNumber"] = .int64(txnNumber)
            command["startTransaction"] = true
            command["autocommit"] = false
            command["readConcern"] = nil
            command["writeConcern"] = nil
            return (true, txnNumber)
        case .inProgress:
            command["txnNumber"] = .int64(txnNumber)
            command["autocommit"] = false
            command["readConcern"] = nil
            command["writeConcern"] = nil
            return (true, txnNumber)
        default:
            return (false, nil)
        }
    }
}

extension MongoClient {
    /// A new explicit session; call ``MongoSession/end()`` when done (or use ``withSession(_:)``).
    public func startSession() -> MongoSession { MongoSession(client: self) }

    /// Runs `body` with a new session and ends it afterwards (aborting an open transaction).
    public func withSession<T: Sendable>(_ body: (MongoSession) async throws -> T) async throws -> T {
        let session = startSession()
        do {
            let result = try await body(session)
            await session.end()
            return result
        } catch {
            await session.end()
            throw error
        }
    }
}
