import NIOCore
import NIOPosix

/// A byte relay: each accepted connection gets its own upstream connection on the same event loop and
/// bytes are copied both ways unparsed — the ceiling of any proxy built on NIO's channel pipeline here.
enum NIORelay {
    static func start(upstreamPort: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> (port: Int, channel: any Channel) {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                let inboundHandler = NIOLoopBound(RelayHandler(), eventLoop: inbound.eventLoop)
                return inbound.pipeline.addHandler(inboundHandler.value).flatMap {
                    ClientBootstrap(group: inbound.eventLoop)
                        .channelOption(.socketOption(.tcp_nodelay), value: 1)
                        .channelInitializer { outbound in
                            let outboundHandler = RelayHandler()
                            outboundHandler.partner = inbound
                            inboundHandler.value.partner = outbound
                            return outbound.pipeline.addHandler(outboundHandler)
                        }
                        .connect(host: "127.0.0.1", port: upstreamPort)
                        .flatMap { _ in inbound.setOption(.autoRead, value: true) }
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return (server.localAddress?.port ?? 0, server)
    }
}

private final class RelayHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    var partner: (any Channel)?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.close(promise: nil)
        partner = nil
        context.fireChannelInactive()
    }
}
