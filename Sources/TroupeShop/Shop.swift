import Crypto
import CryptoExtras
import Foundation
import HTTPTypes
import Hummingbird
import NIOPosix
public import TroupeActors
public import TroupeCache
import TroupeCore
public import TroupeGateway
import TroupeSaga
public import TroupeStore
public import TroupeBus
import TroupeBSON

/// A product of the catalog.
public struct Product: Codable, Sendable, Hashable {
    /// The SKU.
    public var _id: String
    /// The name shown.
    public var name: String
    /// The price in cents.
    public var price: Int

    /// A product `sku` called `name` at `price` cents.
    public init(sku: String, name: String, price: Int) {
        self._id = sku
        self.name = name
        self.price = price
    }
}

/// A user of the shop: the password is kept as a salted PBKDF2-HMAC-SHA256 hash, never in clear.
public struct ShopUser: Codable, Sendable, Hashable {
    /// The user name.
    public var _id: String
    /// The salt (base64).
    public var salt: String
    /// The PBKDF2 hash of the password (base64).
    public var hash: String
    /// The PBKDF2 rounds the hash was made with.
    public var rounds: Int
}

/// The reference system: catalog, inventory, accounts and orders, with orders placed by a saga
/// (reserve stock → hold funds → confirm; compensated in reverse) and everything reached
/// through the gateway's route table.
public struct Shop: Sendable {
    /// The saga that places an order.
    public static let sagaName = "place-order"

    /// The catalog's documents.
    public let products: DocumentCollection<Product>
    /// Where order timeouts go (delayed messages); nil: orders never time out.
    public let bus: Bus?
    /// An order not completed by then is cancelled by a delayed message.
    public let paymentTimeout: Duration
    /// The topic of the orders' payment reminders.
    public static let timeoutTopic = "order-timeouts"
    /// The consumer group that cancels orders past their payment deadline.
    public static let timeoutGroup = "shop-order-timeouts"
    /// The catalog behind a cache (Bloom filter, null markers, single-flight).
    public let catalog: Cache<Product>
    /// The users' documents.
    public let users: DocumentCollection<ShopUser>
    /// Order ids (Snowflake: unique across gateways when each has its own worker id).
    let nextID: @Sendable () throws -> Int64
    /// Orders placed through this process (for the dashboard).
    let placedOrders = Locked(0)
    /// PBKDF2 rounds for new passwords (OWASP's 210,000 by default; demos and tests may lower it).
    public let passwordRounds: Int
    /// Every SKU that exists: the cache refuses unknown SKUs without touching the store (penetration).
    let bloom: any BloomFilter

    /// Registers the shop's actors on a node (every node of the cluster), and its errors (``registerErrors(_:)``).
    public static func register(_ system: ClusterActorSystem) {
        registerErrors(system)
        system.register(InventoryActor.self)
        system.register(AccountActor.self)
        system.register(OrderActor.self)
        system.register(SalesActor.self)
        system.register(SagaActor.self)
        registerSaga(on: system)
    }

    /// Lets the shop's errors (``ShopDecline``, ``OrderConflict``) thrown by actors on other nodes be caught by
    /// type on this one: every node that calls the shop's actors, client-only ones (the gateway) included.
    public static func registerErrors(_ system: ClusterActorSystem) {
        system.registerRemoteError(ShopDecline.self)
        system.registerRemoteError(OrderConflict.self)
    }

    struct SagaInput: Codable, Sendable {
        var order: String
        var user: String
        var sku: String
        var quantity: Int
        var amount: Int
    }

