import Synchronization
public import TroupeCore

/// The embedded engine: every primitive in process memory, with the same semantics as the Redis engine.
public final class InMemoryBusEngine: BusEngine {
    public let engineName = "memory"
    private let state = Guarded(State())
    private let signal = ChangeSignal()

    private struct Pending {
        var consumer: String
        var deliveredAtMS: Int64
    }

    private struct Group {
        var next = 0  // index into entries of the first undelivered one
        var pending: [Int: Pending] = [:]
    }

    private struct Queue {
        var entries: [(seq: Int, storedMS: Int64, message: BusMessage)] = []
        var nextSeq = 1
        var groups: [String: Group] = [:]

        func index(of seq: Int) -> Int? {
            var low = 0, high = entries.count - 1
            while low <= high {
                let mid = (low + high) / 2
                if entries[mid].seq == seq { return mid }
                if entries[mid].seq < seq { low = mid + 1 } else { high = mid - 1 }
            }
            return nil
        }
    }

    private struct State {
        var topics: [String: [Queue]] = [:]
        var scheduled: [(at: Int64, message: BusMessage)] = []
        /// The earliest delivery time in `scheduled` (Int64.max when empty): the promoter's check is O(1) until then.
        var earliestScheduled = Int64.max
        var halfs: [String: [String: (message: BusMessage, createdMS: Int64, checks: Int)]] = [:]
        /// Messages by key: (topic, queue, seq). Ids have no index: lookups by id are rare (admin), and
        /// an index of every id grew by rehashing under this lock (see `lookup(id:)`).
        var byKey = ShardedIndex<[(queue: Int, seq: Int)]>()
        var leases: [String: (owner: String, expiresMS: Int64)] = [:]
        var retentionMS: Int64 = 72 * 3600 * 1000
        var members: [String: [String: Int64]] = [:]
    }

    /// How long messages are kept, consumed or not (RocketMQ's `fileReservedTime`, 72 h by default).
    public let retention: Duration

    /// The engine's time (delays, leases, retention, blocking reads): the system clock unless given one.
    let clock: any RuntimeClock

    /// An empty engine keeping messages for `retention` (72 h by default) on `clock`.
    public init(retention: Duration = .seconds(72 * 3600), clock: any RuntimeClock = SystemRuntimeClock()) {
        self.retention = retention
        self.clock = clock
        state.withLock { $0.retentionMS = retention.milliseconds }
    }

    /// Drops the queue's entries stored before `cutoff` — in batches of at least an eighth of the queue
    /// (removing from the front moves the rest), so the cost per append stays constant.
    private static func trim(_ state: inout State, topic: String, queue: Int, before cutoff: Int64) {
        let expired: Int
        var keyed: [(seq: Int, key: String)] = []
        do {
            // A scope of its own: the array must be uniquely referenced again before it is changed.
            let entries = state.topics[topic]![queue].entries
            guard let first = entries.first, first.storedMS < cutoff else { return }
            expired = entries.partitioningIndex { $0.storedMS >= cutoff }
            guard expired >= max(1, entries.count / 8) || expired == entries.count else { return }
            for entry in entries[..<expired] {
                for key in entry.message.keys { keyed.append((entry.seq, key)) }
            }
        }
        for (seq, key) in keyed {
            state.byKey.removeFirst(where: { $0.queue == queue && $0.seq == seq }, at: "\(topic)\u{1}\(key)")
        }
        state.topics[topic]![queue].entries.removeFirst(expired)
        for group in state.topics[topic]![queue].groups.keys {
            // Undelivered entries that expired are gone for every group, as on a broker.
            state.topics[topic]![queue].groups[group]!.next = max(0, state.topics[topic]![queue].groups[group]!.next - expired)
        }
    }

    public func createTopic(_ topic: String, queues: Int) async throws(BusError) {
        guard queues > 0 else { throw BusError(.invalidConfiguration, "a topic needs at least one queue") }
        state.withLock { state in
            if state.topics[topic] == nil { state.topics[topic] = Array(repeating: Queue(), count: queues) }
        }
    }

