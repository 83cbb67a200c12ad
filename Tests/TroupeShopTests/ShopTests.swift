import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import TroupeActors
import TroupeCache
import TroupeBus
import TroupeGateway
import TroupeShop
import TroupeStore
import TroupeTestSupport

@Suite("The shop through the gateway")
struct ShopTests {
    static func json(_ response: TestResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [String: Any] ?? [:]
    }

    @Test("cart in the session, checkout runs one saga per line, the aggregate shows order, saga, stock and balance")
    func cartAndCheckout() async throws {
        let sqlite = try await SQLiteDocumentStore.open()
        let documents = DocumentStore(engine: sqlite)
        let state = try await DocumentActorStateStore(store: documents)
        try await LocalCluster().run(nodes: 2, stateStore: state, register: { Shop.register($0) }) { systems in
            let kv = InMemoryKeyValueStore()
            let shop = try await Shop(store: documents, cacheStore: kv, workerID: 3)
            try await shop.addProduct(Product(sku: "tea", name: "Tea", price: 4))
            try await shop.addProduct(Product(sku: "mug", name: "Mug", price: 9))
            _ = try await systems[0].reference(InventoryActor.self, key: "tea").restock(10)
            _ = try await systems[1].reference(InventoryActor.self, key: "mug").restock(1)
            _ = try await systems[0].reference(AccountActor.self, key: "ann").deposit(100)
            let sessions = SessionStore<GatewayServices.Session>(store: kv)
            let gateway = try await Gateway(
                configuration: GatewayConfiguration(signing: .hs256(secret: Array("0123456789abcdef0123456789abcdef!!".utf8)), issuer: "t", audience: "shop"),
                services: GatewayServices(sessions: sessions, idempotency: IdempotencyStore(store: kv), authenticate: { u, p in p == "pw" ? u : nil }),
                routes: shop.routes(system: systems[0], sessions: sessions))
            try await Application(router: gateway.router()).test(.router) { client in
                let token = try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: #"{"username":"ann","password":"pw"}"#)) {
                    Self.json($0)["token"] as? String ?? ""
                }
                let auth: HTTPFields = [.authorization: "Bearer \(token)"]
                try await client.execute(uri: "/products/nope", method: .get) { #expect($0.status == .notFound) }
                try await client.execute(uri: "/products/tea", method: .get) { #expect(Self.json($0)["price"] as? Int == 4) }
                try await client.execute(uri: "/cart", method: .put, headers: auth, body: ByteBuffer(string: #"{"sku":"tea","quantity":3}"#)) { #expect($0.status == .ok) }
                try await client.execute(uri: "/cart", method: .put, headers: auth, body: ByteBuffer(string: #"{"sku":"mug","quantity":2}"#)) { #expect($0.status == .ok) }
                try await client.execute(uri: "/cart", method: .get, headers: auth) { #expect(Self.json($0) as? [String: Int] == ["tea": 3, "mug": 2]) }
                let ids = try await client.execute(uri: "/cart/checkout", method: .post, headers: auth) { response in
                    #expect(response.status == .accepted)
                    return Self.json(response)["orderIds"] as? [String] ?? []
                }
                #expect(ids.count == 2)
                try await client.execute(uri: "/cart", method: .get, headers: auth) { #expect(Self.json($0).isEmpty, "checkout empties the cart") }
                var finals: [String: String] = [:]
                let deadline = ContinuousClock.now + .seconds(10)
                while finals.count < 2, ContinuousClock.now < deadline {
                    for id in ids where finals[id] == nil {
                        try await client.execute(uri: "/orders/\(id)", method: .get, headers: auth) { response in
                            let body = Self.json(response)
                            let order = body["order"] as? [String: Any]
                            // Final when the order is final and its saga has finished too (the order is
                            // cancelled by the first compensation, before the saga records the last one).
                            let sagaFinal = ["completed", "compensated"].contains(body["saga"] as? String ?? "")
                            if sagaFinal, let status = order?["status"] as? String, status == "completed" || status == "cancelled" {
                                finals[order?["sku"] as? String ?? id] = status
                                #expect((body["partial"] as? [String])?.isEmpty == true)
                                #expect(body["saga"] as? String == (status == "completed" ? "completed" : "compensated"))
                            }
                        }
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(finals == ["tea": "completed", "mug": "cancelled"], "only one mug in stock: that saga compensates")
            }
            #expect(try await systems[1].reference(AccountActor.self, key: "ann").snapshot().balance == 88)
            #expect(try await systems[1].reference(InventoryActor.self, key: "mug").snapshot().available == 1)
        }
        await sqlite.close()
    }
}

@Suite("Unpaid orders")
struct OrderTimeoutTests {
    @Test("an order not paid in time is cancelled by a delayed message")
    func timeout() async throws {
        let sqlite = try await SQLiteDocumentStore.open()
        let documents = DocumentStore(engine: sqlite)
        var configuration = BusConfiguration()
        configuration.promoteInterval = .milliseconds(10)
        let bus = try Bus(engine: InMemoryBusEngine(), configuration: configuration)
        try await LocalCluster().run(nodes: 1, register: { Shop.register($0) }) { systems in
            let shop = try await Shop(store: documents, cacheStore: InMemoryKeyValueStore(), workerID: 4, bus: bus, paymentTimeout: .milliseconds(200))
            let promoter = Task { try await bus.run() }
            let consumer = shop.timeoutConsumer(system: systems[0])!
            let consuming = Task { try await consumer.run() }
            defer { promoter.cancel(); consuming.cancel() }
            let order = try systems[0].reference(OrderActor.self, key: "o-unpaid")
            try await order.create(OrderInfo(id: "o-unpaid", user: "ann", sku: "tea", quantity: 1, amount: 4))
            let paid = try systems[0].reference(OrderActor.self, key: "o-paid")
            try await paid.create(OrderInfo(id: "o-paid", user: "ann", sku: "tea", quantity: 1, amount: 4))
            for event in [OrderEvent.reserve, .pay, .complete] { _ = try await paid.fire(event) }
            try await shop.scheduleTimeout(order: "o-unpaid")
            try await shop.scheduleTimeout(order: "o-paid")
            let deadline = ContinuousClock.now + .seconds(10)
            while try await order.info().status != .cancelled, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            let info = try await order.info()
            #expect(info.status == .cancelled)
            #expect(info.reason == "unpaid")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await paid.info().status == .completed, "a completed order is not touched")
        }
        await sqlite.close()
    }
}
