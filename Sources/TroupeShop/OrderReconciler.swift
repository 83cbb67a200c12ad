import Foundation
public import Logging
public import ServiceLifecycle
public import TroupeActors
import TroupeCore

/// The safety net behind each order's payment-timeout reminder (a durable delayed message on the bus, which
/// reconciles the order it names): every `interval` it reads the stored orders, stock and accounts and drives
/// to its final state every order that is not final `age` after its creation, and every final order that
/// still holds stock or money `age` after it finished — through ``OrderActor/expire()``, which decides from
/// the order and its saga and is idempotent. It catches what a reminder could miss: a bus that lost its
/// delayed messages (a Redis without persistence, a failover), an order written before its reminder was.
///
/// Every node runs one; each acts only on the orders it owns (placement), so one node reconciles each order.
/// A pass reads whole collections: the interval is minutes, not seconds. Needs a store that can list
/// (``ScannableActorStateStore``: MongoDB, in-memory).
public struct OrderReconciler: Service {
    /// How often the reconciler looks, and how long an order may stay unfinished before it acts.
    public struct Settings: Sendable {
        /// Between passes (the first one comes one interval after start).
        public var interval: Duration = .seconds(300)
        /// How long an order may stay unfinished, or a final order hold stock or money, before a pass acts.
        public var age: Duration = .seconds(1_800)
        /// Settings of a pass every `interval` acting on orders older than `age` (5 min and 30 min by default).
        public init(interval: Duration = .seconds(300), age: Duration = .seconds(1_800)) {
            self.interval = interval
            self.age = age
        }
    }

    /// What one pass found and did.
    public struct Pass: Sendable, Equatable {
        /// Orders read in the pass.
        public var ordersScanned = 0
        /// Orders this node drove to a final state (or released what they held), by id.
        public var reconciled: [String] = []
        /// Orders whose reconciliation failed or must wait (their saga still runs): the next pass retries.
        public var deferred: [String] = []
    }

    let system: ClusterActorSystem
    let store: any ScannableActorStateStore
    let settings: Settings
    let logger: Logger
    /// Milliseconds since 1970 (orders record their times on that scale).
    let now: @Sendable () -> Int64

    /// A reconciler for the orders of `system`, read from `store`.
    public init(system: ClusterActorSystem, store: any ScannableActorStateStore, settings: Settings = Settings(), logger: Logger,
                now: (@Sendable () -> Int64)? = nil) {
        self.system = system
        self.store = store
        self.settings = settings
        self.logger = logger
        self.now = now ?? { OrderActor.now() }  // the clock orders record their times with
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var failures = LogThrottle()
            while !Task.isCancelled {
                do {
                    try await Task.sleep(for: settings.interval)
                } catch {
                    return
                }
                do {
                    let pass = try await reconcileOnce()
                    if !pass.reconciled.isEmpty || !pass.deferred.isEmpty {
                        logger.warning("orders reconciled", metadata: [
                            "shop.orders.reconciled": "\(pass.reconciled.count)", "shop.orders.deferred": "\(pass.deferred.count)",
                            "shop.orders.sample": "\(pass.reconciled.prefix(5))",
                        ])
                    }
                    failures.reset()
                } catch {
                    if let held = failures.admit(now: .now) {
                        logger.warning("order reconciliation pass failed", metadata: ["error": "\(String(reflecting: error))", "log.suppressed": "\(held)"])
                    }
                }
            }
        }
    }

    /// One pass over the stored orders, stock and accounts.
    public func reconcileOnce() async throws -> Pass {
        let cutoff = now() - Int64(settings.age.seconds * 1000)
        var orders: [String: OrderInfo] = [:]
        // A state that cannot be decoded is skipped (the reconciler acts on what it can read; the actor itself reports it).
        for (key, stored) in try await store.states(ofType: OrderActor.virtualTypeName) {
            guard let state = try? store.codec.decode(OrderActor.State.self, from: stored) else { continue }
            orders[key] = state.info
        }
        var pass = Pass()
        pass.ordersScanned = orders.count
        /// Whether the order named by a reservation or hold has had `age` to settle it.
        func overdue(_ id: String) -> Bool {
            guard let info = orders[id] else { return false }  // no such order: nothing to reconcile through
            switch info.status {
            case .completed, .cancelled: return (info.finishedAt ?? info.createdAt ?? 0) < cutoff
            default: return (info.createdAt ?? 0) < cutoff
            }
        }
        var targets = Set(orders.filter { $0.value.status != .completed && $0.value.status != .cancelled && overdue($0.key) }.keys)
        for (_, stored) in try await store.states(ofType: InventoryActor.virtualTypeName) {
            guard let stock = try? store.codec.decode(InventoryActor.State.self, from: stored) else { continue }
            targets.formUnion(stock.reserved.keys.filter(overdue))
        }
        for (_, stored) in try await store.states(ofType: AccountActor.virtualTypeName) {
            guard let account = try? store.codec.decode(AccountActor.State.self, from: stored) else { continue }
            targets.formUnion(account.holds.keys.filter(overdue))
        }
        for id in targets.sorted() {
            guard system.owner(of: .virtual(type: OrderActor.virtualTypeName, key: id))?.node.name == system.node.name else { continue }
            do {
                _ = try await system.reference(OrderActor.self, key: id).expire()
                pass.reconciled.append(id)
            } catch {
                pass.deferred.append(id)
                logger.info("order reconciliation deferred", metadata: ["shop.order": "\(id)", "error": "\(String(reflecting: error))"])
            }
        }
        return pass
    }
}