    public func queueCount(_ topic: String) async throws(BusError) -> Int? { state.withLock { $0.topics[topic]?.count } }

    public func topics() async throws(BusError) -> [String] { state.withLock { $0.topics.keys.sorted() } }

    private static func append(_ message: BusMessage, to state: inout State, now: Int64) -> String {
        if state.topics[message.topic] == nil { state.topics[message.topic] = [Queue()] }
        let queue = min(message.queue, state.topics[message.topic]!.count - 1)
        let seq = state.topics[message.topic]![queue].nextSeq
        state.topics[message.topic]![queue].nextSeq += 1
        var stored = message
        stored.queue = queue
        state.topics[message.topic]![queue].entries.append((seq, now, stored))
        Self.trim(&state, topic: message.topic, queue: queue, before: now - state.retentionMS)
        for key in message.keys { state.byKey.append((queue, seq), at: "\(message.topic)\u{1}\(key)") }
        return String(seq)
    }

    public func append(_ message: BusMessage) async throws(BusError) -> String {
        let now = clock.wallClockMilliseconds
        let id = state.withLock { Self.append(message, to: &$0, now: now) }
        signal.notify()
        return id
    }

    public func schedule(_ message: BusMessage, deliverAtMS: Int64) async throws(BusError) {
        state.withLock { state in
            state.scheduled.append((deliverAtMS, message))
            state.earliestScheduled = min(state.earliestScheduled, deliverAtMS)
        }
    }

    public func promoteDue(nowMS: Int64) async throws(BusError) -> Int {
        let moved = state.withLock { state -> Int in
            guard nowMS >= state.earliestScheduled else { return 0 }
            let due = state.scheduled.filter { $0.at <= nowMS }.sorted { $0.at < $1.at }
            state.scheduled.removeAll { $0.at <= nowMS }
            state.earliestScheduled = state.scheduled.lazy.map(\.at).min() ?? .max
            guard !due.isEmpty else { return 0 }
            for item in due { _ = Self.append(item.message, to: &state, now: nowMS) }
            return due.count
        }
        if moved > 0 { signal.notify() }
        return moved
    }

    public func storeHalf(_ message: BusMessage) async throws(BusError) {
        let group = message.producerGroup ?? ""
        state.withLock { $0.halfs[group, default: [:]][message.id] = (message, clock.wallClockMilliseconds, 0) }
    }

    public func resolveHalf(producerGroup: String, id: String, commit: Bool) async throws(BusError) -> Bool {
        let resolved = state.withLock { state -> Bool in
            guard let half = state.halfs[producerGroup]?.removeValue(forKey: id) else { return false }
            if commit { _ = Self.append(half.message, to: &state, now: clock.wallClockMilliseconds) }
            return true
        }
        if resolved, commit { signal.notify() }
        return resolved
    }

    public func halfsToCheck(producerGroup: String, olderThanMS: Int64, limit: Int) async throws(BusError) -> [(BusMessage, Int)] {
        state.withLock { state in
            var out: [(BusMessage, Int)] = []
            for (id, half) in state.halfs[producerGroup] ?? [:] where half.createdMS <= olderThanMS && out.count < limit {
                state.halfs[producerGroup]![id]!.checks += 1
                out.append((half.message, half.checks + 1))
            }
            return out
        }
    }

    public func ensureGroup(topic: String, group: String, fromEnd: Bool) async throws(BusError) {
        state.withLock { state in
            if state.topics[topic] == nil { state.topics[topic] = [Queue()] }
            for q in state.topics[topic]!.indices where state.topics[topic]![q].groups[group] == nil {
                var g = Group()
                if fromEnd { g.next = state.topics[topic]![q].entries.count }
                state.topics[topic]![q].groups[group] = g
            }
        }
    }

