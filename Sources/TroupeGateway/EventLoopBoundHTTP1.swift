import HTTPTypes
import Hummingbird
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOHTTPTypesHTTP1
public import ServiceLifecycle
import TroupeCore
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
    /// Holds each connection from its set-up until it is served, so one the server never serves is closed
    /// when it stops (see ``AcceptedConnections``); nil: not kept.
    let accepted: AcceptedConnections?

    /// Wraps Hummingbird's `inner` channel: `inFront` handlers go before the HTTP/1 decoder, `beforeConversion`
    /// handlers after it; `tls` serves HTTPS with the reloader's current certificates.
    public init(_ inner: HTTP1Channel, inFront: @escaping @Sendable () -> [any ChannelHandler] = { [] },
                beforeConversion: @escaping @Sendable () -> [any ChannelHandler] = { [] },
                tls: TLSContextReloader? = nil, logger: Logger = Logger(label: "troupe.gateway")) {
        self.init(inner, inFront: inFront, beforeConversion: beforeConversion, tls: tls, logger: logger, accepted: nil)
    }

    init(_ inner: HTTP1Channel, inFront: @escaping @Sendable () -> [any ChannelHandler], beforeConversion: @escaping @Sendable () -> [any ChannelHandler],
         tls: TLSContextReloader?, logger: Logger, accepted: AcceptedConnections?) {
        self.accepted = accepted
        self.inner = inner
        self.tls = tls
        self.logger = logger
        self.inFront = inFront
        self.beforeConversion = beforeConversion
    }

    /// Sets up a new connection's pipeline (TLS, the handlers in front, the HTTP/1 codec) on its event loop.
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger).flatMapThrowing { [accepted] value in
            accepted?.keep(value)
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

    /// Serves the connection's requests from a task that prefers the connection's event loop.
    public func handle(value: Value, logger: Logger) async {
        accepted?.served(value)
        await withTaskExecutorPreference(EventLoopTaskExecutor(value.channel.eventLoop)) {
            await inner.handle(value: value, logger: logger)
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with each connection served on its own event loop (`EventLoopBoundHTTP1Channel`). Connections
    /// accepted but not yet served when the server's task is cancelled are not kept here (see
    /// `AcceptedConnections`): serve through `Gateway.application(host:port:tls:logger:)` for that.
    public static func http1OnEventLoop(configuration: HTTP1Channel.Configuration = .init(), tls: TLSContextReloader? = nil) -> HTTPServerBuilder {
        .init { responder in EventLoopBoundHTTP1Channel(HTTP1Channel(responder: responder, configuration: configuration), tls: tls) }
    }

    /// The same, with `front` first in the pipeline and `handlers` placed before the conversion to Swift HTTP
    /// Types (see `EventLoopBoundHTTP1Channel`).
    static func http1OnEventLoop(inFront front: @escaping @Sendable () -> [any ChannelHandler] = { [] },
                                 beforeConversion handlers: @escaping @Sendable () -> [any ChannelHandler],
                                 tls: TLSContextReloader?, accepted: AcceptedConnections?) -> HTTPServerBuilder {
        .init { responder in
            EventLoopBoundHTTP1Channel(HTTP1Channel(responder: responder), inFront: front, beforeConversion: handlers, tls: tls,
                                       logger: Logger(label: "troupe.gateway"), accepted: accepted)
        }
    }
}

/// The connections a server has set up and not yet begun to serve.
///
/// Each accepted connection is wrapped in a `NIOAsyncChannel` whose writer must be finished (by
/// `executeThenClose`) before it is released, or the process traps. Hummingbird's server hands connections to
/// its serving loop through a buffered stream; when the serving task is cancelled (a service group stopping
/// on an error or after its graceful-shutdown timeout) the connections still in that buffer are released
/// unserved — a known window of NIO's asynchronous server bootstrap (swift-nio issue 2637). Kept here from
/// set-up until served, they survive that release, and ``closeRemaining()`` closes them once the server has
/// stopped: no connection is left open and none traps.
final class AcceptedConnections: Sendable {
    private struct State {
        var waiting: [ObjectIdentifier: HTTP1Channel.Value] = [:]
        /// Set by ``closeRemaining()``: the server has stopped serving.
        var stopped = false
    }

    private let state = Guarded(State())

    /// The connection's set-up made `value` (on its event loop). Should the rest of the set-up fail (only when
    /// the pipeline refuses a handler: a programming error), the connection stays kept until the server stops.
    /// A connection set up after the server stopped (its child channel's set-up runs on its own event loop and
    /// may trail the listener's close) is closed at once.
    func keep(_ value: HTTP1Channel.Value) {
        let late = state.withLock { state -> Bool in
            guard !state.stopped else { return true }
            state.waiting[ObjectIdentifier(value.channel)] = value
            return false
        }
        // Unowned on purpose: the server that would have served it is gone; the task only finishes the
        // connection's writer and closes it, and ends.
        if late { Task { try? await value.executeThenClose { _, _ in } } }
    }

    /// The server began serving `value`: its handling closes it.
    func served(_ value: HTTP1Channel.Value) {
        _ = state.withLock { $0.waiting.removeValue(forKey: ObjectIdentifier(value.channel)) }
    }

    /// How many are kept.
    var count: Int { state.withLock { $0.waiting.count } }

    /// Closes every connection not served. Called after the server's serving loop has ended, so no `served`
    /// can follow (each connection is either served by the loop or closed here, never both).
    func closeRemaining() async {
        let remaining = state.withLock { state in
            state.stopped = true
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }
        await withDiscardingTaskGroup { group in
            for value in remaining {
                group.addTask { try? await value.executeThenClose { _, _ in } }
            }
        }
    }
}

/// A gateway's HTTP server as a service: Hummingbird's application, and after it stops, the connections it
/// accepted but never served closed.
public struct GatewayServer: Service {
    let application: any Service
    let accepted: AcceptedConnections

    public func run() async throws {
        do {
            try await application.run()
        } catch {
            await accepted.closeRemaining()
            throw error
        }
        await accepted.closeRemaining()
    }
}
