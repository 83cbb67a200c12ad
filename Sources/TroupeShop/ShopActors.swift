import Distributed
import Foundation
public import TroupeActors
public import TroupeBus
public import TroupeCore
public import TroupeSaga

/// Why the shop declined something (shown to the client). It reaches callers as itself from any node
/// (``CodableRemoteError``): catch it by type.
public struct ShopDecline: CodableRemoteError, CustomStringConvertible {
    /// Why, in words the client may see.
    public var reason: String
    public var remoteErrorCode: String { "shop-decline" }
    public var description: String { reason }
    /// A decline saying `reason`.
    public init(_ reason: String) { self.reason = reason }

    /// Whether `error` is the shop's refusal, thrown here or by an actor on another node, or what a failed
    /// call of the runtime wraps.
    public static func isDecline(_ error: any Error) -> Bool {
        error is ShopDecline || (error as? ActorSystemError)?.underlying is ShopDecline
    }
}

/// A second request with an idempotency key that names an existing order for something else (another SKU
/// or quantity): the key is bound to its first request's effect (HTTP 422). Reaches callers as itself.
public struct OrderConflict: CodableRemoteError, CustomStringConvertible {
    /// The order the idempotency key already names.
    public var order: String
    public var remoteErrorCode: String { "order-conflict" }
    public var description: String { "order \(order) was placed with this idempotency key for another request" }
    /// A conflict with `order`.
    public init(order: String) { self.order = order }

    /// Whether `error` is this conflict, thrown here or by an actor on another node.
    public static func isConflict(_ error: any Error) -> Bool {
        error is OrderConflict || (error as? ActorSystemError)?.underlying is OrderConflict
    }
}

/// Stock of one SKU: what is available and what orders have reserved.
public distributed actor InventoryActor: PersistentVirtualActor {
    public typealias ActorSystem = ClusterActorSystem

    /// Stock available, reserved per order, and sold, with the orders whose reservation was released.
    public struct State: Codable, Sendable {
        /// Units available to reserve.
        public var available = 0
        /// Units reserved, by order.
        public var reserved: [String: Int] = [:]
        /// Units sold (committed reservations).
        public var sold = 0
        /// Orders whose reservation was released (milliseconds since 1970), kept for ``Tombstones/retention``:
        /// a reservation for one of them that arrives late — from a stale saga activation on a node that was
        /// frozen or cut off, or a call delivered after its compensation — is refused instead of holding stock
        /// for an order that is already cancelled.
        public var released: [String: Int64]?
    }

    public var persisted = Persisted(State())

    /// An activation on `actorSystem` (the runtime makes them).
    public init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }

    /// Adds `quantity` units; returns the units available.
    public distributed func restock(_ quantity: Int) async throws -> Int {
        try await update { $0.available += quantity; return $0.available }
    }

    /// Reserves `quantity` for `order` (idempotent per order). Only an order that is still `created` gets a
    /// new reservation: a reserve that arrives after its order moved on — queued on a node that was frozen
    /// or cut off while a newer saga activation completed or cancelled the order — is refused, so it cannot
    /// hold stock that nothing will ever commit or release. (Costs one call to the order per reservation.)
    public distributed func reserve(order: String, quantity: Int) async throws {
        if state.reserved[order] != nil { return }
        let status = try await actorSystem.reference(OrderActor.self, key: order).info().status
        guard status == .created else { throw ShopDecline("order \(order) is \(status.rawValue); it takes no new reservation") }
        try await update { state in
            if state.reserved[order] != nil { return }
            guard state.released?[order] == nil else { throw ShopDecline("order \(order) was released or committed already") }
            guard quantity > 0, state.available >= quantity else { throw ShopDecline("out of stock") }
            state.available -= quantity
            state.reserved[order] = quantity
        }
    }

    /// Releases `order`'s reservation (idempotent); the order is remembered so a late reserve is refused.
    public distributed func release(order: String) async throws {
        let now = actorSystem.clock.wallClockMilliseconds
        try await update { state in
            Tombstones.add(order, to: &state.released, now: now)
            guard let quantity = state.reserved.removeValue(forKey: order) else { return }
            state.available += quantity
        }
    }

    /// Sells `order`'s reservation (idempotent).
    public distributed func commit(order: String) async throws {
        let now = actorSystem.clock.wallClockMilliseconds
        try await update { state in
            // A committed order takes no new reservation either: a reserve whose check of the order's status
            // passed (it was still `created`) but whose write comes after the commit — its status call was
            // re-routed for seconds while the saga went on — would otherwise hold stock for it forever.
            Tombstones.add(order, to: &state.released, now: now)
            guard let quantity = state.reserved.removeValue(forKey: order) else { return }
            state.sold += quantity
        }
    }

    public distributed func snapshot() -> State { state }
}

