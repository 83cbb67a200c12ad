public import Distributed
import Synchronization

/// A distributed actor addressed by a string key, activated on demand by the cluster.
///
/// Never create one yourself: ask the system for a reference with
/// ``ClusterActorSystem/actor(_:key:)`` from any node. The first call activates the actor on the
/// node that owns the key (rendezvous placement over the members hosting the type); an idle
/// activation is passivated after ``ClusterConfiguration/idleTimeout``.
///
/// ```swift
/// distributed actor Counter: VirtualActor {
///     typealias ActorSystem = ClusterActorSystem
///     var count = 0
///     init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }
///     distributed func increment() -> Int { count += 1; return count }
/// }
/// system.register(Counter.self)
/// let counter = try await system.actor(Counter.self, key: "page-views")
/// _ = try await counter.increment()
/// ```
///
/// **Turns and reentrancy.** Each activation is a Swift actor: one method runs at a time, but an
/// `await` inside a method lets other calls to the same activation run before it resumes (Swift
/// actors are reentrant). An actor that awaits another actor which calls back therefore does not
/// deadlock; it must not assume its state is unchanged across the `await`. State writes through
/// ``PersistentVirtualActor/update(_:)`` are serialised per activation, so they never race.
public protocol VirtualActor: DistributedActor where ActorSystem == ClusterActorSystem {
    /// The name placement and the wire use for this type; defaults to the Swift type name.
    /// Every node hosting or calling the type must agree on it.
    static var virtualTypeName: String { get }

    /// Actors whose types share a placement group are placed by their key alone: an actor of one type
    /// and an actor of another with the same key live on the same node (among the members hosting both),
    /// so calls between them never leave the process. Nil (the default): placed by type and key.
    /// Every node hosting or calling the type must agree on it (it is part of the type's code).
    static var placementGroup: String? { get }

    /// Creates an activation. The system supplies the key through ``key``.
    init(actorSystem: ClusterActorSystem)

    /// Runs once after the activation is created and (for persistent actors) its state loaded,
    /// before the first call is delivered.
    func didActivate() async throws

    /// Runs before an idle or moved activation is dropped.
    func willPassivate() async throws

    /// The system's activation sequence; ``PersistentVirtualActor`` loads its state here.
    func _activate() async throws

    /// The system's passivation sequence: ``willPassivate()``, then (``PersistentVirtualActor``) the
    /// changes deferred to the next write are stored, unless `storeDeferred` is false (the key moved).
    func _passivate(storeDeferred: Bool) async throws

    /// Whether no other activation of this key wrote since this one loaded or last wrote (runtime use: checked
    /// after membership changes; persistent actors compare versions, others are always current).
    func _isCurrent() async throws -> Bool
}

extension VirtualActor {
    /// The type's name in ids and placement: the Swift type's name unless the type says otherwise.
    public static var virtualTypeName: String { swiftTypeName(Self.self) }

    /// No placement group: the type is placed on its own.
    public static var placementGroup: String? { nil }

    /// The key this activation (or reference) was created for.
    public nonisolated var key: String { id.key }

    /// Nothing to do after activation unless the type says otherwise.
    public func didActivate() async throws {}

    /// Nothing to do before passivation unless the type says otherwise.
    public func willPassivate() async throws {}

    public func _activate() async throws {
        try await didActivate()
    }

    public func _passivate(storeDeferred: Bool) async throws {
        try await willPassivate()
    }

    public func _isCurrent() async throws -> Bool { true }
}

/// The names of Swift types already asked for: `String(describing:)` of a type demangles its name on every call,
/// and every reference and call to a virtual actor asks for it. A type's name never changes, so the memo is a
/// fact about the process, not state of a system.
private let swiftTypeNames = Mutex<[ObjectIdentifier: String]>([:])

/// `String(describing: type)`, remembered.
func swiftTypeName(_ type: Any.Type) -> String {
    let id = ObjectIdentifier(type)
    if let name = swiftTypeNames.withLock({ $0[id] }) { return name }
    let name = String(describing: type)
    swiftTypeNames.withLock { $0[id] = name }
    return name
}
