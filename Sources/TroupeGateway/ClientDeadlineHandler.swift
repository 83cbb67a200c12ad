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
    private var client = ClientWaitDeadline()

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
        client.cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        client.cancel()
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
        client.enter(receiving ? .reading : (outstanding > 0 ? nil : .idle), configuration: configuration, context: context) { [self] in
            fired(context: context)
        }
    }

    private func fired(context: ChannelHandlerContext) {
        guard armed, let expired = client.fired(context: context, rearm: { [self] in fired(context: context) }) else { return }
        armed = false
        // A 408 only when it is the answer due next; behind a pipelined response still in progress, just close.
        if expired == .reading, outstanding == 1 {
            Self.timedOut(configuration).writeAsLastResponse(context: context)
        } else {
            context.close(promise: nil)
        }
    }
}

/// What a client connection waits for, and until when: the state both `RawProxyHandler` and
/// `ClientDeadlineHandler` keep, over one lazily re-armed timer (`ExchangeDeadline`).
struct ClientWaitDeadline {
    enum Wait {
        /// No request in progress: closed after `idleTimeout`.
        case idle
        /// Part of a request read: it must be whole within `requestReadTimeout` (408).
        case reading
    }

    private(set) var wait: Wait?
    private var deadline = ExchangeDeadline()

    /// Enters `next` (nil: no wait, a request is being answered). A wait already running keeps its deadline,
    /// so a request trickling in is still timed from its start.
    mutating func enter(_ next: Wait?, configuration: GatewayConfiguration, context: ChannelHandlerContext, fire: @escaping () -> Void) {
        guard next != wait else { return }
        guard let next else { return stop() }
        wait = next
        let timeout = next == .idle ? configuration.idleTimeout : configuration.requestReadTimeout
        deadline.start(UpstreamHTTPClient.timeAmount(timeout), context: context, fire: fire)
    }

    /// The timer went off: the wait that expired (and no wait from then on), or nil (re-armed with `rearm` when
    /// the current wait's deadline is still ahead).
    mutating func fired(context: ChannelHandlerContext, rearm: @escaping () -> Void) -> Wait? {
        guard deadline.fired(context: context, rearm: rearm) != nil, let expired = wait else { return nil }
        wait = nil
        return expired
    }

    /// A request is being answered: no wait (the timer stays armed for the next one).
    mutating func stop() {
        wait = nil
        deadline.finish()
    }

    /// No more waits on this connection.
    mutating func cancel() {
        wait = nil
        deadline.cancel()
    }
}
