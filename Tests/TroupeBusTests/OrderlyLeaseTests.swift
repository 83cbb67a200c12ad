import Foundation
import Testing
import TroupeBus
import TroupeCore
import TroupeTestSupport

/// An engine whose lease and membership calls fail for the members named in `cutOff` (a member cut off from
/// the bus while it still runs: its renewals fail, its in-memory work goes on). Everything else is forwarded.
final class CutOffEngine: BusEngine {
    let inner: any BusEngine
    let cutOff = Locked<Set<String>>([])

    init(_ inner: any BusEngine) { self.inner = inner }

    private func check(_ member: String) throws(BusError) {
        if cutOff.withLock({ $0.contains(member) }) { throw BusError(.engine, "\(member) is cut off") }
    }

    var engineName: String { inner.engineName }
    func createTopic(_ topic: String, queues: Int) async throws(BusError) { try await inner.createTopic(topic, queues: queues) }
    func queueCount(_ topic: String) async throws(BusError) -> Int? { try await inner.queueCount(topic) }
    func topics() async throws(BusError) -> [String] { try await inner.topics() }
    func append(_ message: BusMessage) async throws(BusError) -> String { try await inner.append(message) }
    func schedule(_ message: BusMessage, deliverAtMS: Int64) async throws(BusError) { try await inner.schedule(message, deliverAtMS: deliverAtMS) }
    func promoteDue(nowMS: Int64) async throws(BusError) -> Int { try await inner.promoteDue(nowMS: nowMS) }
    func storeHalf(_ message: BusMessage) async throws(BusError) { try await inner.storeHalf(message) }
    func resolveHalf(producerGroup: String, id: String, commit: Bool) async throws(BusError) -> Bool {
        try await inner.resolveHalf(producerGroup: producerGroup, id: id, commit: commit)
    }
    func halfsToCheck(producerGroup: String, olderThanMS: Int64, limit: Int) async throws(BusError) -> [(BusMessage, Int)] {
        try await inner.halfsToCheck(producerGroup: producerGroup, olderThanMS: olderThanMS, limit: limit)
    }
    func ensureGroup(topic: String, group: String, fromEnd: Bool) async throws(BusError) { try await inner.ensureGroup(topic: topic, group: group, fromEnd: fromEnd) }
    func read(group: String, consumer: String, topic: String, queues: [Int], count: Int, block: Duration) async throws(BusError) -> [BusDelivery] {
        try check(consumer)
        return try await inner.read(group: group, consumer: consumer, topic: topic, queues: queues, count: count, block: block)
    }
    func ack(group: String, topic: String, queue: Int, entryIDs: [String]) async throws(BusError) {
        try await inner.ack(group: group, topic: topic, queue: queue, entryIDs: entryIDs)
    }
    func reclaim(group: String, consumer: String, topic: String, queue: Int, minIdle: Duration, count: Int) async throws(BusError) -> [BusDelivery] {
        try check(consumer)
        return try await inner.reclaim(group: group, consumer: consumer, topic: topic, queue: queue, minIdle: minIdle, count: count)
    }
    func lookup(id: String) async throws(BusError) -> BusMessage? { try await inner.lookup(id: id) }
    func contains(id: String, topic: String, queues: [Int]) async throws(BusError) -> Bool { try await inner.contains(id: id, topic: topic, queues: queues) }
    func lookup(topic: String, key: String) async throws(BusError) -> [BusMessage] { try await inner.lookup(topic: topic, key: key) }
    func lag(group: String, topic: String) async throws(BusError) -> [Int: Int] { try await inner.lag(group: group, topic: topic) }
    func messages(topic: String, limit: Int) async throws(BusError) -> [BusDelivery] { try await inner.messages(topic: topic, limit: limit) }
    func delete(topic: String, queue: Int, entryID: String) async throws(BusError) { try await inner.delete(topic: topic, queue: queue, entryID: entryID) }
    func lease(_ name: String, owner: String, ttl: Duration) async throws(BusError) -> Bool {
        try check(owner)
        return try await inner.lease(name, owner: owner, ttl: ttl)
    }
    func releaseLease(_ name: String, owner: String) async throws(BusError) { try await inner.releaseLease(name, owner: owner) }
    func heartbeat(group: String, member: String, ttl: Duration) async throws(BusError) -> [String] {
        try check(member)
        return try await inner.heartbeat(group: group, member: member, ttl: ttl)
    }
    func leave(group: String, member: String) async throws(BusError) { try await inner.leave(group: group, member: member) }
}

@Suite("Orderly queues and their leases")
struct OrderlyLeaseTests {
    @Test("a member that can no longer renew its queue's lease neither delivers nor retries the message in its hand: the next owner delivers it, once")
    func lapsedLeaseStopsDelivery() async throws {
        try await withDeadline(.seconds(60)) {
            let engine = CutOffEngine(InMemoryBusEngine())
            var configuration = BusSemantics.configuration()
            configuration.orderlySuspend = .seconds(2)
            configuration.orderlySuspendMaximum = .seconds(2)
            configuration.maxReconsumeTimes = 5
            let bus = try Bus(engine: engine, configuration: configuration)
            try await engine.createTopic("t", queues: 1)
            let attempts = Locked<[String]>([])  // "member:outcome"
            let members = Members()
            defer { members.cancelAll() }
            func listener(_ name: String) -> BusListener {
                .orderly { _ in
                    // The first attempt fails (its downstream is unreachable), and the member is cut off.
                    let first = attempts.withLock { $0.isEmpty }
                    attempts.withLock { $0.append("\(name):\(first ? "failed" : "ok")") }
                    if first {
                        engine.cutOff.withLock { _ = $0.insert(name) }
                        return .retryLater
                    }
                    return .success
                }
            }
            members.start(BusConsumer(bus: bus, group: "g", topic: "t", listener: listener("a"), instanceName: "a"))
            try await Task.sleep(for: .milliseconds(300))
            _ = try await bus.producer(group: "p").send(OutgoingMessage(topic: "t", body: Array("m1".utf8), shardingKey: "k"))
            #expect(await waitUntil(.seconds(10)) { attempts.withLock { $0 } == ["a:failed"] })
            // Another member takes the queue once a's lease expired, and delivers what a left unacknowledged.
            members.start(BusConsumer(bus: bus, group: "g", topic: "t", listener: listener("b"), instanceName: "b"))
            #expect(await waitUntil(.seconds(10)) { attempts.withLock { $0.count } >= 2 })
            // a's retry falls due (2 s) while it is still cut off, then a is back: nothing is delivered again.
            try await Task.sleep(for: .seconds(3))
            engine.cutOff.withLock { $0.removeAll() }
            try await Task.sleep(for: .seconds(2))
            #expect(attempts.withLock { $0 } == ["a:failed", "b:ok"], "\(attempts.withLock { $0 })")
        }
    }
}