/// Released (and, for stock, committed) orders remembered for a while, so that a late reservation for them is refused.
enum Tombstones {
    /// Longer than any call or saga step can stay in flight (call timeouts are seconds, a frozen node is
    /// removed from the membership after its lease TTL).
    static let retention: Int64 = 10 * 60 * 1000
    /// At most this many (the oldest go first).
    static let capacity = 2_000

    /// Remembers `order` from `now` (ms since 1970, the system clock's); an order remembered already keeps its
    /// first time, so that repeating a release or commit changes nothing (and costs a read, not a write).
    static func add(_ order: String, to tombstones: inout [String: Int64]?, now: Int64) {
        guard tombstones?[order] == nil else { return }
        var set = tombstones ?? [:]
        set[order] = now
        if set.count > 64 { set = set.filter { now - $0.value < retention } }
        if set.count > capacity {
            for (key, _) in set.sorted(by: { $0.value < $1.value }).prefix(set.count - capacity) { set.removeValue(forKey: key) }
        }
        tombstones = set
    }
}

/// A customer's money: balance and holds for orders in progress.
public distributed actor AccountActor: PersistentVirtualActor {
    public typealias ActorSystem = ClusterActorSystem

    /// An account's balance, its holds per order and its charges ledger.
    public struct State: Codable, Sendable {
        /// Money available.
        public var balance = 0
        /// Money held, by order.
        public var holds: [String: Int] = [:]
        /// Money captured in all.
        public var spent = 0
        /// The ledger of captured payments, by order: an order is charged at most once, and
        /// `charges.values.sum == spent` always.
        public var charges: [String: Int] = [:]
        /// Orders whose hold was released: a hold for one of them that arrives late is refused (see
        /// ``InventoryActor/State/released``).
        public var released: [String: Int64]?

        /// An empty account.
        public init() {}

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            balance = try container.decode(Int.self, forKey: .balance)
            holds = try container.decode([String: Int].self, forKey: .holds)
            spent = try container.decode(Int.self, forKey: .spent)
            charges = try container.decodeIfPresent([String: Int].self, forKey: .charges) ?? [:]
            released = try container.decodeIfPresent([String: Int64].self, forKey: .released)
        }
    }

    public var persisted = Persisted(State())

    /// An activation on `actorSystem` (the runtime makes them).
    public init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }

    /// Adds `amount` cents; returns the balance.
    public distributed func deposit(_ amount: Int) async throws -> Int {
        try await update { $0.balance += amount; return $0.balance }
    }

    /// Holds `amount` for `order` (idempotent per order).
    /// - Throws: ``ShopDecline`` when the balance is too low, or the order's hold was released already.
    public distributed func hold(order: String, amount: Int) async throws {
        try await update { state in
            if state.holds[order] != nil || state.charges[order] != nil { return }  // held already, or paid
            guard state.released?[order] == nil else { throw ShopDecline("order \(order) was released or committed already") }
            guard amount >= 0, state.balance >= amount else { throw ShopDecline("insufficient funds") }
            state.balance -= amount
            state.holds[order] = amount
        }
    }

    /// Releases `order`'s hold back to the balance (idempotent).
    public distributed func releaseHold(order: String) async throws {
        let now = actorSystem.clock.wallClockMilliseconds
        try await update { state in
            guard state.charges[order] == nil else { return }  // paid: nothing to release, and no tombstone
            Tombstones.add(order, to: &state.released, now: now)
            guard let amount = state.holds.removeValue(forKey: order) else { return }
            state.balance += amount
        }
    }

    /// Captures `order`'s hold: the money is spent and the order is charged, once.
    public distributed func capture(order: String) async throws {
        try await update { state in
            guard let amount = state.holds.removeValue(forKey: order), state.charges[order] == nil else { return }
            state.spent += amount
            state.charges[order] = amount
        }
    }

    public distributed func snapshot() -> State { state }
}

