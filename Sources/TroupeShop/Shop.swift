import Foundation
import HTTPTypes
import Hummingbird
import TroupeActors
import TroupeCache
import TroupeCore
import TroupeGateway
import TroupeSaga
import TroupeStore
import TroupeBus

/// A product of the catalog.
public struct Product: Codable, Sendable, Hashable {
    public var _id: String
    public var name: String
    public var price: Int

    public init(sku: String, name: String, price: Int) {
        self._id = sku
        self.name = name
        self.price = price
    }
}

/// The reference system: catalog, inventory, accounts and orders, with orders placed by a saga
/// (open → reserve stock → hold funds → confirm; compensated in reverse) and everything reached
/// through the gateway's route table.
public struct Shop: Sendable {
    public static let sagaName = "place-order"

    public let products: DocumentCollection<Product>
    /// Where order timeouts go (delayed messages); nil: orders never time out.
    public let bus: Bus?
    /// An order not completed by then is cancelled by a delayed message.
    public let paymentTimeout: Duration
    public static let timeoutTopic = "order-timeouts"
    public let catalog: Cache<Product>
    public let ids: SnowflakeGenerator
    /// Every SKU that exists: the cache refuses unknown SKUs without touching the store (penetration).
    let bloom: InMemoryBloomFilter

    /// Registers the shop's actors on a node (every node of the cluster).
    public static func register(_ system: ClusterActorSystem) {
        system.register(InventoryActor.self)
        system.register(AccountActor.self)
        system.register(OrderActor.self)
        system.register(SagaActor.self)
        registerSaga()
    }

    struct SagaInput: Codable, Sendable {
        var order: String
        var user: String
        var sku: String
        var quantity: Int
        var amount: Int
    }

    static func registerSaga() {
        @Sendable func input(_ context: SagaContext) throws -> SagaInput { try context.decodeInput(SagaInput.self) }
        SagaRegistry.register(SagaDefinition(sagaName, steps: [
            SagaStep("open", maxAttempts: 1, action: { _ in }, compensation: { context in
                let i = try input(context)
                _ = try await context.actorSystem.reference(OrderActor.self, key: i.order).fire(.cancel, reason: "compensated")
            }),
            SagaStep("reserve-stock", maxAttempts: 1, action: { context in
                let i = try input(context)
                try await context.actorSystem.reference(InventoryActor.self, key: i.sku).reserve(order: i.order, quantity: i.quantity)
                _ = try await context.actorSystem.reference(OrderActor.self, key: i.order).fire(.reserve)
            }, compensation: { context in
                let i = try input(context)
                try await context.actorSystem.reference(InventoryActor.self, key: i.sku).release(order: i.order)
            }),
            SagaStep("hold-funds", maxAttempts: 1, action: { context in
                let i = try input(context)
                try await context.actorSystem.reference(AccountActor.self, key: i.user).hold(order: i.order, amount: i.amount)
                _ = try await context.actorSystem.reference(OrderActor.self, key: i.order).fire(.pay)
            }, compensation: { context in
                let i = try input(context)
                try await context.actorSystem.reference(AccountActor.self, key: i.user).releaseHold(order: i.order)
            }),
            SagaStep("confirm", maxAttempts: 5, action: { context in
                let i = try input(context)
                try await context.actorSystem.reference(InventoryActor.self, key: i.sku).commit(order: i.order)
                try await context.actorSystem.reference(AccountActor.self, key: i.user).capture(order: i.order)
                _ = try await context.actorSystem.reference(OrderActor.self, key: i.order).fire(.complete)
            }),
        ]))
    }

    public init(store: DocumentStore, cacheStore: any KeyValueStore, workerID: Int, bus: Bus? = nil,
                paymentTimeout: Duration = .seconds(900)) async throws {
        self.bus = bus
        self.paymentTimeout = paymentTimeout
        products = try await store.collection("products", of: Product.self)
        bloom = InMemoryBloomFilter(parameters: try BloomParameters(expectedItems: 10_000, falsePositiveRate: 0.01))
        catalog = try Cache<Product>(store: cacheStore, options: CacheOptions(
            ttl: .seconds(60), ttlJitter: 0.2, nullTTL: .seconds(10), breakdown: .singleFlight, bloomFilter: bloom, keyPrefix: "product:"))
        for product in try await products.find() { try await bloom.add(product._id) }
        ids = try SnowflakeGenerator(workerID: workerID)
    }

    /// Adds a product (and lets the Bloom filter know it exists).
    public func addProduct(_ product: Product) async throws {
        try await products.upsert(product)
        try await bloom.add(product._id)
        try await catalog.invalidate(product._id)
    }

    public func product(_ sku: String) async throws -> Product? {
        try await catalog.get(sku) { try await products.get(.string(sku))?.value }
    }

    struct PlaceOrder: Decodable {
        var sku: String
        var quantity: Int
    }

    /// Places one order: an id from Snowflake, the order actor, then the saga. Returns the order id.
    func placeOrder(system: ClusterActorSystem, user: String, sku: String, quantity: Int) async throws -> String {
        guard quantity > 0, quantity <= 100 else { throw GatewayError(.badRequest, "quantity must be 1…100") }
        guard let product = try await product(sku) else { throw GatewayError(.notFound, "no such product", detail: sku) }
        let id = String(try ids.next())
        let info = OrderInfo(id: id, user: user, sku: sku, quantity: quantity, amount: product.price * quantity)
        try await system.reference(OrderActor.self, key: id).create(info)
        try await scheduleTimeout(order: id)
        let input = try JSONEncoder().encode(SagaInput(order: id, user: user, sku: sku, quantity: quantity, amount: info.amount))
        _ = try await system.reference(SagaActor.self, key: id).start(definition: Self.sagaName, input: [UInt8](input))
        return id
    }

