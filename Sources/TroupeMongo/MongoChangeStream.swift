import Synchronization
public import TroupeBSON
import TroupeCore

/// A change stream on a collection: `aggregate` with `$changeStream`, then `getMore` waits for events.
/// The resume token of every event is kept; after a resumable error (network, failover) the stream
/// reopens with `resumeAfter`, so no event is lost or repeated.
public final class MongoChangeStream: AsyncSequence, Sendable {
    public typealias Element = BSONDocument

    let collection: MongoCollection<BSONDocument>
    let pipeline: [BSONDocument]
    let options: BSONDocument
    let maxAwaitTime: Duration
    private let state = Guarded(State())

    struct State {
        var cursor: MongoCursor<BSONDocument>?
        var resumeToken: BSONValue?
    }

    init(collection: MongoCollection<BSONDocument>, pipeline: [BSONDocument], options: BSONDocument, maxAwaitTime: Duration) {
        self.collection = collection
        self.pipeline = pipeline
        self.options = options
        self.maxAwaitTime = maxAwaitTime
    }

    /// The token to resume after the last event returned.
    public var resumeToken: BSONValue? { state.withLock { $0.resumeToken } }

    static let resumableCodes: Set<Int> = [6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 63, 150, 13388, 234, 133, 43]

    func open() async throws(MongoError) {
        var stage = options
        if let token = state.withLock({ $0.resumeToken }) {
            stage["resumeAfter"] = token
            stage["startAtOperationTime"] = nil
        }
        let command: BSONDocument = [
            "aggregate": .string(collection.name),
            "pipeline": .array([.document(["$changeStream": .document(stage)])] + pipeline.map { .document($0) }),
            "cursor": [:],
        ]
        let cursor = try await collection.openCursor(command, kind: .read(.primary), session: nil, batchSize: nil, maxAwaitTime: maxAwaitTime)
        state.withLock { $0.cursor = cursor }
    }

    /// The next change event; waits (in `maxAwaitTime` steps) until one arrives. Returns nil only if
    /// the stream was invalidated (collection dropped).
    public func next() async throws(MongoError) -> BSONDocument? {
        var resumed = false
        while true {
            if state.withLock({ $0.cursor == nil }) { try await open() }
            guard let cursor = state.withLock({ $0.cursor }) else { continue }
            do throws(MongoError) {
                if cursor.batchExhausted {
                    let id = cursor.id
                    if id == 0 { return nil }
                    try await cursor.getMore(id)
                    if cursor.batchExhausted {
                        if let token = cursor.postBatchResumeToken { state.withLock { $0.resumeToken = token } }
                        try Task.checkCancellation()
                        continue
                    }
                }
                guard let event = try await cursor.nextDocument() else { return nil }
                guard let token = event["_id"] else {
                    throw MongoError(.protocolViolation, "change event without a resume token (_id projected away?)")
                }
                state.withLock { $0.resumeToken = token }
                return event
            } catch {
                if error.kind == .invalidUse, error.message.contains("cancel") { throw error }
                let resumable = error.kind == .connectionClosed || error.kind == .timeout || error.hasLabel("ResumableChangeStreamError")
                    || (error.kind == .server && Self.resumableCodes.contains(error.code ?? -1))
                guard resumable, !resumed else { throw error }
                resumed = true
                await cursor.close()
                state.withLock { $0.cursor = nil }
            }
        }
    }

    /// Stops the stream and kills its server cursor.
    public func close() async {
        let cursor = state.withLock { state -> MongoCursor<BSONDocument>? in
            defer { state.cursor = nil }
            return state.cursor
        }
        await cursor?.close()
    }

    /// Iterates the change events as they come.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let stream: MongoChangeStream
        public mutating func next() async throws -> BSONDocument? { try await stream.next() }
    }

    /// An iterator over the change events.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: self) }
}

extension Task where Success == Never, Failure == Never {
    static func checkCancellation() throws(MongoError) {
        if Task.isCancelled { throw MongoError(.invalidUse, "change stream cancelled") }
    }
}

extension MongoCollection {
    /// Watches changes to this collection. `fullDocument: "updateLookup"` adds the current document to updates.
    public func watch(_ pipeline: [BSONDocument] = [], fullDocument: String? = nil, resumeAfter: BSONValue? = nil,
                      maxAwaitTime: Duration = .seconds(1)) async throws(MongoError) -> MongoChangeStream {
        var options = BSONDocument()
        if let fullDocument { options["fullDocument"] = .string(fullDocument) }
        if let resumeAfter { options["resumeAfter"] = resumeAfter }
        let stream = MongoChangeStream(collection: database.collection(name), pipeline: pipeline, options: options, maxAwaitTime: maxAwaitTime)
        try await stream.open()
        return stream
    }
}
