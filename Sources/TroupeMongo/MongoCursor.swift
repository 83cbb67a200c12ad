import Synchronization
public import TroupeBSON
import TroupeCore

/// A server cursor: the first batch from `find` / `aggregate`, then `getMore` on the same server and
/// session until exhausted. Iterate with `for try await`; ``close()`` (or dropping the cursor) kills it.
public final class MongoCursor<T: Decodable & Sendable>: AsyncSequence, Sendable {
    public typealias Element = T

    let client: MongoClient
    let pool: MongoConnectionPool
    let session: MongoSession
    let ownsSession: Bool
    let database: String
    let collection: String
    let batchSize: Int?
    let maxAwaitTime: Duration?
    private let state: Guarded<State>

    struct State {
        var cursorID: Int64
        var buffer: [BSONValue]
        var position = 0
        var postBatchResumeToken: BSONValue?
        var closed = false
    }

    init(client: MongoClient, pool: MongoConnectionPool, session: MongoSession, ownsSession: Bool, reply: BSONDocument,
         batchSize: Int?, maxAwaitTime: Duration? = nil) throws(MongoError) {
        guard case .document(let cursor)? = reply["cursor"], let id = cursor["id"], let ns = cursor["ns"]?.stringValue else {
            throw MongoError(.protocolViolation, "reply has no cursor: \(reply.extendedJSON())")
        }
        let parts = ns.split(separator: ".", maxSplits: 1)
        self.client = client
        self.pool = pool
        self.session = session
        self.ownsSession = ownsSession
        self.database = String(parts.first ?? "")
        self.collection = parts.count > 1 ? String(parts[1]) : ""
        self.batchSize = batchSize
        self.maxAwaitTime = maxAwaitTime
        let first = cursor["firstBatch"]?.arrayValue ?? []
        state = Guarded(State(cursorID: Int64(id.intValue ?? 0), buffer: first, postBatchResumeToken: cursor["postBatchResumeToken"]))
    }

    deinit {
        let (id, closed) = state.withLock { ($0.cursorID, $0.closed) }
        guard id != 0, !closed else { return }
        let client = client, pool = pool, session = session, owns = ownsSession, db = database, coll = collection
        client.background.spawn {
            _ = try? await client.execute(["killCursors": .string(coll), "cursors": [.int64(id)]], database: db, kind: .other,
                                          session: session, pool: pool)
            if owns { await session.end() }
        }
    }

    /// The server cursor id (0 once exhausted).
    public var id: Int64 { state.withLock { $0.cursorID } }

    /// The resume token after the last batch (change streams).
    var postBatchResumeToken: BSONValue? { state.withLock { $0.postBatchResumeToken } }

    /// The next raw document, fetching more batches as needed; nil when exhausted.
    public func nextDocument() async throws(MongoError) -> BSONDocument? {
        while true {
            let step: (BSONValue?, Int64, Bool) = state.withLock { state in
                if state.position < state.buffer.count {
                    defer { state.position += 1 }
                    return (state.buffer[state.position], state.cursorID, state.closed)
                }
                return (nil, state.cursorID, state.closed)
            }
            if let value = step.0 {
                guard case .document(let doc) = value else { throw MongoError(.protocolViolation, "cursor returned a non-document") }
                return doc
            }
            if step.1 == 0 || step.2 {
                await finish()
                return nil
            }
            try await getMore(step.1)
        }
    }

    /// Fetches one more batch (empty batches are possible for tailable / change-stream cursors).
    func getMore(_ id: Int64) async throws(MongoError) {
        var command: BSONDocument = ["getMore": .int64(id), "collection": .string(collection)]
        if let batchSize { command["batchSize"] = .int32(Int32(clamping: batchSize)) }
        if let maxAwaitTime { command["maxTimeMS"] = .int64(maxAwaitTime.nanosecondsClamped / 1_000_000) }
        let reply: BSONDocument
        do {
            reply = try await client.execute(command, database: database, kind: .other, session: session, pool: pool).0
        } catch {
            state.withLock { $0.closed = true }
            if ownsSession { await session.end() }
            throw error
        }
        guard case .document(let cursor)? = reply["cursor"] else { throw MongoError(.protocolViolation, "getMore reply has no cursor") }
        state.withLock { state in
            state.cursorID = Int64(cursor["id"]?.intValue ?? 0)
            state.buffer = cursor["nextBatch"]?.arrayValue ?? []
            state.position = 0
            if let token = cursor["postBatchResumeToken"] { state.postBatchResumeToken = token }
        }
    }

    /// Whether the current batch is used up.
    var batchExhausted: Bool { state.withLock { $0.position >= $0.buffer.count } }

    private func finish() async {
        let first = state.withLock { state -> Bool in
            defer { state.closed = true }
            return !state.closed
        }
        if first, ownsSession { await session.end() }
    }

    /// Kills the server cursor if it is still open.
    public func close() async {
        let id = state.withLock { state -> Int64 in
            defer { state.cursorID = 0 }
            return state.closed ? 0 : state.cursorID
        }
        if id != 0 {
            _ = try? await client.execute(["killCursors": .string(collection), "cursors": [.int64(id)]], database: database,
                                          kind: .other, session: session, pool: pool)
        }
        await finish()
    }

    /// Every remaining document.
    public func toArray() async throws(MongoError) -> [T] {
        var out = [T]()
        while let doc = try await nextDocument() { out.append(try decode(doc)) }
        return out
    }

    func decode(_ doc: BSONDocument) throws(MongoError) -> T {
        if let same = doc as? T { return same }
        do {
            return try BSONDecoder().decode(T.self, from: doc)
        } catch {
            throw MongoError(.bson, "cannot decode \(T.self) from \(collection): \(error.message)", underlying: error)
        }
    }

    /// Iterates the cursor's documents, fetching further batches as needed.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let cursor: MongoCursor<T>
        public mutating func next() async throws -> T? {
            guard let doc = try await cursor.nextDocument() else { return nil }
            return try cursor.decode(doc)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(cursor: self) }
}