    /// Sends the delayed message that cancels the order if it is still unpaid after `paymentTimeout`.
    public func scheduleTimeout(order id: String) async throws {
        guard let bus else { return }
        try await bus.producer(group: "shop").send(OutgoingMessage(topic: Self.timeoutTopic, keys: [id], body: Array(id.utf8),
                                                                   shardingKey: id, delay: .after(paymentTimeout)))
    }

    /// The consumer that delivers order timeouts to the order actors (run it in the ServiceGroup).
    public func timeoutConsumer(system: ClusterActorSystem) -> BusConsumer? {
        guard let bus else { return nil }
        return routeEvents(bus: bus, group: "shop-order-timeouts", topic: Self.timeoutTopic, system: system, to: OrderActor.self,
                           key: { String(decoding: $0.body, as: UTF8.self) },
                           deliver: { order, _ in _ = try await order.expire() })
    }

    /// The cart lives in the user's server-side session (key "cart": JSON sku → quantity).
    static func cart(_ session: GatewayServices.Session) -> [String: Int] {
        session.data["cart"].flatMap { try? JSONDecoder().decode([String: Int].self, from: Data($0.utf8)) } ?? [:]
    }

    /// The shop's routes for the gateway's route table.
    public func routes(system: ClusterActorSystem, sessions: SessionStore<GatewayServices.Session>, maxBody: Int = 1 << 16) -> [GatewayRoute] {
        @Sendable func session(_ context: GatewayContext) async throws -> (String, GatewayServices.Session) {
            guard let id = context.sessionID, let session = try await sessions.get(id) else { throw GatewayError(.unauthorized, "session ended") }
            return (id, session)
        }
        return [
            GatewayRoute(.put, "/cart", summary: "Put a product in the cart (quantity 0 removes it)") { request, context in
                let item = try await Gateway.decode(PlaceOrder.self, request, limit: maxBody)
                guard item.quantity >= 0, item.quantity <= 100 else { throw GatewayError(.badRequest, "quantity must be 0…100") }
                guard try await product(item.sku) != nil else { throw GatewayError(.notFound, "no such product", detail: item.sku) }
                var (id, current) = try await session(context)
                var cart = Self.cart(current)
                cart[item.sku] = item.quantity == 0 ? nil : item.quantity
                current.data["cart"] = String(decoding: try JSONEncoder().encode(cart), as: UTF8.self)
                try await sessions.update(id, current)
                return Gateway.json(cart)
            },
            GatewayRoute(.get, "/cart", summary: "The cart of the session") { _, context in
                Gateway.json(Self.cart(try await session(context).1))
            },
            GatewayRoute(.post, "/cart/checkout", summary: "Place one order per cart line and empty the cart") { _, context in
                var (id, current) = try await session(context)
                let cart = Self.cart(current)
                guard !cart.isEmpty else { throw GatewayError(.badRequest, "the cart is empty") }
                var orders: [String] = []
                for (sku, quantity) in cart.sorted(by: { $0.key < $1.key }) {
                    orders.append(try await placeOrder(system: system, user: context.user ?? "", sku: sku, quantity: quantity))
                }
                current.data["cart"] = nil
                try await sessions.update(id, current)
                return Gateway.json(["orderIds": orders], status: .accepted)
            },
            GatewayRoute(.get, "/products/:sku", summary: "A product of the catalog (cached)", requiresAuth: false) { _, context in
                let sku = try context.parameters.require("sku")
                guard let product = try await product(sku) else { throw GatewayError(.notFound, "no such product", detail: sku) }
                return Gateway.json(product)
            },
            GatewayRoute(.post, "/orders", summary: "Place an order (runs the place-order saga)") { request, context in
                let body = try await Gateway.decode(PlaceOrder.self, request, limit: maxBody)
                let id = try await placeOrder(system: system, user: context.user ?? "", sku: body.sku, quantity: body.quantity)
                return Gateway.json(["orderId": id, "status": "created"], status: .accepted)
            },
            GatewayRoute(.get, "/orders/:id", summary: "An order with its saga, stock and account (partial results marked)") { _, context in
                let id = try context.parameters.require("id")
                let order = try await system.reference(OrderActor.self, key: id).info()
                guard !order.id.isEmpty, order.user == context.user else { throw GatewayError(.notFound, "no such order", detail: id) }
                // Aggregation: the parts are fetched concurrently; a part that fails or times out is marked.
                async let saga = Self.part(.milliseconds(500)) { try await system.reference(SagaActor.self, key: id).status().status.rawValue }
                async let stock = Self.part(.milliseconds(500)) { try await system.reference(InventoryActor.self, key: order.sku).snapshot().available }
                async let balance = Self.part(.milliseconds(500)) { try await system.reference(AccountActor.self, key: order.user).snapshot().balance }
                let (sagaStatus, available, funds) = await (saga, stock, balance)
                struct View: Encodable {
                    var order: OrderInfo
                    var saga: String?
                    var stockAvailable: Int?
                    var balance: Int?
                    var partial: [String]
                }
                var partial: [String] = []
                if sagaStatus == nil { partial.append("saga") }
                if available == nil { partial.append("stock") }
                if funds == nil { partial.append("balance") }
                return Gateway.json(View(order: order, saga: sagaStatus, stockAvailable: available, balance: funds, partial: partial))
            },
        ]
    }

    /// One part of an aggregate: its value, or nil when it failed or took longer than `timeout`.
    static func part<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async -> T? {
        await withTaskGroup(of: T?.self) { group in
            group.addTask { try? await body() }
            group.addTask { try? await Task.sleep(for: timeout); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}
