import Logging
import ServiceLifecycle
import Synchronization
import TroupeCore

/// Registration and discovery of service instances; engines: ``EtcdServiceRegistry`` and
/// ``InMemoryServiceRegistry``.
public protocol ServiceRegistry: Sendable {
    func register(_ instance: ServiceInstance) async throws
    func deregister(_ instance: ServiceInstance) async throws
    /// Calls `onChange` with the full instance list of `service` now and after every change, until cancelled.
    func watchInstances(of service: String, onChange: @escaping @Sendable ([ServiceInstance]) async -> Void) async throws
}

extension EtcdServiceRegistry: ServiceRegistry {}

/// A ``ServiceRegistry`` in process memory (tests, `troupe demo`).
public final class InMemoryServiceRegistry: ServiceRegistry {
    private let publisher = Mutex<(instances: [String: [String: ServiceInstance]], subscribers: [String: [Int: AsyncStream<[ServiceInstance]>.Continuation]], next: Int)>(([:], [:], 0))
    private let delivery = Mutex(())

    public init() {}

    public func register(_ instance: ServiceInstance) async throws {
        update(instance.service) { $0[instance.id] = instance }
    }

    public func deregister(_ instance: ServiceInstance) async throws {
        update(instance.service) { $0[instance.id] = nil }
    }

    public func watchInstances(of service: String, onChange: @escaping @Sendable ([ServiceInstance]) async -> Void) async throws {
        let (stream, continuation) = AsyncStream.makeStream(of: [ServiceInstance].self, bufferingPolicy: .bufferingNewest(1))
        let id = delivery.withLock { _ in
            let (id, current) = publisher.withLock { state in
                let id = state.next
                state.next += 1
                state.subscribers[service, default: [:]][id] = continuation
                return (id, Self.sorted(state.instances[service] ?? [:]))
            }
            continuation.yield(current)
            return id
        }
        defer { publisher.withLock { _ = $0.subscribers[service]?.removeValue(forKey: id) } }
        for await instances in stream { await onChange(instances) }
    }

    private func update(_ service: String, _ body: (inout [String: ServiceInstance]) -> Void) {
        delivery.withLock { _ in
            let (instances, subscribers) = publisher.withLock { state in
                body(&state.instances[service, default: [:]])
                return (Self.sorted(state.instances[service] ?? [:]), Array((state.subscribers[service] ?? [:]).values))
            }
            for subscriber in subscribers { subscriber.yield(instances) }
        }
    }

    static func sorted(_ instances: [String: ServiceInstance]) -> [ServiceInstance] {
        instances.values.sorted { $0.id < $1.id }
    }
}

/// A local cache of the instances of some services, fed by the registry's watches: read it without
/// a round trip, or follow its changes as an `AsyncSequence`. Run it as a `Service`.
public final class ServiceDiscovery: Service, Sendable {
    public let registry: any ServiceRegistry
    public let services: [String]
    private let cache = Mutex<[String: [ServiceInstance]]>([:])
    private let publisher = Mutex<(subscribers: [Int: (String, AsyncStream<[ServiceInstance]>.Continuation)], next: Int)>(([:], 0))
    private let delivery = Mutex(())

    public init(registry: any ServiceRegistry, services: [String]) {
        self.registry = registry
        self.services = services
    }

    /// The cached instances of `service` (empty until the first watch result arrived).
    public func instances(of service: String) -> [ServiceInstance] {
        cache.withLock { $0[service] ?? [] }
    }

    /// The instance lists of `service`, starting with the cached one, after every change.
    public func changes(of service: String) -> AsyncStream<[ServiceInstance]> {
        let (stream, continuation) = AsyncStream.makeStream(of: [ServiceInstance].self, bufferingPolicy: .bufferingNewest(1))
        let id = delivery.withLock { _ in
            let id = publisher.withLock { state in
                let id = state.next
                state.next += 1
                state.subscribers[id] = (service, continuation)
                return id
            }
            continuation.yield(instances(of: service))
            return id
        }
        continuation.onTermination = { [weak self] _ in
            self?.publisher.withLock { _ = $0.subscribers.removeValue(forKey: id) }
        }
        return stream
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
        delivery.withLock { _ in
            cache.withLock { $0[service] = instances }
            let subscribers = publisher.withLock { state in state.subscribers.values.filter { $0.0 == service }.map(\.1) }
            for subscriber in subscribers { subscriber.yield(instances) }
        }
    }
}
