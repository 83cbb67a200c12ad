import Distributed
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ServiceContextModule
import Testing
import TroupeActors
import TroupeBus
import TroupeCache
import TroupeCore
import TroupeGateway
import TroupeTestSupport

/// Reports the trace it sees and publishes an event in the same context.
distributed actor TraceRelay: VirtualActor {
    typealias ActorSystem = ClusterActorSystem
    static let bus = Locked<Bus?>(nil)

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    distributed func relay() async throws -> String? {
        if let bus = Self.bus.withLock({ $0 }) {
            _ = try await bus.producer(group: "trace").send(OutgoingMessage(topic: "traced", body: Array("event".utf8)))
        }
        return ServiceContext.current?.testTrace
    }
}

@Suite("Trace context through the gateway", .serialized)
struct TraceThroughGatewayTests {
    @Test("a request's trace reaches a remote actor and, through the bus, the consumer of the event it publishes")
    func gatewayActorBus() async throws {
        _ = bootstrapTestInstrument
        let bus = try Bus(engine: InMemoryBusEngine())
        TraceRelay.bus.withLock { $0 = bus }
        defer { TraceRelay.bus.withLock { $0 = nil } }
        let consumed = Locked<[String?]>([])
        let consumer = BusConsumer(bus: bus, group: "trace-test", topic: "traced", listener: .concurrent { _ in
            consumed.withLock { $0.append(ServiceContext.current?.testTrace) }
            return .success
        })
        try await bus.createTopic("traced", queues: 1)
        let consuming = Task { try await consumer.run() }
        defer { consuming.cancel() }
        try await LocalCluster().run(nodes: 2, register: { $0.register(TraceRelay.self) }) { systems in
            let remoteKey = systems[1].firstKeyOwned(type: "TraceRelay")
            let store = InMemoryKeyValueStore()
            let gateway = try await Gateway(
                configuration: GatewayConfiguration(signing: .hs256(secret: Array(repeating: 1, count: 32)), issuer: "t", audience: "t"),
                services: GatewayServices(sessions: SessionStore(store: store), idempotency: IdempotencyStore(store: store),
                                          authenticate: { _, _ in nil }),
                routes: [GatewayRoute(.get, "/relay", summary: "Relay the trace", requiresAuth: false) { _, _ in
                    let seen = try await systems[0].actor(TraceRelay.self, key: remoteKey).relay()
                    return Gateway.json(["trace": seen ?? "none"])
                }])
            let app = Application(router: gateway.router())
            try await app.test(.router) { client in
                try await client.execute(uri: "/relay", method: .get, headers: [HTTPField.Name("x-test-trace")!: "trace-gw-42"]) { response in
                    #expect(response.status == .ok)
                    #expect(String(buffer: response.body).contains("trace-gw-42"), "the remote actor saw the request's trace")
                }
                try await client.execute(uri: "/relay", method: .get) { response in
                    #expect(String(buffer: response.body).contains("none"), "no trace in, none out")
                }
            }
            let deadline = ContinuousClock.now + .seconds(10)
            while consumed.withLock({ $0.count }) < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            let traces = consumed.withLock { $0 }
            #expect(traces.count == 2)
            #expect(traces.contains("trace-gw-42"), "the bus consumer ran in the trace of the request that caused the event: \(traces)")
        }
    }
}