    public func read(group: String, consumer: String, topic: String, queues: [Int], count: Int, block: Duration) async throws(BusError) -> [BusDelivery] {
        let deadline = clock.now + block
        while true {
            let version = signal.version
            let deliveries = state.withLock { state -> [BusDelivery] in
                guard state.topics[topic] != nil else { return [] }
                var out: [BusDelivery] = []
                let now = clock.wallClockMilliseconds
                for q in queues where q < state.topics[topic]!.count {
                    // Taken out while it is changed: a copy left in place would make the first write copy
                    // the whole pending table on every read.
                    guard var g = state.topics[topic]![q].groups.removeValue(forKey: group) else { continue }
                    let entries = state.topics[topic]![q].entries
                    while g.next < entries.count, out.count < count {
                        let entry = entries[g.next]
                        g.pending[entry.seq] = Pending(consumer: consumer, deliveredAtMS: now)
                        out.append(BusDelivery(message: entry.message, entryID: String(entry.seq), queue: q))
                        g.next += 1
                    }
                    state.topics[topic]![q].groups[group] = g
                    if out.count >= count { break }
                }
                return out
            }
            if !deliveries.isEmpty || clock.now >= deadline { return deliveries }
            if Task.isCancelled { return [] }
            await signal.wait(after: version, timeout: deadline - clock.now, clock: clock)
        }
    }

    public func ack(group: String, topic: String, queue: Int, entryIDs: [String]) async throws(BusError) {
        state.withLock { state in
            guard state.topics[topic]?.indices.contains(queue) == true else { return }
            for id in entryIDs { if let seq = Int(id) { state.topics[topic]![queue].groups[group]?.pending.removeValue(forKey: seq) } }
        }
    }

    public func reclaim(group: String, consumer: String, topic: String, queue: Int, minIdle: Duration, count: Int) async throws(BusError) -> [BusDelivery] {
        state.withLock { state in
            guard state.topics[topic]?.indices.contains(queue) == true, var g = state.topics[topic]![queue].groups.removeValue(forKey: group) else { return [] }
            let now = clock.wallClockMilliseconds
            var out: [BusDelivery] = []
            for seq in g.pending.keys.sorted() where out.count < count {
                let pending = g.pending[seq]!
                guard now - pending.deliveredAtMS >= minIdle.milliseconds else { continue }
                guard let index = state.topics[topic]![queue].index(of: seq) else { g.pending.removeValue(forKey: seq); continue }
                g.pending[seq] = Pending(consumer: consumer, deliveredAtMS: now)
                out.append(BusDelivery(message: state.topics[topic]![queue].entries[index].message, entryID: String(seq), queue: queue))
            }
            state.topics[topic]![queue].groups[group] = g
            return out
        }
    }

    /// Scans the stored messages, newest first (an admin operation: O(messages) under the engine's lock;
    /// an index of every id cost every append a hash insert and stalled the engine while it grew).
    public func lookup(id: String) async throws(BusError) -> BusMessage? {
        state.withLock { state in
            for queues in state.topics.values {
                for queue in queues {
                    if let entry = queue.entries.last(where: { $0.message.id == id }) { return entry.message }
                }
            }
            return nil
        }
    }

    public func contains(id: String, topic: String, queues: [Int]) async throws(BusError) -> Bool {
        state.withLock { state in
            guard let stored = state.topics[topic] else { return false }
            return queues.contains { queue in
                stored.indices.contains(queue) && stored[queue].entries.reversed().contains { $0.message.id == id }
            }
        }
    }

    public func lookup(topic: String, key: String) async throws(BusError) -> [BusMessage] {
        state.withLock { state in
            guard let queues = state.topics[topic] else { return [] }
            return (state.byKey["\(topic)\u{1}\(key)"] ?? []).compactMap { location in
                guard queues.indices.contains(location.queue), let index = queues[location.queue].index(of: location.seq) else { return nil }
                return queues[location.queue].entries[index].message
            }
        }
    }

