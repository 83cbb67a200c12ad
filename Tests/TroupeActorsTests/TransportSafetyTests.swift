import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TroupeActors
import TroupeTestSupport
import TroupeCore

/// Collects what a raw TCP client receives until the server closes the connection.
final class RawClientHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let received = Guarded<[UInt8]>([])

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        received.withLock { $0 += bytes }
    }
}

/// Connects to `system`, writes `bytes`, and reports whether the node closed the connection within `timeout`.
func nodeClosesConnection(_ system: ClusterActorSystem, after bytes: [UInt8], timeout: Duration = .seconds(3)) async throws -> Bool {
    let handler = RawClientHandler()
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) } }
        .connect(host: system.node.host, port: system.node.port)
        .get()
    try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    let deadline = ContinuousClock.now + timeout
    while channel.isActive {
        guard ContinuousClock.now < deadline else {
            try await channel.close()
            return false
        }
        try await Task.sleep(for: .milliseconds(5))
    }
    return true
}

@Suite("Transport safety")
struct TransportSafetyTests {
    @Test("a peer with the wrong secret is refused; the node keeps serving others")
    func wrongSecret() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            let intruder = try await LocalCluster(secret: Array("a-different-secret-of-32-bytes!!".utf8))
                .start(node: "intruder", membership: InMemoryMembership(members: systems.map(\.member)), stateStore: InMemoryActorStateStore()) { _ in }
            defer { intruder.shutdown() }
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await intruder.run() }
                let counter = try await intruder.actor(Counter.self, key: key(ownedBy: systems[1]))
                do {
                    _ = try await counter.increment(by: 1)
                    Issue.record("the intruder's call went through")
                } catch let error as ActorSystemError {
                    #expect(error.code == .handshakeFailed, "\(error)")
                }
                intruder.shutdown()
            }
            let legit = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            #expect(try await legit.increment(by: 1) == 1)
        }
    }

    @Test("a peer of another cluster is refused")
    func wrongCluster() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            let stranger = try await LocalCluster(clusterName: "other")
                .start(node: "stranger", membership: InMemoryMembership(members: systems.map(\.member)), stateStore: InMemoryActorStateStore()) { _ in }
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await stranger.run() }
                let counter = try await stranger.actor(Counter.self, key: key(ownedBy: systems[1]))
                do {
                    _ = try await counter.increment(by: 1)
                    Issue.record("the stranger's call went through")
                } catch let error as ActorSystemError {
                    #expect(error.code == .handshakeFailed, "\(error)")
                    #expect(error.message.contains("cluster"), "\(error.message)")
                }
                stranger.shutdown()
            }
        }
    }

    @Test("random bytes close that connection only; the node still serves other calls", arguments: 0..<5)
    func garbage(seed: Int) async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            var generator = SeededGenerator(seed: UInt64(seed))
            let garbage = generator.bytes(512)
            #expect(try await nodeClosesConnection(systems[1], after: garbage))
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            #expect(try await counter.increment(by: 1) == 1)
        }
    }

    @Test("an oversized frame closes the connection before the body is read")
    func oversizedFrame() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            // A length prefix of ~4 GB followed by a few bytes: refused at the prefix.
            #expect(try await nodeClosesConnection(systems[1], after: [0xFF, 0xFF, 0xFF, 0xF0, 1, 2, 3]))
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            #expect(try await counter.increment(by: 2) == 2)
        }
    }

    @Test("before the handshake a frame larger than a handshake message (1 KiB) closes the connection at its length prefix")
    func largeFrameBeforeHandshake() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            // 64 KiB declared (well under the 4 MiB limit for authenticated peers), 1 KiB sent: refused at the prefix,
            // so the node never holds the rest for the handshake window.
            let frame = [UInt8(0), 1, 0, 0] + [UInt8](repeating: 7, count: 1024)
            #expect(try await nodeClosesConnection(systems[1], after: frame, timeout: .milliseconds(500)))
            // Authenticated peers still exchange large frames.
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            let text = String(repeating: "x", count: 200_000)
            #expect(try await counter.echo(text, [], nil).hasPrefix(text))
        }
    }

    @Test("unauthenticated connections are capped per remote address; more are closed at once, and the count returns to zero")
    func unauthenticatedCap() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            let target = systems[1]
            let cap = target.configuration.maxUnauthenticatedPerAddress
            var idle: [any Channel] = []
            for _ in 0..<cap {
                idle.append(try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(host: target.node.host, port: target.node.port).get())
            }
            try await eventually("the node counts the idle connections") { target.unauthenticatedConnections == cap }
            // One more from the same address: closed at once, without waiting for the handshake timeout.
            let extra = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: target.node.host, port: target.node.port).get()
            try await withDeadline(.milliseconds(500)) { try await extra.closeFuture.get() }
            #expect(target.unauthenticatedConnections == cap)
            // A peer that authenticates is not held up for long: its connection stops counting once established.
            for channel in idle { try? await channel.close() }
            try await eventually("closed connections stop counting") { target.unauthenticatedConnections == 0 }
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: target))
            #expect(try await counter.increment(by: 1) == 1)
            #expect(target.unauthenticatedConnections == 0, "the authenticated connection does not count")
        }
    }

    @Test("a well-framed call before authentication closes the connection")
    func callBeforeHandshake() async throws {
        try await LocalCluster().run(nodes: 1, register: registerTestActors) { systems async throws in
            // kind 5 (call) as the first frame instead of hello.
            let body: [UInt8] = [5] + [UInt8](repeating: 0, count: 30)
            let frame = [UInt8(0), 0, 0, UInt8(body.count)] + body
            #expect(try await nodeClosesConnection(systems[0], after: frame))
            #expect(try await systems[0].actor(Counter.self, key: "still-up").increment(by: 1) == 1)
        }
    }
}
