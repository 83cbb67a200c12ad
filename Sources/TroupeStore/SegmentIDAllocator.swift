import TroupeBSON

/// Dense ids from ranges reserved in the DocumentStore by compare-and-set (the "segment" scheme):
/// each reservation takes `step` ids; the next range is fetched in the background once a tenth of the
/// current one is used, so callers rarely wait on the store.
public actor SegmentIDAllocator {
    /// The sequence's name (one document per name).
    public let name: String
    /// Ids reserved per trip to the store.
    public let step: Int64
    private let collection: DocumentCollection<Segment>
    private var current: ClosedRange<Int64>?
    private var nextValue: Int64 = 0
    private var buffered: ClosedRange<Int64>?
    private var prefetch: Task<ClosedRange<Int64>, any Error>?

    struct Segment: Codable, Sendable {
        var _id: String
        var max: Int64
    }

    /// The prefetch belongs to this allocator: it ends with it (a reservation cut short wastes at most one range).
    deinit { prefetch?.cancel() }

    /// An allocator for sequence `name` in `collection` of `store`, reserving `step` ids at a time.
    public init(store: DocumentStore, name: String, step: Int64 = 1000, collection: String = "id_segments") async throws(DocumentStoreError) {
        guard step > 0 else { throw DocumentStoreError(.invalidOperation, "segment step must be positive") }
        self.name = name
        self.step = step
        self.collection = try await store.collection(collection, of: Segment.self)
    }

    /// Reserves the next range: read the high-water mark, write it + step if nobody else did meanwhile.
    private static func reserve(_ collection: DocumentCollection<Segment>, name: String, step: Int64) async throws -> ClosedRange<Int64> {
        for _ in 0..<64 {
            let found = try await collection.get(.string(name))
            let start = found?.value.max ?? 0
            let outcome: DocumentStoreError?
            do throws(DocumentStoreError) {
                try await collection.save(Segment(_id: name, max: start + step), expectedVersion: found?.version ?? 0)
                outcome = nil
            } catch {
                outcome = error
            }
            guard let outcome else { return (start + 1)...(start + step) }
            guard outcome.kind == .versionConflict || outcome.kind == .duplicateKey else { throw outcome }
        }
        throw DocumentStoreError(.versionConflict, "segment \(name) kept conflicting with other allocators")
    }

    /// The next id (strictly increasing within this allocator; unique across allocators of the same name).
    public func next() async throws -> Int64 {
        if current == nil || nextValue > current!.upperBound {
            if let buffered {
                current = buffered
                self.buffered = nil
            } else if let prefetch {
                current = try await prefetch.value
                self.prefetch = nil
            } else {
                current = try await Self.reserve(collection, name: name, step: step)
            }
            nextValue = current!.lowerBound
        }
        let id = nextValue
        nextValue += 1
        // Double buffer: start fetching the next segment once 10% of this one is used.
        if buffered == nil, prefetch == nil, let current, id - current.lowerBound >= step / 10 {
            let collection = self.collection, name = self.name, step = self.step
            prefetch = Task { try await Self.reserve(collection, name: name, step: step) }
        }
        if let task = prefetch, buffered == nil, nextValue > (current?.upperBound ?? 0) {
            buffered = try await task.value
            prefetch = nil
        }
        return id
    }
}