/// The lifecycle of an order: `created → reserved → paid → completed`, or `cancelled`.
public enum OrderStatus: String, Codable, Sendable, Hashable {
    case created, reserved, paid, completed, cancelled
}

/// What moves an order from one status to the next.
public enum OrderEvent: String, Codable, Sendable, Hashable {
    case reserve, pay, complete, cancel
}

/// The order's lifecycle as a finite-state machine (illegal transitions throw).
public enum OrderLifecycle {
    /// The transitions of an order.
    public static let definition = FSMDefinition<OrderStatus, OrderEvent, Never>(transitions: [
        .init(from: .created, on: .reserve, to: .reserved),
        .init(from: .reserved, on: .pay, to: .paid),
        .init(from: .paid, on: .complete, to: .completed),
        .init(from: [.created, .reserved, .paid], on: .cancel, to: .cancelled),
    ])
}

/// An order: who placed it, what, for how much, its status and when it changed.
public struct OrderInfo: Codable, Sendable, Hashable {
    /// The order id.
    public var id: String = ""
    /// The user who placed it.
    public var user: String = ""
    /// The SKU ordered.
    public var sku: String = ""
    /// Units ordered.
    public var quantity = 0
    /// The price in cents.
    public var amount = 0
    /// Where the order is in its lifecycle.
    public var status: OrderStatus = .created
    /// Why it was cancelled, if it was.
    public var reason: String?
    /// When the order was created and when it reached a final state (milliseconds since 1970, the hosting node's clock).
    public var createdAt: Int64?
    /// When it reached a final state.
    public var finishedAt: Int64?
    /// The client intent that placed the order (its Idempotency-Key, or its cart line), when it had one:
    /// audits check one order per (user, intent).
    public var intent: String?
    /// When the order's payment reminder is due (milliseconds since 1970): set by whoever places the order,
    /// the reminder is sent through the order's outbox with its creation, so that placing an order does not
    /// wait for the bus. `nil`: no reminder (the reconciler is the only safety net).
    public var payBy: Int64?

    /// An order with the given fields.
    public init(id: String = "", user: String = "", sku: String = "", quantity: Int = 0, amount: Int = 0,
                status: OrderStatus = .created, reason: String? = nil) {
        self.id = id
        self.user = user
        self.sku = sku
        self.quantity = quantity
        self.amount = amount
        self.status = status
        self.reason = reason
    }
}

/// What an order's final state tells the rest of the shop (topic ``OrderActor/eventsTopic``, tag = the status).
public struct OrderEventBody: Codable, Sendable, Hashable {
    /// The order id.
    public var order: String
    /// The user who placed it.
    public var user: String
    /// The SKU.
    public var sku: String
    /// Units.
    public var quantity: Int
    /// The price in cents.
    public var amount: Int
}

