import TroupeCore

/// State that modules above the actor runtime keep per actor system — the saga definitions, the outbox's
/// publisher and its relays — as Akka's extensions do: one instance of each type per system, made on first
/// use, living as long as the system. Two systems in one process (a test cluster, a simulation) never share
/// it, and nothing of it outlives its system.
public final class ActorSystemExtensions: Sendable {
    private let instances = Guarded<[ObjectIdentifier: any Sendable]>([:])

    init() {}

    /// The system's instance of `type`, made by `make` the first time it is asked for.
    public func instance<Extension: AnyObject & Sendable>(_ type: Extension.Type, orMake make: () -> Extension) -> Extension {
        instances.withLock { instances in
            if let existing = instances[ObjectIdentifier(type)] as? Extension { return existing }
            let made = make()
            instances[ObjectIdentifier(type)] = made
            return made
        }
    }
}
