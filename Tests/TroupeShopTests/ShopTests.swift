import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import Logging
import TroupeActors
import TroupeCache
import TroupeCore
import TroupeBus
import TroupeGateway
import TroupeSaga
import TroupeShop
import TroupeStore
import TroupeTestSupport
import TroupeActorsStore

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
                // Ids that cannot name an order are 404 without activating anything; a key too long for any actor too.
                let before = systems.map { $0.activeActorIDs.count }.reduce(0, +)
                for bad in ["nope", "k" + String(repeating: "z", count: 30), String(repeating: "9", count: 20), String(repeating: "x", count: 70_000)] {
                    // 404 at the route (a limit in front of it may answer another 4xx for the longest one).
                    try await client.execute(uri: "/orders/\(bad)", method: .get, headers: auth) {
                        #expect($0.status == .notFound || (bad.count > 1_000 && (400..<500).contains($0.status.code)), "\(bad.prefix(20)): \($0.status)")
                    }
                    try await client.execute(uri: "/orders/\(bad)/cancel", method: .post, headers: auth) {
                        #expect($0.status == .notFound || (bad.count > 1_000 && (400..<500).contains($0.status.code)), "\($0.status)")
                    }
                }
                #expect(systems.map { $0.activeActorIDs.count }.reduce(0, +) == before, "no activation for made-up ids")
                // A logout wins over a cart change: the session is not recreated, the token stays dead.
                try await client.execute(uri: "/auth/logout", method: .post, headers: auth) { #expect($0.status.code < 300) }
                try await client.execute(uri: "/cart", method: .put, headers: auth, body: ByteBuffer(string: #"{"sku":"tea","quantity":1}"#)) {
                    #expect($0.status == .unauthorized)
                }
                try await client.execute(uri: "/cart", method: .get, headers: auth) { #expect($0.status == .unauthorized) }
            }
            #expect(try await systems[1].reference(AccountActor.self, key: "ann").snapshot().balance == 88)
            #expect(try await systems[1].reference(InventoryActor.self, key: "mug").snapshot().available == 1)
        }
        await sqlite.close()
    }
}

/// Runs where openapi-spec-validator is installed, and always under `CI`, where a missing one makes
/// `OpenAPIValidator.problems(in:)` throw and the test fail.
@Suite("The shop's API description")
struct ShopOpenAPITests {
    @Test("/openapi.json is valid OpenAPI 3.1 (openapi-spec-validator) with path parameters, bodies, real statuses and problems",
          .enabled(if: OpenAPIValidator.shouldRun))
    func document() async throws {
        let sqlite = try await SQLiteDocumentStore.open()
        let documents = DocumentStore(engine: sqlite)
        try await LocalCluster().run(nodes: 1, register: { Shop.register($0) }) { systems in
            let kv = InMemoryKeyValueStore()
            let shop = try await Shop(store: documents, cacheStore: kv, workerID: 6)
            let sessions = SessionStore<GatewayServices.Session>(store: kv)
            let gateway = try await IntentTests.gateway(shop, systems[0], sessions: sessions)
            let body = try await Application(router: gateway.router()).test(.router) { client in
                try await client.execute(uri: "/openapi.json", method: .get) { [UInt8]($0.body.readableBytesView) }
            }
            let problems = try OpenAPIValidator.problems(in: body)
            #expect(problems == nil, "\(problems ?? "")")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
            let paths = try #require(document["paths"] as? [String: [String: [String: Any]]])
            let order = try #require(paths["/orders/{id}"]?["get"])
            let parameters = order["parameters"] as? [[String: Any]] ?? []
            #expect(parameters.contains { $0["name"] as? String == "id" && $0["in"] as? String == "path" && $0["required"] as? Bool == true })
            let place = try #require(paths["/orders"]?["post"])
            let responses = place["responses"] as? [String: Any] ?? [:]
            #expect(Set(responses.keys).isSuperset(of: ["202", "400", "401", "413", "429", "431", "503", "default"]), "\(responses.keys.sorted())")
            #expect(responses["200"] == nil, "placing answers 202, not 200")
            #expect(place["requestBody"] != nil)
            #expect((place["parameters"] as? [[String: Any]])?.contains { $0["name"] as? String == "Idempotency-Key" } == true)
            let logout = paths["/auth/logout"]?["post"]?["responses"] as? [String: Any]
            #expect(logout?["204"] != nil && logout?["200"] == nil)
            #expect(paths["/metrics"] == nil, "not on the public listener unless configured")
        }
        await sqlite.close()
    }
}