/// One order (key: its Snowflake id). Reaching a final state emits an event through the order's own
/// outbox (the state change and the event are one write, relayed to the bus afterwards).
public distributed actor OrderActor: PersistentVirtualActor {
    public typealias ActorSystem = ClusterActorSystem
    /// The topic of the orders' final states.
    public static let eventsTopic = "orders"
    /// An order lives with its place-order saga (same key): the saga's calls to the order stay in process.
    public static var placementGroup: String? { SagaActor.placementGroup }

    /// The order and the events it has not relayed to the bus yet (its outbox).
    public struct State: Codable, Sendable, OutboxCarrying {
        /// The order.
        public var info = OrderInfo()
        /// Events not relayed to the bus yet.
        public var outbox = Outbox()
    }

    public var persisted = Persisted(State())

    /// An activation on `actorSystem` (the runtime makes them).
    public init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }

    /// Events left in the outbox by an activation that died go out now — those it had not relayed yet.
    public func didActivate() async throws {
        if !state.outbox.pending.isEmpty { _ = try? await relayOutbox() }
    }

    /// Creates the order once: a second create of the same id (a retry) changes nothing; one for another
    /// request (another user, SKU or quantity) throws ``OrderConflict``. An order with `payBy` gets its
    /// payment reminder (a delayed bus message to ``Shop/timeoutTopic``) in the same write, relayed in the
    /// background: an unreachable bus delays the reminder, never the order.
    public distributed func create(_ info: OrderInfo) async throws {
        if !state.info.id.isEmpty {
            guard Self.sameRequest(state.info, info) else { throw OrderConflict(order: state.info.id) }
            return
        }
        try await updateAndEmit(relay: .inBackground) { state, events in
            // Writes are serialised: a concurrent create may have written while this one waited.
            guard state.info.id.isEmpty else {
                guard Self.sameRequest(state.info, info) else { throw OrderConflict(order: state.info.id) }
                return
            }
            state.info = info
            state.info.createdAt = actorSystem.clock.wallClockMilliseconds
            if let payBy = info.payBy {
                events.emit(OutgoingMessage(topic: Shop.timeoutTopic, keys: [info.id], body: Array(info.id.utf8), shardingKey: info.id,
                                            delay: .at(payBy)))
            }
        }
    }

    static func sameRequest(_ a: OrderInfo, _ b: OrderInfo) -> Bool {
        a.user == b.user && a.sku == b.sku && a.quantity == b.quantity
    }

    /// Creates the order and starts its place-order saga (the saga lives on this node: same placement
    /// group, same key), so placing an order is one call from the gateway. Idempotent: placing an order that
    /// exists (a retry with the same idempotency key) starts nothing new and returns the order as it is now.
    @discardableResult
    public distributed func place(_ info: OrderInfo, sagaInput: [UInt8]) async throws -> OrderInfo {
        try await create(info)
        _ = try await actorSystem.reference(SagaActor.self, key: info.id).start(definition: Shop.sagaName, input: sagaInput)
        return state.info
    }

    /// Fires a lifecycle event; repeating the event that led to the current state is accepted (idempotent steps).
    public distributed func fire(_ event: OrderEvent, reason: String? = nil) async throws -> OrderStatus {
        try await updateAndEmit { state, events in
            var machine = StateMachine(OrderLifecycle.definition, initial: state.info.status)
            if machine.canFire(event) {
                _ = try machine.fire(event)
                state.info.status = machine.state
                if let reason { state.info.reason = reason }
                if state.info.status == .completed || state.info.status == .cancelled {
                    state.info.finishedAt = actorSystem.clock.wallClockMilliseconds
                    let info = state.info
                    let body = OrderEventBody(order: info.id, user: info.user, sku: info.sku, quantity: info.quantity, amount: info.amount)
                    events.emit(try OutgoingMessage(topic: Self.eventsTopic, tag: info.status.rawValue, keys: [info.id], json: body,
                                                    shardingKey: info.sku))
                }
            } else if !Self.alreadyDone(event, state.info.status) {
                throw ShopDecline("order \(state.info.id) is \(state.info.status.rawValue); cannot \(event.rawValue)")
            }
            return state.info.status
        }
    }

    static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    static func alreadyDone(_ event: OrderEvent, _ status: OrderStatus) -> Bool {
        switch (event, status) {
        case (.reserve, .reserved), (.reserve, .paid), (.reserve, .completed), (.pay, .paid), (.pay, .completed),
             (.complete, .completed), (.cancel, .cancelled):
            return true
        default:
            return false
        }
    }

    /// The order's durable reminder (a delayed bus message, `paymentTimeout` after placement) fired: the
    /// order is reconciled. An order not completed by now is cancelled ("unpaid"); then, once its saga has
    /// stopped, whatever the order still holds follows its final state — the stock and the money go back for
    /// a cancelled order, are committed and captured for a completed one (all idempotent). This is what
    /// releases a reservation whose saga ended `failed`, or whose saga never started (a crash between the
    /// order's creation and the saga's start). Throws while the saga still runs, so the bus redelivers the
    /// reminder later (its retry delays grow; the saga's own compensation deadline is shorter).
    public distributed func expire() async throws -> OrderStatus {
        guard !state.info.id.isEmpty else { return state.info.status }
        let info = state.info
        let saga = try await actorSystem.reference(SagaActor.self, key: info.id).status().status
        if info.status != .completed, info.status != .cancelled {
            // Compensating, or about to confirm a paid order: the saga decides first.
            if saga == .compensating || (saga == .running && info.status == .paid) {
                throw ActorSystemError(.timeout, "order \(info.id): its saga is still \(saga.rawValue); reconciling later")
            }
            _ = try await fire(.cancel, reason: "unpaid")
        }
        // A running saga moves stock or money still (a cancelled order makes it compensate): later.
        guard saga.isFinal || saga == .created else {
            throw ActorSystemError(.timeout, "order \(info.id): its saga is still \(saga.rawValue); reconciling later")
        }
        let inventory = try actorSystem.reference(InventoryActor.self, key: info.sku)
        let account = try actorSystem.reference(AccountActor.self, key: info.user)
        if state.info.status == .completed {
            try await inventory.commit(order: info.id)
            try await account.capture(order: info.id)
        } else {
            try await inventory.release(order: info.id)
            try await account.releaseHold(order: info.id)
        }
        return state.info.status
    }

    /// The order as it stands.
    public distributed func info() -> OrderInfo { state.info }
}

