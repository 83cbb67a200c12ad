import HTTPTypes
import NIOCore
import NIOHTTP1

/// The client's deadlines on a connection served by NIO's HTTP/1 codec (placed right after the decoder):
/// with no request in progress the connection is closed after `GatewayConfiguration.idleTimeout` (which also
/// bounds a request head that never completes: the codec reports nothing before a whole head); a request
/// whose head has arrived must arrive whole within `requestReadTimeout`, or it is answered 408 and the
/// connection closed. While a request is being answered the route's own deadline applies, not these.
///
/// On connections that start on the byte-level path (`RawProxyHandler`, which keeps the same deadlines
/// itself) it waits, dormant, for the ``Begin`` event sent when the connection is handed over.
final class ClientDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Sent down the pipeline by `RawProxyHandler` when it hands the connection to the codec path.
    struct Begin {}

    private let configuration: GatewayConfiguration
    private var armed: Bool
    /// Between a request's head and its end.
    private var receiving = false
    /// Requests whose response has not ended yet (pipelining may queue several).
    private var outstanding = 0
    private var wait: Wait?
    private var deadline = ExchangeDeadline()

    private enum Wait { case idle, reading }

    init(configuration: GatewayConfiguration, armed: Bool) {
        self.configuration = configuration
        self.armed = armed
    }

    /// The 408 answered when a request does not arrive whole in time.
    static func timedOut(_ configuration: GatewayConfiguration) -> GatewayError {
        GatewayError(.requestTimeout, "request timeout",
                     detail: "the request did not arrive whole within \(configuration.requestReadTimeout.components.seconds) s")
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { update(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        update(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        armed = false
        deadline.cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline.cancel()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is Begin else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        armed = true
        update(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            receiving = true
            outstanding += 1
            update(context: context)
        case .body:
            break
        case .end:
            receiving = false
            update(context: context)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            outstanding = max(0, outstanding - 1)
            context.write(data, promise: promise)
            update(context: context)
            return
        }
        context.write(data, promise: promise)
    }

    /// Starts the wait the connection is in; a wait already running keeps its deadline.
    private func update(context: ChannelHandlerContext) {
        guard armed, context.channel.isActive else { return }
        let next: Wait? = receiving ? .reading : (outstanding > 0 ? nil : .idle)
        guard next != wait else { return }
        wait = next
        guard let next else {
            deadline.finish()
            return
        }
        let timeout = next == .idle ? configuration.idleTimeout : configuration.requestReadTimeout
        deadline.start(UpstreamHTTPClient.timeAmount(timeout), context: context) { [self] in fired(context: context) }
    }

    private func fired(context: ChannelHandlerContext) {
        guard armed, deadline.fired(context: context, rearm: { [self] in fired(context: context) }) != nil, let expired = wait else { return }
        armed = false
        wait = nil
        // A 408 only when it is the answer due next; behind a pipelined response still in progress, just close.
        if expired == .reading, outstanding == 1 {
            let (fields, body) = Self.timedOut(configuration).problem(instance: nil)
            var headers = HTTPHeaders()
            for field in fields { headers.add(name: field.name.rawName, value: field.value) }
            headers.add(name: "content-length", value: String(body.readableBytes))
            headers.add(name: "connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .requestTimeout, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.close(promise: nil)
    }
}
