import Logging
import ServiceLifecycle
import TroupeActors

/// A Troupe node assembled from its configuration: the actor system and, in later layers, the
/// clients and building blocks it needs, run as one `ServiceGroup` in dependency order.
public struct TroupeNode: Sendable {
    public let system: ClusterActorSystem
    private let logger: Logger

    /// Starts the node's actor system and registers the virtual actor types it hosts.
    public static func start(
        _ configuration: NodeConfiguration,
        environment: [String: String],
        logger: Logger,
        stateStore: any ActorStateStore = InMemoryActorStateStore(),
        register: (ClusterActorSystem) -> Void
    ) async throws -> TroupeNode {
        let cluster = try configuration.clusterConfiguration(environment: environment, logger: logger)
        // The static list does not know incarnations; placement uses names, handshakes learn the rest.
        let system = try await ClusterActorSystem.start(cluster, membership: configuration.membership, stateStore: stateStore)
        register(system)
        return TroupeNode(system: system, logger: logger)
    }

    /// Runs until SIGTERM / SIGINT, then shuts down gracefully.
    public func run() async throws {
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: system)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
    }
}