/// Sales of one SKU, counted from the orders' "completed" events (choreography): the inbox in its own
/// state makes a redelivered event count once.
public distributed actor SalesActor: PersistentVirtualActor {
    public typealias ActorSystem = ClusterActorSystem

    /// A SKU's sales counted from the "completed" events, with the ids of the events applied.
    public struct State: Codable, Sendable, InboxCarrying {
        /// Units sold.
        public var sold = 0
        /// Orders completed.
        public var orders = 0
        /// Revenue in cents.
        public var revenue = 0
        /// The events reach a SKU's actor through one orderly queue (sharding key = SKU): each message is
        /// acknowledged before the next one is delivered, so a redelivery (after a crash between applying and
        /// acknowledging) can only repeat the latest event; and an order's outbox does not relay again an event
        /// that is already on the bus (`relayOutbox()` looks first), so a second copy can only come from
        /// two activations relaying at once, moments apart. 256 is a wide margin; the whole inbox is rewritten
        /// with every event, so it is kept small.
        public var processed = ProcessedMessages(capacity: 256)
    }

    public var persisted = Persisted(State())

    /// An activation on `actorSystem` (the runtime makes them).
    public init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }

    /// Applies one "completed" event (once, whatever the redeliveries). Returns false for a duplicate.
    @discardableResult
    public distributed func record(_ message: BusMessage) async throws -> Bool {
        let body = try message.decode(OrderEventBody.self)
        return try await applyOnce(message) { state in
            state.sold += body.quantity
            state.orders += 1
            state.revenue += body.amount
        }
    }

    public distributed func snapshot() -> State { state }
}