@Suite("One effect per client intent")
struct IntentTests {
    static let secret = Array("0123456789abcdef0123456789abcdef!!".utf8)

    /// A gateway over the shop; each call makes a new one with a fresh idempotency store, as a retry reaching
    /// another gateway, or this one after its claim expired or was released, would see.
    static func gateway(_ shop: Shop, _ system: ClusterActorSystem, sessions: SessionStore<GatewayServices.Session>) async throws -> Gateway {
        try await Gateway(
            configuration: GatewayConfiguration(signing: .hs256(secret: secret), issuer: "t", audience: "shop"),
            services: GatewayServices(sessions: sessions, idempotency: IdempotencyStore(store: InMemoryKeyValueStore()),
                                      authenticate: { u, p in p == "pw" ? u : nil }),
            routes: shop.routes(system: system, sessions: sessions))
    }

    @Test("an Idempotency-Key places one order, whatever the retries (lost records, concurrent duplicates); reused for another order: 422")
    func orderPerKey() async throws {
        let sqlite = try await SQLiteDocumentStore.open()
        let documents = DocumentStore(engine: sqlite)
        let state = try await DocumentActorStateStore(store: documents)
        try await LocalCluster().run(nodes: 2, stateStore: state, register: { Shop.register($0) }) { systems in
            let kv = InMemoryKeyValueStore()
            let shop = try await Shop(store: documents, cacheStore: kv, workerID: 5)
            try await shop.addProduct(Product(sku: "tea", name: "Tea", price: 4))
            _ = try await systems[0].reference(InventoryActor.self, key: "tea").restock(100)
            _ = try await systems[0].reference(AccountActor.self, key: "ann").deposit(1_000)
            let sessions = SessionStore<GatewayServices.Session>(store: kv)
            let token = try await Application(router: try await Self.gateway(shop, systems[0], sessions: sessions).router()).test(.router) { client in
                try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: #"{"username":"ann","password":"pw"}"#)) {
                    ShopTests.json($0)["token"] as? String ?? ""
                }
            }
            let headers: HTTPFields = [.authorization: "Bearer \(token)", HTTPField.Name("Idempotency-Key")!: "intent-1"]
            @Sendable func place(_ body: String = #"{"sku":"tea","quantity":2}"#) async throws -> (HTTPResponse.Status, String?) {
                try await Application(router: try await Self.gateway(shop, systems[1], sessions: sessions).router()).test(.router) { client in
                    try await client.execute(uri: "/orders", method: .post, headers: headers, body: ByteBuffer(string: body)) { response in
                        (response.status, ShopTests.json(response)["orderId"] as? String)
                    }
                }
            }
            // Sequential retries, each through a gateway that has no record of the key.
            var ids: Set<String> = []
            for _ in 0..<3 {
                let (status, id) = try await place()
                #expect(status == .accepted)
                ids.insert(id ?? "")
            }
            // Concurrent duplicates.
            let concurrent = try await withThrowingTaskGroup(of: (HTTPResponse.Status, String?).self) { group in
                for _ in 0..<8 { group.addTask { try await place() } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(concurrent.allSatisfy { $0.0 == .accepted }, "\(concurrent.map(\.0))")
            ids.formUnion(concurrent.map { $0.1 ?? "" })
            #expect(ids.count == 1, "one order for one key: \(ids)")
            #expect(ids.first == Shop.orderID(user: "ann", intent: "intent-1"))
            let (status, _) = try await place(#"{"sku":"tea","quantity":3}"#)
            #expect(status == .unprocessableContent, "the key reused for another order")
            // Exactly one effect: one reservation or sale of 2, one hold or charge.
            let id = try #require(ids.first)
            let deadline = ContinuousClock.now + .seconds(10)
            while try await systems[0].reference(SagaActor.self, key: id).status().status != .completed, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            let stock = try await systems[0].reference(InventoryActor.self, key: "tea").snapshot()
            #expect(stock.sold == 2 && stock.available == 98 && stock.reserved.isEmpty)
            let account = try await systems[0].reference(AccountActor.self, key: "ann").snapshot()
            #expect(account.charges == [id: 8] && account.balance == 992)
        }
        await sqlite.close()
    }

    @Test("two concurrent checkouts of one cart place each line once")
    func concurrentCheckout() async throws {
        let sqlite = try await SQLiteDocumentStore.open()
        let documents = DocumentStore(engine: sqlite)
        let state = try await DocumentActorStateStore(store: documents)
        try await LocalCluster().run(nodes: 2, stateStore: state, register: { Shop.register($0) }) { systems in
            let kv = InMemoryKeyValueStore()
            let shop = try await Shop(store: documents, cacheStore: kv, workerID: 6)
            try await shop.addProduct(Product(sku: "tea", name: "Tea", price: 4))
            try await shop.addProduct(Product(sku: "mug", name: "Mug", price: 9))
            _ = try await systems[0].reference(InventoryActor.self, key: "tea").restock(100)
            _ = try await systems[0].reference(InventoryActor.self, key: "mug").restock(100)
            _ = try await systems[0].reference(AccountActor.self, key: "ann").deposit(1_000)
            let sessions = SessionStore<GatewayServices.Session>(store: kv)
            try await Application(router: try await Self.gateway(shop, systems[0], sessions: sessions).router()).test(.router) { client in
                let token = try await client.execute(uri: "/auth/login", method: .post, body: ByteBuffer(string: #"{"username":"ann","password":"pw"}"#)) {
                    ShopTests.json($0)["token"] as? String ?? ""
                }
                let auth: HTTPFields = [.authorization: "Bearer \(token)"]
                try await client.execute(uri: "/cart", method: .put, headers: auth, body: ByteBuffer(string: #"{"sku":"tea","quantity":1}"#)) { _ in }
                try await client.execute(uri: "/cart", method: .put, headers: auth, body: ByteBuffer(string: #"{"sku":"mug","quantity":1}"#)) { _ in }
                let results = try await withThrowingTaskGroup(of: (HTTPResponse.Status, [String]).self) { group in
                    for _ in 0..<2 {
                        group.addTask {
                            try await client.execute(uri: "/cart/checkout", method: .post, headers: auth) {
                                ($0.status, ShopTests.json($0)["orderIds"] as? [String] ?? [])
                            }
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                // The second checkout either places the same orders or finds the cart already empty (409).
                #expect(results.allSatisfy { $0.0 == .accepted || $0.0 == .conflict }, "\(results.map(\.0))")
                let ids = Set(results.flatMap { $0.1 })
                #expect(ids.count == 2, "two lines, two orders: \(results)")
            }
            let deadline = ContinuousClock.now + .seconds(10)
            var account = try await systems[0].reference(AccountActor.self, key: "ann").snapshot()
            while account.charges.count < 2 || !account.holds.isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                account = try await systems[0].reference(AccountActor.self, key: "ann").snapshot()
            }
            #expect(account.charges.count == 2 && account.spent == 13, "\(account.charges)")
        }
        await sqlite.close()
    }
}

/// The SKU "tea" with 10 in stock and the account "ann" with 100, referenced through the given nodes.
func teaAndAnn(inventoryOn inventorySystem: ClusterActorSystem, accountOn accountSystem: ClusterActorSystem) async throws
    -> (InventoryActor, AccountActor) {
    let inventory = try inventorySystem.reference(InventoryActor.self, key: "tea")
    let account = try accountSystem.reference(AccountActor.self, key: "ann")
    _ = try await inventory.restock(10)
    _ = try await account.deposit(100)
    return (inventory, account)
}

@Suite("Late reservations")
struct LateReservationTests {
    @Test("a reserve or hold that arrives after its order was completed or released holds nothing")
    func lateReserve() async throws {
        try await LocalCluster().run(nodes: 2, register: { Shop.register($0) }) { systems in
            let (inventory, account) = try await teaAndAnn(inventoryOn: systems[0], accountOn: systems[1])
            // Completed: reserved, paid, committed — then a stale reserve (a frozen node's queued call).
            let done = try systems[1].reference(OrderActor.self, key: "o-done")
            try await done.create(OrderInfo(id: "o-done", user: "ann", sku: "tea", quantity: 2, amount: 8))
            try await inventory.reserve(order: "o-done", quantity: 2)
            for event in [OrderEvent.reserve, .pay, .complete] { _ = try await done.fire(event) }
            try await inventory.commit(order: "o-done")
            await #expect(throws: (any Error).self) { try await inventory.reserve(order: "o-done", quantity: 2) }
            // Cancelled and released (the compensation ran first), then the late reserve and hold.
            let cancelled = try systems[1].reference(OrderActor.self, key: "o-cancelled")
            try await cancelled.create(OrderInfo(id: "o-cancelled", user: "ann", sku: "tea", quantity: 1, amount: 4))
            try await inventory.release(order: "o-cancelled")
            try await account.releaseHold(order: "o-cancelled")
            await #expect(throws: (any Error).self) { try await account.hold(order: "o-cancelled", amount: 4) }
            await #expect(throws: (any Error).self) { try await inventory.reserve(order: "o-cancelled", quantity: 1) }
            // Committed while a late reserve was between its check of the order (still `created`) and its write:
            // the write finds the order committed and holds nothing (found by the node-kill cluster test).
            let raced = try systems[1].reference(OrderActor.self, key: "o-raced")
            try await raced.create(OrderInfo(id: "o-raced", user: "ann", sku: "tea", quantity: 1, amount: 4))
            try await inventory.reserve(order: "o-raced", quantity: 1)
            try await inventory.commit(order: "o-raced")
            await #expect(throws: (any Error).self) { try await inventory.reserve(order: "o-raced", quantity: 1) }
            let stock = try await inventory.snapshot()
            #expect(stock.reserved.isEmpty && stock.sold == 3 && stock.available == 7)
            let money = try await account.snapshot()
            #expect(money.holds.isEmpty && money.balance == 100)
        }
    }
}

@Suite("Shop audit per intent")
struct AuditPerIntentTests {
    @Test("the audit finds two orders for one intent and a hold left for a final order")
    func perIntent() async throws {
        try await LocalCluster().run(nodes: 1, register: { Shop.register($0) }) { systems in
            let system = systems[0]
            _ = try await system.reference(InventoryActor.self, key: "tea").restock(10)
            _ = try await system.reference(AccountActor.self, key: "ann").deposit(100)
            for id in ["o-1", "o-2"] {
                var info = OrderInfo(id: id, user: "ann", sku: "tea", quantity: 1, amount: 4)
                info.intent = "key-1"
                try await system.reference(OrderActor.self, key: id).create(info)
                _ = try await system.reference(OrderActor.self, key: id).fire(.cancel)
            }
            try await system.reference(AccountActor.self, key: "ann").hold(order: "o-2", amount: 4)
            let expectation = ShopAudit.Expectation(skus: ["tea"], initialStock: 10, users: ["ann"], initialBalance: 100, orders: ["o-1", "o-2"])
            let audit = try await ShopAudit.run(system: system, expecting: expectation, settle: .seconds(1), salesWait: .milliseconds(100))
            #expect(!audit.onePerIntent)
            #expect(!audit.noLeftoverHolds)
            #expect(!audit.ok)
            // One order for the intent and the hold released: both hold.
            try await system.reference(AccountActor.self, key: "ann").releaseHold(order: "o-2")
            let clean = try await ShopAudit.run(system: system, expecting: .init(skus: ["tea"], initialStock: 10, users: ["ann"],
                                                                             initialBalance: 100, orders: ["o-1"]), settle: .seconds(1),
                                                salesWait: .milliseconds(100))
            #expect(clean.onePerIntent && clean.noLeftoverHolds, "\(clean.problems)")
        }
    }
}

@Suite("Unpaid orders")
struct OrderTimeoutTests {
    @Test("an order not paid in time is cancelled by a delayed message (sent from the order's outbox, or scheduled directly)")
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
            // The reminder of a placed order travels in its outbox, written with the order.
            systems[0].outboxRelay.setPublisher(bus.producer(group: "shop"))
            defer { systems[0].outboxRelay.removePublisher() }
            let order = try systems[0].reference(OrderActor.self, key: "o-unpaid")
            var unpaid = OrderInfo(id: "o-unpaid", user: "ann", sku: "tea", quantity: 1, amount: 4)
            unpaid.payBy = nowMilliseconds() + 200
            try await order.create(unpaid)
            let paid = try systems[0].reference(OrderActor.self, key: "o-paid")
            try await paid.create(OrderInfo(id: "o-paid", user: "ann", sku: "tea", quantity: 1, amount: 4))
            for event in [OrderEvent.reserve, .pay, .complete] { _ = try await paid.fire(event) }
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

@Suite("Order reconciler")
struct OrderReconcilerTests {
    @Test("a pass drives an order nobody will remind to its final state and releases or settles what final orders still hold; young orders wait")
    func reconcile() async throws {
        let store = InMemoryActorStateStore()
        try await LocalCluster().run(nodes: 2, stateStore: store, register: { Shop.register($0) }) { systems in
            let (inventory, account) = try await teaAndAnn(inventoryOn: systems[0], accountOn: systems[0])
            // Stuck: created and reserved, but its saga never started and its reminder was lost.
            let stuck = try systems[0].reference(OrderActor.self, key: "o-stuck")
            try await stuck.create(OrderInfo(id: "o-stuck", user: "ann", sku: "tea", quantity: 2, amount: 8))
            try await inventory.reserve(order: "o-stuck", quantity: 2)
            try await account.hold(order: "o-stuck", amount: 8)
            // Completed, but the saga died before committing the stock and capturing the money.
            let paid = try systems[0].reference(OrderActor.self, key: "o-paid")
            try await paid.create(OrderInfo(id: "o-paid", user: "ann", sku: "tea", quantity: 1, amount: 4))
            try await inventory.reserve(order: "o-paid", quantity: 1)
            try await account.hold(order: "o-paid", amount: 4)
            for event in [OrderEvent.reserve, .pay, .complete] { _ = try await paid.fire(event) }

            let logger = Logger(label: "test")
            func pass(at now: Int64) async throws -> [OrderReconciler.Pass] {
                var passes: [OrderReconciler.Pass] = []
                for system in systems {
                    passes.append(try await OrderReconciler(system: system, store: store, settings: .init(age: .seconds(1_800)), logger: logger,
                                                            now: { now }).reconcileOnce())
                }
                return passes
            }
            let created = try #require(try await stuck.info().createdAt)
            // Young orders are left to their saga and their reminder.
            let early = try await pass(at: created + 60_000)
            #expect(early.allSatisfy { $0.reconciled.isEmpty && $0.deferred.isEmpty && $0.ordersScanned == 2 })
            #expect(try await stuck.info().status == .created)
            // Half an hour later: each order reconciled once, by the node that owns it.
            let late = try await pass(at: created + 31 * 60_000)
            #expect(late.flatMap(\.reconciled).sorted() == ["o-paid", "o-stuck"], "\(late)")
            #expect(late.allSatisfy { $0.deferred.isEmpty })
            #expect(try await stuck.info().status == .cancelled)
            #expect(try await paid.info().status == .completed)
            let stock = try await inventory.snapshot()
            #expect(stock.reserved.isEmpty && stock.sold == 1 && stock.available == 9, "\(stock)")
            let money = try await account.snapshot()
            #expect(money.holds.isEmpty && money.balance == 96, "\(money)")
            // Nothing is left to do.
            #expect(try await pass(at: created + 62 * 60_000).allSatisfy { $0.reconciled.isEmpty })
        }
    }

    @Test("an order's id from an idempotency key is \"k\" and the first 15 bytes of SHA-256(order, user, intent) in lower-case hex")
    func orderIDFromIntent() {
        // Computed apart (Python's hashlib): the id must not change between versions, or a retried intent
        // would place a second order.
        #expect(Shop.orderID(user: "ann", intent: "intent-1") == "ke98461df737abf5ffecdd08bdf7a50")
        #expect(Shop.orderID(user: "ann", intent: "intent-2") != Shop.orderID(user: "ann", intent: "intent-1"))
    }
}