    static func registerSaga(on system: ClusterActorSystem) {
        // The input is in the compact binary form (decoded by every step; JSON cost more than the step's own work).
        @Sendable func input(_ context: SagaContext) throws -> SagaInput {
            if let binary = try? BinaryDecoder().decode(SagaInput.self, from: context.input) { return binary }
            return try context.decodeInput(SagaInput.self)  // sagas started by an earlier version (JSON)
        }
        system.sagas.register(SagaDefinition(sagaName, steps: [
            // Undone last: the stock goes back and the order is cancelled (also when the reservation itself
            // failed — a lost reply may hide a reservation, and the order must end cancelled either way).
            SagaStep("reserve-stock", maxAttempts: 1, action: { context in
                let i = try input(context)
                try await context.actorSystem.reference(InventoryActor.self, key: i.sku).reserve(order: i.order, quantity: i.quantity)
                _ = try await context.actorSystem.reference(OrderActor.self, key: i.order).fire(.reserve)
            }, compensation: { context in
                let i = try input(context)
                try await context.actorSystem.reference(InventoryActor.self, key: i.sku).release(order: i.order)
                _ = try await context.actorSystem.reference(OrderActor.self, key: i.order).fire(.cancel, reason: "compensated")
            }),
            SagaStep("hold-funds", maxAttempts: 1, action: { context in
                let i = try input(context)
                try await context.actorSystem.reference(AccountActor.self, key: i.user).hold(order: i.order, amount: i.amount)
                _ = try await context.actorSystem.reference(OrderActor.self, key: i.order).fire(.pay)
            }, compensation: { context in
                let i = try input(context)
                try await context.actorSystem.reference(AccountActor.self, key: i.user).releaseHold(order: i.order)
            }),
            // The pivot: once the order is completed it can no longer be cancelled, so the stock and the money
            // follow it forward (both idempotent, retried for as long as it takes) and nothing is compensated.
            // If the order was cancelled first (by its user or its payment timeout), completing it fails and
            // the saga compensates.
            SagaStep("confirm", timeout: .seconds(120), maxAttempts: 1, compensateOnFailure: false, action: { context in
                let i = try input(context)
                // Retried until a definite answer: a lost reply must not be mistaken for a refusal.
                try await forward(on: context.actorSystem) { _ = try await context.actorSystem.reference(OrderActor.self, key: i.order).fire(.complete) }
                try await forward(on: context.actorSystem) { try await context.actorSystem.reference(InventoryActor.self, key: i.sku).commit(order: i.order) }
                try await forward(on: context.actorSystem) { try await context.actorSystem.reference(AccountActor.self, key: i.user).capture(order: i.order) }
            }),
        ]))
    }

