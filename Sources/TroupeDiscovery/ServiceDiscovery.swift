import Logging
public import ServiceLifecycle
import TroupeCore

/// Registration and discovery of service instances; engines: ``EtcdServiceRegistry`` and
/// ``InMemoryServiceRegistry``.
public protocol ServiceRegistry: Sendable {
    /// Makes `instance` discoverable (again, with its new address or metadata, if it was registered).
    func register(_ instance: ServiceInstance) async throws
    /// Removes `instance`; watchers see it gone.
    func deregister(_ instance: ServiceInstance) async throws
    /// Calls `onChange` with the full instance list of `service` now and after every change, until cancelled.
    func watchInstances(of service: String, onChange: @escaping @Sendable ([ServiceInstance]) async -> Void) async throws
}

extension EtcdServiceRegistry: ServiceRegistry {}

/// A ``ServiceRegistry`` in process memory (tests, `troupe demo`).
public final class InMemoryServiceRegistry: ServiceRegistry {
    private let instances = Broadcaster<[String: [String: ServiceInstance]]>([:])

    /// An empty registry.
    public init() {}

    public func register(_ instance: ServiceInstance) async throws {
        instances.update { $0[instance.service, default: [:]][instance.id] = instance }
    }

    public func deregister(_ instance: ServiceInstance) async throws {
        instances.update { $0[instance.service]?[instance.id] = nil }
    }

    public func watchInstances(of service: String, onChange: @escaping @Sendable ([ServiceInstance]) async -> Void) async throws {
        var last: [ServiceInstance]?
        for await all in instances.subscribe() {
            let current = (all[service] ?? [:]).values.sorted { $0.id < $1.id }
            guard current != last else { continue }
            last = current
            await onChange(current)
        }
    }
}

/// A local cache of the instances of some services, fed by the registry's watches: read it without
/// a round trip, or follow its changes as an `AsyncSequence`. Run it as a `Service`.
public final class ServiceDiscovery: Service, Sendable {
    /// The registry watched.
    public let registry: any ServiceRegistry
    /// The services followed.
    public let services: [String]
    private let cache = Broadcaster<[String: [ServiceInstance]]>([:])

    /// A cache of `services` fed by `registry` (run it to start the watches).
    public init(registry: any ServiceRegistry, services: [String]) {
        self.registry = registry
        self.services = services
    }

    /// The cached instances of `service` (empty until the first watch result arrived).
    public func instances(of service: String) -> [ServiceInstance] {
        cache.value[service] ?? []
    }

    /// The instance lists of `service`, starting with the cached one, after every change of any
    /// watched service (consecutive equal lists are possible).
    public func changes(of service: String) -> AsyncMapSequence<AsyncStream<[String: [ServiceInstance]]>, [ServiceInstance]> {
        cache.subscribe().map { $0[service] ?? [] }
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                for service in self.services {
                    group.addTask {
                        try await self.registry.watchInstances(of: service) { instances in self.store(service, instances) }
                    }
                }
            }
        }
    }

    private func store(_ service: String, _ instances: [ServiceInstance]) {
        cache.update { $0[service] = instances }
    }
}