    public func lag(group: String, topic: String) async throws(BusError) -> [Int: Int] {
        state.withLock { state in
            var out: [Int: Int] = [:]
            for (q, queue) in (state.topics[topic] ?? []).enumerated() {
                let g = queue.groups[group] ?? Group()
                out[q] = queue.entries.count - g.next + g.pending.count
            }
            return out
        }
    }

    public func messages(topic: String, limit: Int) async throws(BusError) -> [BusDelivery] {
        state.withLock { state in
            var out: [BusDelivery] = []
            for (q, queue) in (state.topics[topic] ?? []).enumerated() {
                for entry in queue.entries { out.append(BusDelivery(message: entry.message, entryID: String(entry.seq), queue: q)) }
            }
            return Array(out.sorted { $0.message.bornAtMS < $1.message.bornAtMS }.prefix(limit))
        }
    }

    public func delete(topic: String, queue: Int, entryID: String) async throws(BusError) {
        state.withLock { state in
            guard let seq = Int(entryID), state.topics[topic]?.indices.contains(queue) == true,
                let index = state.topics[topic]![queue].index(of: seq) else { return }
            state.topics[topic]![queue].entries.remove(at: index)
            for name in state.topics[topic]![queue].groups.keys {
                state.topics[topic]![queue].groups[name]!.pending.removeValue(forKey: seq)
                if state.topics[topic]![queue].groups[name]!.next > index { state.topics[topic]![queue].groups[name]!.next -= 1 }
            }
        }
    }

    public func lease(_ name: String, owner: String, ttl: Duration) async throws(BusError) -> Bool {
        state.withLock { state in
            let now = clock.wallClockMilliseconds
            if let current = state.leases[name], current.owner != owner, current.expiresMS > now { return false }
            state.leases[name] = (owner, now + ttl.milliseconds)
            return true
        }
    }

    public func releaseLease(_ name: String, owner: String) async throws(BusError) {
        state.withLock { state in
            if state.leases[name]?.owner == owner { state.leases[name] = nil }
        }
    }

    public func heartbeat(group: String, member: String, ttl: Duration) async throws(BusError) -> [String] {
        state.withLock { state in
            let now = clock.wallClockMilliseconds
            state.members[group, default: [:]][member] = now + ttl.milliseconds
            state.members[group] = state.members[group]!.filter { $0.value > now }
            return state.members[group]!.keys.sorted()
        }
    }

    public func leave(group: String, member: String) async throws(BusError) {
        _ = state.withLock { $0.members[group]?.removeValue(forKey: member) }
    }
}

/// A string-keyed index split over 64 dictionaries: a growing dictionary rehashes all of its keys at once,
/// under the engine's lock; a shard rehashes 1/64 of them at a time.
struct ShardedIndex<Value> {
    private var shards = [[String: Value]](repeating: [:], count: 64)

    private static func shard(_ key: String) -> Int { key.hashValue & 63 }

    subscript(key: String) -> Value? { shards[Self.shard(key)][key] }
}

extension Array {
    /// The first index whose element satisfies `belongs` (elements are partitioned: all that do not, then all that do).
    func partitioningIndex(where belongs: (Element) -> Bool) -> Int {
        var low = 0, high = count
        while low < high {
            let mid = (low + high) / 2
            if belongs(self[mid]) { high = mid } else { low = mid + 1 }
        }
        return low
    }
}

extension ShardedIndex {
    mutating func append<Element>(_ element: Element, at key: String) where Value == [Element] {
        shards[Self.shard(key)][key, default: []].append(element)
    }

    /// Removes the first element of `key`'s list matching `predicate` (the key goes when its list empties).
    mutating func removeFirst<Element>(where predicate: (Element) -> Bool, at key: String) where Value == [Element] {
        let shard = Self.shard(key)
        guard let index = shards[shard][key]?.firstIndex(where: predicate) else { return }
        shards[shard][key]!.remove(at: index)
        if shards[shard][key]!.isEmpty { shards[shard][key] = nil }
    }
}