    /// Runs an idempotent call until it succeeds or is declined by the shop (a definite "no"); transport
    /// failures, timeouts and fenced activations are retried with backoff (the step's timeout bounds it).
    static func forward(on system: ClusterActorSystem, _ body: @Sendable () async throws -> Void) async throws {
        var backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(2))
        while true {
            do {
                return try await body()
            } catch where ShopDecline.isDecline(error) {
                throw error
            } catch {
                try await system.clock.sleep(for: system.nextDelay(&backoff))
            }
        }
    }

    /// - Parameters:
    ///   - ids: the order id source (a `SnowflakeGenerator`'s or a `LeasedSnowflake`'s `next`).
    ///   - bus: where order timeouts go; nil: orders never time out.
    ///   - bloom: the set of SKUs that exist (in Redis when several gateways share the catalog); nil: in memory.
    public init(store: DocumentStore, cacheStore: any KeyValueStore, ids: @escaping @Sendable () throws -> Int64, bus: Bus? = nil,
                paymentTimeout: Duration = .seconds(900), passwordRounds: Int = 210_000, bloom: (any BloomFilter)? = nil) async throws {
        self.bus = bus
        self.paymentTimeout = paymentTimeout
        self.passwordRounds = passwordRounds
        products = try await store.collection("products", of: Product.self)
        users = try await store.collection("users", of: ShopUser.self)
        self.bloom = try bloom ?? InMemoryBloomFilter(parameters: Self.bloomParameters)
        catalog = try Cache<Product>(store: cacheStore, options: CacheOptions(
            ttl: .seconds(60), ttlJitter: 0.2, nullTTL: .seconds(10), breakdown: .singleFlight, bloomFilter: self.bloom, keyPrefix: "product:"))
        for product in try await products.find() { try await self.bloom.add(product._id) }
        nextID = ids
    }

    /// Sized for the reference catalog: 100,000 SKUs at a 1 % false-positive rate.
    public static var bloomParameters: BloomParameters { get throws { try BloomParameters(expectedItems: 100_000, falsePositiveRate: 0.01) } }

    /// A shop whose order ids come from a Snowflake generator with a fixed worker id (one gateway).
    public init(store: DocumentStore, cacheStore: any KeyValueStore, workerID: Int, bus: Bus? = nil,
                paymentTimeout: Duration = .seconds(900), passwordRounds: Int = 210_000) async throws {
        let generator = try SnowflakeGenerator(workerID: workerID)
        try await self.init(store: store, cacheStore: cacheStore, ids: { try generator.next() }, bus: bus,
                            paymentTimeout: paymentTimeout, passwordRounds: passwordRounds)
    }

    /// Adds (or replaces) a user with a password.
    public func addUser(_ name: String, password: String) async throws {
        guard !name.isEmpty, name.utf8.count <= 100 else { throw ShopError(.invalidRequest, "userName", title: "user names are 1…100 bytes") }
        let salt = (0..<16).map { _ in UInt8.random(in: .min ... .max) }
        let hash = try Self.derive(password, salt: salt, rounds: passwordRounds)
        try await users.upsert(ShopUser(_id: name, salt: Self.hex(salt), hash: Self.hex(hash), rounds: passwordRounds))
    }

    /// The user id when `password` is the user's password, else nil (for ``GatewayServices/authenticate``).
    ///
    /// An unknown user costs the same hashing as a known one (its answer time does not tell who exists), and
    /// the hashing runs on NIO's blocking thread pool — off the event loops and the cooperative pool, at most
    /// one per pool thread at a time — so that logins cannot starve other requests.
    public func authenticate(_ name: String, password: String) async throws -> String? {
        guard name.utf8.count <= 100, password.utf8.count <= 1024 else { return nil }
        let user = try await users.get(.string(name))?.value
        guard let user, let salt = Self.unhex(user.salt), let stored = Self.unhex(user.hash) else {
            _ = try await Self.deriveOffLoop(password, salt: Self.decoySalt, rounds: passwordRounds)
            return nil
        }
        let hash = try await Self.deriveOffLoop(password, salt: salt, rounds: user.rounds)
        // Constant-time comparison of the derived keys.
        return SymmetricKey(data: hash) == SymmetricKey(data: stored) ? user._id : nil
    }

    /// The salt hashed against for unknown users (any fixed value: nothing is compared with the result).
    static let decoySalt = [UInt8](repeating: 0x5A, count: 16)

    static func deriveOffLoop(_ password: String, salt: [UInt8], rounds: Int) async throws -> [UInt8] {
        try await NIOThreadPool.singleton.runIfActive { try derive(password, salt: salt, rounds: rounds) }
    }

    static func derive(_ password: String, salt: [UInt8], rounds: Int) throws -> [UInt8] {
        let key = try KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32,
                                                   unsafeUncheckedRounds: max(1, rounds))
        return key.withUnsafeBytes { Array($0) }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            for (index, byte) in bytes.enumerated() {
                out[2 * index] = digits.utf8Start[Int(byte >> 4)]
                out[2 * index + 1] = digits.utf8Start[Int(byte & 0x0f)]
            }
            return bytes.count * 2
        }
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[index...index + 1], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }

    /// Adds a product (and lets the Bloom filter know it exists).
    public func addProduct(_ product: Product) async throws {
        try await products.upsert(product)
        try await bloom.add(product._id)
        try await catalog.invalidate(product._id)
    }

    /// The product `sku` from the cache, or nil when it does not exist.
    public func product(_ sku: String) async throws -> Product? {
        try await catalog.get(sku) { try await products.get(.string(sku))?.value }
    }

    struct PlaceOrder: Decodable {
        var sku: String
        var quantity: Int
    }

    /// The id of the order a client intent creates: derived from the user and the intent (an idempotency key,
    /// or a cart line), so every request carrying the intent — a retry after a timeout, a 5xx, a crash of the
    /// gateway, or a concurrent duplicate — reaches the same order instead of creating another one.
    /// Whether `id` can name an order at all: "k" + 30 lowercase hex digits (from an intent) or a Snowflake
    /// id (1…19 decimal digits). Anything else is answered 404 without touching an actor, so that made-up ids
    /// cannot make nodes activate (and keep) actors.
    public static func isWellFormedOrderID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        if bytes.count == 31, bytes[0] == UInt8(ascii: "k") {
            return bytes.dropFirst().allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
        }
        return (1...19).contains(bytes.count) && bytes.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    /// The order id of `intent` of `user` (see ``isWellFormedOrderID(_:)``): "k" and 30 hex digits of a digest.
    public static func orderID(user: String, intent: String) -> String {
        var hash = SHA256()
        hash.update(data: Array("order\u{0}\(user)\u{0}\(intent)".utf8))
        return "k" + hex(Array(hash.finalize().prefix(15)))
    }

    /// Places one order and returns it as it is now. With an `intent` (the request's idempotency key) the id
    /// is ``orderID(user:intent:)`` and placing it again returns the existing order; without one, a new
    /// Snowflake id. The order actor starts the saga; its payment reminder is written with it.
    func placeOrder(system: ClusterActorSystem, user: String, sku: String, quantity: Int, intent: String?) async throws -> OrderInfo {
        guard quantity > 0, quantity <= 100 else { throw ShopError(.invalidRequest, "quantity", title: "quantity must be 1…100") }
        guard let product = try await product(sku) else { throw ShopError(.notFound, "product", title: "no such product", detail: sku) }
        let id = try intent.map { Self.orderID(user: user, intent: $0) } ?? String(try nextID())
        // The payment reminder travels with the order's creation (its outbox), not before it: placing an order
        // does not wait for the bus.
        let payBy = bus == nil ? nil : try BusDelay.after(paymentTimeout).deliverAtMS(now: nowMilliseconds())
        let (info, input) = try Self.newOrder(id: id, user: user, sku: sku, quantity: quantity, price: product.price, intent: intent, payBy: payBy)
        let placed: OrderInfo
        do {
            placed = try await system.reference(OrderActor.self, key: id).place(info, sagaInput: input)
        } catch where OrderConflict.isConflict(error) {
            throw ShopError(.rejected, "idempotencyKeyReused", title: "Idempotency-Key reused",
                            detail: "this key placed an order for another product or quantity; use a new key for a new order")
        }
        placedOrders.withLock { $0 += 1 }
        return placed
    }

    /// An order and the saga input that placing it sends to its ``OrderActor``
    /// (`system.reference(OrderActor.self, key: info.id).place(info, sagaInput: input)`).
    /// - Parameter payBy: when its payment reminder is due (ms since 1970; nil: none, as without a bus).
    public static func newOrder(id: String, user: String, sku: String, quantity: Int, price: Int, intent: String?,
                                payBy: Int64? = nil) throws -> (info: OrderInfo, sagaInput: [UInt8]) {
        var info = OrderInfo(id: id, user: user, sku: sku, quantity: quantity, amount: price * quantity)
        info.intent = intent
        info.payBy = payBy
        let input = try BinaryEncoder().encode(SagaInput(order: id, user: user, sku: sku, quantity: quantity, amount: info.amount))
        return (info, input)
    }

    /// Sends the delayed message that cancels the order if it is still unpaid after `paymentTimeout` (placed
    /// orders carry theirs in their outbox; this is for orders created otherwise).
    public func scheduleTimeout(order id: String) async throws {
        guard let bus else { return }
        try await bus.producer(group: "shop").send(OutgoingMessage(topic: Self.timeoutTopic, keys: [id], body: Array(id.utf8),
                                                                   shardingKey: id, delay: .after(paymentTimeout)))
    }

    /// The consumer that delivers order timeouts to the order actors (run it in the ServiceGroup).
    public func timeoutConsumer(system: ClusterActorSystem) -> BusConsumer? {
        bus.map { Self.timeoutConsumer(bus: $0, system: system) }
    }

    /// The consumer that delivers order timeouts to the order actors, for a node that hosts them.
    public static func timeoutConsumer(bus: Bus, system: ClusterActorSystem) -> BusConsumer {
        routeEvents(bus: bus, group: timeoutGroup, topic: Self.timeoutTopic, system: system, to: OrderActor.self,
                           key: { String(decoding: $0.body, as: UTF8.self) },
                           deliver: { order, _ in _ = try await order.expire() })
    }

    /// The consumer group that counts sales from the orders' events.
    public static let salesGroup = "shop-sales"

    /// Choreography: the "completed" order events (from the orders' outboxes) counted per SKU by the
    /// ``SalesActor``s, each event once (inbox). Run it in the ServiceGroup of every node.
    public static func salesConsumer(bus: Bus, system: ClusterActorSystem) -> BusConsumer {
        routeEvents(bus: bus, group: salesGroup, topic: OrderActor.eventsTopic, tags: TagExpression("completed"), system: system,
                    to: SalesActor.self, key: { $0.shardingKey ?? (try? $0.decode(OrderEventBody.self).sku) },  // sharding key = SKU
                    deliver: { sales, message in _ = try await sales.record(message) })
    }

    /// The orders activated on `system` relay their outbox events to `bus` (call once per node).
    public static func relayEvents(to bus: Bus, system: ClusterActorSystem) {
        system.outboxRelay.setPublisher(bus.producer(group: "shop-orders"))
    }

    /// The cart lives in the user's server-side session (key "cart": JSON sku → quantity; "cartId": the
    /// cart's identity, which makes its checkout idempotent).
    static func cart(_ session: GatewayServices.Session) -> [String: Int] {
        session.data["cart"].flatMap { try? JSONDecoder().decode([String: Int].self, from: Data($0.utf8)) } ?? [:]
    }

    /// What the last checkout of a session placed, so a retry with its Idempotency-Key answers the same orders.
    struct LastCheckout: Codable {
        var key: String
        var orders: [String]
    }

    /// The shapes of the routes' bodies, for `/openapi.json`.
    enum APISchemas {
        static func line(minimum: Int) -> APISchema {
            .object(["sku": .string, "quantity": .integer(minimum: minimum, maximum: 100)], required: ["sku", "quantity"])
        }
        static let cart: APISchema = .map(.integer(minimum: 1, maximum: 100))
        static let status: APISchema = .string
        static let orderStatus: APISchema = .object(["orderId": .string, "status": status], required: ["orderId", "status"])
        static let order: APISchema = .object([
            "id": .string, "user": .string, "sku": .string, "quantity": .integer(), "amount": .integer(), "status": status,
            "reason": .string, "createdAt": .integer(), "finishedAt": .integer(), "intent": .string, "payBy": .integer(),
        ], required: ["id", "user", "sku", "quantity", "amount", "status"])
        static let orderView: APISchema = .object([
            "order": order, "saga": .string, "stockAvailable": .integer(), "balance": .integer(), "partial": .array(.string),
        ], required: ["order", "partial"])
    }

    /// The shop's routes for the gateway's route table.
    public func routes(system: ClusterActorSystem, sessions: SessionStore<GatewayServices.Session>, maxBody: Int = 1 << 16) -> [GatewayRoute] {
        @Sendable func session(_ context: GatewayContext) async throws -> (String, GatewayServices.Session) {
            guard let id = context.sessionID, let session = try await sessions.get(id) else { throw GatewayError(.unauthorized, "session ended") }
            return (id, session)
        }
        return [
            // Setting a quantity is idempotent by nature.
            GatewayRoute(.put, "/cart", summary: "Put a product in the cart (quantity 0 removes it)", idempotency: .byEffect,
                         request: APISchemas.line(minimum: 0), responses: [APIResponse(200, "The cart: quantity by SKU", schema: APISchemas.cart)]) { request, context in
                let item = try await Gateway.decode(PlaceOrder.self, request, limit: maxBody)
                guard item.quantity >= 0, item.quantity <= 100 else { throw GatewayError(.badRequest, "quantity must be 0…100") }
                guard try await product(item.sku) != nil else { throw GatewayError(.notFound, "no such product", detail: item.sku) }
                guard let id = context.sessionID else { throw GatewayError(.unauthorized, "session ended") }
                // A compare-and-set on the session: a logout meanwhile wins (the session is not recreated).
                guard let cart = try await sessions.modify(id, { current -> [String: Int] in
                    var cart = Self.cart(current)
                    cart[item.sku] = item.quantity == 0 ? nil : item.quantity
                    current.data["cart"] = String(decoding: try JSONEncoder().encode(cart), as: UTF8.self)
                    if current.data["cartId"] == nil { current.data["cartId"] = Self.hex((0..<12).map { _ in UInt8.random(in: .min ... .max) }) }
                    return cart
                }) else { throw GatewayError(.unauthorized, "session ended") }
                return Gateway.json(cart)
            },
            GatewayRoute(.get, "/cart", summary: "The cart of the session", responses: [APIResponse(200, "The cart: quantity by SKU", schema: APISchemas.cart)]) { _, context in
                Gateway.json(Self.cart(try await session(context).1))
            },
            // Each line's order id comes from the cart's identity (or the request's Idempotency-Key) and the
            // SKU: two checkouts of one cart, concurrent or retried, place each line once.
            GatewayRoute(.post, "/cart/checkout", summary: "Place one order per cart line and empty the cart", idempotency: .byEffect,
                         responses: [APIResponse(202, "The orders placed, one per line", schema: .object(["orderIds": .array(.string)], required: ["orderIds"])),
                                     APIResponse(409, "The cart is empty", schema: .reference("Problem"), contentType: "application/problem+json")],
                         feature: "checkout") { _, context in
                let (id, current) = try await session(context)
                let cart = Self.cart(current)
                let user = context.user ?? ""
                if cart.isEmpty, let key = context.idempotencyKey,
                   let last = current.data["lastCheckout"].flatMap({ try? JSONDecoder().decode(LastCheckout.self, from: Data($0.utf8)) }),
                   last.key == key {
                    return Gateway.json(["orderIds": last.orders], status: .accepted)
                }
                guard !cart.isEmpty else { throw GatewayError(.conflict, "the cart is empty", detail: "put items in the cart first") }
                let intent = context.idempotencyKey.map { "checkout:\($0)" } ?? "cart:\(current.data["cartId"] ?? id)"
                var orders: [String] = []
                for (sku, quantity) in cart.sorted(by: { $0.key < $1.key }) {
                    orders.append(try await placeOrder(system: system, user: user, sku: sku, quantity: quantity, intent: "\(intent):\(sku)").id)
                }
                // Only the lines checked out leave the cart (one added meanwhile stays), and a logout meanwhile
                // wins: the session is changed with a compare-and-set, never written back whole or recreated.
                let checkedOut = cart
                let lastCheckout = try context.idempotencyKey.map {
                    String(decoding: try JSONEncoder().encode(LastCheckout(key: $0, orders: orders)), as: UTF8.self)
                }
                // The orders are placed either way (the request was authorised when it started): they are answered.
                _ = try await sessions.modify(id) { now in
                    var remaining = Self.cart(now)
                    for (sku, quantity) in checkedOut where remaining[sku] == quantity { remaining[sku] = nil }
                    now.data["cart"] = remaining.isEmpty ? nil : String(decoding: try JSONEncoder().encode(remaining), as: UTF8.self)
                    if remaining.isEmpty { now.data["cartId"] = nil }
                    if let lastCheckout { now.data["lastCheckout"] = lastCheckout }
                }
                return Gateway.json(["orderIds": orders], status: .accepted)
            },
            GatewayRoute(.get, "/products/:sku", summary: "A product of the catalog (cached)", requiresAuth: false,
                         responses: [APIResponse(200, "The product", schema: .object(["_id": .string, "name": .string, "price": .integer()],
                                                                                      required: ["_id", "name", "price"]))]) { _, context in
                let sku = try context.parameters.require("sku")
                guard let product = try await product(sku) else { throw GatewayError(.notFound, "no such product", detail: sku) }
                return Gateway.json(product)
            },
            // With an Idempotency-Key the order's id is derived from the user and the key: every request with
            // the key answers the one order it placed, in its current state.
            GatewayRoute(.post, "/orders", summary: "Place an order (runs the place-order saga)", idempotency: .byEffect,
                         request: APISchemas.line(minimum: 1), responses: [APIResponse(202, "Placed: the saga runs", schema: APISchemas.orderStatus)],
                         feature: "orders") { request, context in
                let body = try await Gateway.decode(PlaceOrder.self, request, limit: maxBody)
                let order = try await placeOrder(system: system, user: context.user ?? "", sku: body.sku, quantity: body.quantity,
                                                 intent: context.idempotencyKey)
                return Gateway.json(["orderId": order.id, "status": order.status.rawValue], status: .accepted)
            },
            // Cancelling is idempotent by nature (a cancelled order stays cancelled).
            GatewayRoute(.post, "/orders/:id/cancel", summary: "Cancel an order that is not completed yet (the saga compensates)",
                         idempotency: .byEffect, responses: [
                            APIResponse(200, "Cancelled (or cancelling)", schema: APISchemas.orderStatus),
                            APIResponse(409, "Completed already: it cannot be cancelled", schema: .reference("Problem"), contentType: "application/problem+json"),
                         ]) { _, context in
                let id = try context.parameters.require("id")
                guard Self.isWellFormedOrderID(id) else { throw GatewayError(.notFound, "no such order", detail: String(id.prefix(64))) }
                let order = try system.reference(OrderActor.self, key: id)
                let info = try await order.info()
                guard !info.id.isEmpty, info.user == context.user else { throw GatewayError(.notFound, "no such order", detail: id) }
                do {
                    let status = try await order.fire(.cancel, reason: "cancelled by the user")
                    return Gateway.json(["orderId": id, "status": status.rawValue])
                } catch where ShopDecline.isDecline(error) {
                    throw GatewayError(.conflict, "the order cannot be cancelled", detail: "\(error)")
                }
            },
            GatewayRoute(.get, "/orders/:id", summary: "An order with its saga, stock and account (partial results marked)",
                         responses: [APIResponse(200, "The order; `partial` names the parts that did not answer in time", schema: APISchemas.orderView)]) { _, context in
                let id = try context.parameters.require("id")
                guard Self.isWellFormedOrderID(id) else { throw GatewayError(.notFound, "no such order", detail: String(id.prefix(64))) }
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
