import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Testing
import TroupeCache
import TroupeCore
@testable import TroupeGateway
import TroupeTestSupport

@Suite("Stopping a gateway server with connections accepted but not yet served", .serialized)
struct ServerStopTests {
    /// Connections accepted just before the serving task is cancelled sit in the buffer between NIO's accept
    /// and Hummingbird's serving loop; released unserved, their `NIOAsyncChannel` traps the process
    /// ("Deinited NIOAsyncWriter without calling finish()"). The server keeps them and closes them on stop.
    @Test("cancelling the server right after a burst of connections closes every one and the process lives")
    func cancelledWithBacklog() async throws {
        let logger = Logger(label: "gateway", factory: { _ in SwiftLogNoOpLogHandler() })
        let store = InMemoryKeyValueStore()
        for round in 0..<5 {
            let gateway = try await Gateway(
                configuration: GatewayConfiguration(signing: .hs256(secret: GatewayTests.secret), issuer: "troupe", audience: "shop"),
                services: GatewayServices(sessions: SessionStore(store: store), idempotency: IdempotencyStore(store: store), authenticate: { _, _ in nil }),
                routes: [])
            let port = try await ServerProcess.freePort()
            let server = gateway.application(port: port, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [server], logger: logger))
            let running = Task { try await group.run() }
            try await withDeadline(.seconds(10)) { while !(await ServerProcess.accepts(port: port)) { try await Task.sleep(for: .milliseconds(20)) } }
            var clients: [ClientConnection] = []
            for _ in 0..<64 { clients.append(try await ClientConnection(port: port)) }
            running.cancel()
            _ = await running.result
            #expect(server.accepted.count == 0, "round \(round): nothing kept after the stop")
            for (index, client) in clients.enumerated() {
                let took = try await client.closing(within: .seconds(5))
                #expect(took != nil, "round \(round): connection \(index) closed by the stopped server")
                client.channel.close(promise: nil)
            }
        }
    }
}
