import NIOCore
import NIOPosix
import TroupeCore

/// The floor for remote calls: a 64-byte request echoed by a NIO server over loopback TCP,
/// awaited from Swift concurrency exactly as an actor call awaits its reply.
struct TCPEchoBenchmark {
    let roundTrips: Int
    static let messageSize = 64

    func run() async throws -> (p50: Double, p99: Double) {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let responses = ResponseHandler()
        let client = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(responses) }
            }
            .connect(host: "127.0.0.1", port: server.localAddress?.port ?? 0)
            .get()
        defer {
            client.close(promise: nil)
            server.close(promise: nil)
        }
        let message = ByteBuffer(repeating: 7, count: Self.messageSize)
        var latencies: [Double] = []
        latencies.reserveCapacity(roundTrips)
        for index in 0..<(roundTrips + 2_000) {
            let began = ContinuousClock.now
            let promise = client.eventLoop.makePromise(of: Void.self)
            responses.expect(promise)
            client.writeAndFlush(message, promise: nil)
            try await promise.futureResult.get()
            if index >= 2_000 { latencies.append((ContinuousClock.now - began).seconds * 1e6) }
        }
        latencies.sort()
        return (ActorsBenchmark.percentile(latencies, 0.5), ActorsBenchmark.percentile(latencies, 0.99))
    }
}

private final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// Completes the pending promise once a whole message came back.
private final class ResponseHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    private struct State {
        var pending: EventLoopPromise<Void>?
        var received = 0
    }

    private let state = Locked(State())

    func expect(_ promise: EventLoopPromise<Void>) {
        state.withLock { $0.pending = promise }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data).readableBytes
        let done = state.withLock { state -> EventLoopPromise<Void>? in
            state.received += bytes
            guard state.received >= TCPEchoBenchmark.messageSize else { return nil }
            state.received -= TCPEchoBenchmark.messageSize
            defer { state.pending = nil }
            return state.pending
        }
        done?.succeed()
    }
}
