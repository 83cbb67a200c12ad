import Distributed
import Foundation
import Testing
import TroupeActors
import TroupeBus
import TroupeCore
import TroupeSaga
import TroupeTestSupport

distributed actor Stock: PersistentVirtualActor {
    typealias ActorSystem = ClusterActorSystem

    struct State: InboxCarrying {
        var available = 100
        var processed = ProcessedMessages()
    }

    var persisted = Persisted(State())

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    distributed func orderPaid(_ message: BusMessage) async throws {
        let quantity = Int(String(decoding: message.body, as: UTF8.self)) ?? 0
        try await applyOnce(message) { $0.available -= quantity }
    }

    distributed func available() -> Int { state.available }
}

@Suite("Choreography: bus events routed to actors by key")
struct ChoreographyTests {
    @Test("the inbox remembers the last `capacity` ids and survives encoding (packed, plain and the older array form)")
    func inbox() throws {
        var inbox = ProcessedMessages(capacity: 3)
        for id in ["a", "b", "c", "b", "d"] { inbox.insert(id) }
        #expect(inbox.ids == ["b", "c", "d"])
        #expect(!inbox.contains("a") && inbox.contains("b") && inbox.contains("d"))
        for sample in [inbox, { var odd = ProcessedMessages(capacity: 5); odd.insert("x\ny"); odd.insert(""); odd.insert("z"); return odd }()] {
            let binary = try BinaryDecoder().decode(ProcessedMessages.self, from: BinaryEncoder().encode(sample))
            let json = try JSONDecoder().decode(ProcessedMessages.self, from: JSONEncoder().encode(sample))
            #expect(binary == sample && json == sample)
            #expect(sample.ids.allSatisfy { binary.contains($0) && json.contains($0) })
        }
        let older = try JSONDecoder().decode(ProcessedMessages.self, from: Data(#"{"ids":["m1","m2"],"capacity":10}"#.utf8))
        #expect(older.ids == ["m1", "m2"] && older.contains("m2") && !older.contains("m3"))
    }

    @Test("events reach the actor their key names; the same message delivered 3 times changes state once")
    func routing() async throws {
        let bus = try Bus(engine: InMemoryBusEngine())
        try await LocalCluster().run(nodes: 2, register: { $0.register(Stock.self) }) { systems in
            let consumer = routeEvents(bus: bus, group: "inventory", topic: "order-paid", system: systems[0], to: Stock.self,
                                       key: { $0.properties["sku"] }, deliver: { stock, message in try await stock.orderPaid(message) })
            let running = Task { try await consumer.run() }
            defer { running.cancel() }
            let producer = bus.producer(group: "orders")
            for (sku, quantity) in [("sku-1", 2), ("sku-2", 5), ("sku-1", 3)] {
                try await producer.send(OutgoingMessage(topic: "order-paid", properties: ["sku": sku], body: Array(String(quantity).utf8), shardingKey: sku))
            }
            // One message delivered three times (a producer retry, a redelivery): applied once.
            let duplicate = OutgoingMessage(topic: "order-paid", properties: ["sku": "sku-3"], body: Array("7".utf8), shardingKey: "sku-3", id: "dup-1")
            for _ in 0..<3 { try await producer.send(duplicate) }
            let deadline = ContinuousClock.now + .seconds(10)
            func levels() async throws -> [Int] {
                try await ["sku-1", "sku-2", "sku-3"].asyncMap { try await systems[1].reference(Stock.self, key: $0).available() }
            }
            while try await levels() != [95, 95, 93], ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await levels() == [95, 95, 93])
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await levels() == [95, 95, 93], "duplicates never applied")
        }
    }
}

