import HTTPTypes
import Hummingbird
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOHTTPTypesHTTP1
import TroupeNIO
public import TroupeTLS

/// Hummingbird's HTTP/1.1 child channel, with each connection's handling task preferring the connection's
/// own event loop as its executor.
///
/// Hummingbird serves a connection from a task on Swift's cooperative pool while the socket lives on an
/// event loop: every request then crosses threads to be read, and again to be written. Here the reads,
/// the route handler's synchronous parts and the writes stay on the connection's loop; work that awaits
/// other actors or executors hops as before. Upstream connections opened while handling a request are
/// opened on the same loop (see `UpstreamHTTPClient`), so a proxied request never leaves its thread.
public struct EventLoopBoundHTTP1Channel: ServerChildChannel {
    public typealias Value = HTTP1Channel.Value

    let inner: HTTP1Channel
    /// Handlers placed right after the HTTP/1 decoder, before the conversion to Swift HTTP Types: they see
    /// NIO's `HTTPServerRequestPart` / `HTTPServerResponsePart`.
    let beforeConversion: @Sendable () -> [any ChannelHandler]
    /// Handlers placed first in the pipeline, before the HTTP/1 decoder: they see the connection's bytes.
    let inFront: @Sendable () -> [any ChannelHandler]
    /// HTTPS: the current context of the reloader (so renewed certificates serve new connections).
    let tls: TLSContextReloader?
    let logger: Logger

    public init(_ inner: HTTP1Channel, inFront: @escaping @Sendable () -> [any ChannelHandler] = { [] },
                beforeConversion: @escaping @Sendable () -> [any ChannelHandler] = { [] },
                tls: TLSContextReloader? = nil, logger: Logger = Logger(label: "troupe.gateway")) {
        self.inner = inner
        self.tls = tls
        self.logger = logger
        self.inFront = inFront
        self.beforeConversion = beforeConversion
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let operations = channel.pipeline.syncOperations
            let handlers = beforeConversion()
            if !handlers.isEmpty {
                let codec = try operations.handler(type: HTTP1ToHTTPServerCodec.self)
                try operations.addHandlers(handlers, position: .before(codec))
            }
            let front = inFront()
            if !front.isEmpty { try operations.addHandlers(front, position: .first) }
            if let tls {
                try operations.addTLSServer(context: tls.context, revoked: tls.settings.revoked, link: "gateway", logger: logger)
            }
            return value
        }
    }

    public func handle(value: Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopTaskExecutor(value.channel.eventLoop)) {
            await inner.handle(value: value, logger: logger)
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with each connection served on its own event loop (`EventLoopBoundHTTP1Channel`).
    public static func http1OnEventLoop(configuration: HTTP1Channel.Configuration = .init(), tls: TLSContextReloader? = nil) -> HTTPServerBuilder {
        .init { responder in EventLoopBoundHTTP1Channel(HTTP1Channel(responder: responder, configuration: configuration), tls: tls) }
    }

    /// The same, with `front` first in the pipeline and `handlers` placed before the conversion to Swift HTTP
    /// Types (see `EventLoopBoundHTTP1Channel`).
    static func http1OnEventLoop(inFront front: @escaping @Sendable () -> [any ChannelHandler] = { [] },
                                 beforeConversion handlers: @escaping @Sendable () -> [any ChannelHandler],
                                 tls: TLSContextReloader?) -> HTTPServerBuilder {
        .init { responder in
            EventLoopBoundHTTP1Channel(HTTP1Channel(responder: responder), inFront: front, beforeConversion: handlers, tls: tls)
        }
    }
}
