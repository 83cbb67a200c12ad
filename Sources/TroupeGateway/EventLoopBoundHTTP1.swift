import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import TroupeNIO

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

    public init(_ inner: HTTP1Channel) {
        self.inner = inner
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger)
    }

    public func handle(value: Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopTaskExecutor(value.channel.eventLoop)) {
            await inner.handle(value: value, logger: logger)
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with each connection served on its own event loop (`EventLoopBoundHTTP1Channel`).
    public static func http1OnEventLoop(configuration: HTTP1Channel.Configuration = .init()) -> HTTPServerBuilder {
        .init { responder in EventLoopBoundHTTP1Channel(HTTP1Channel(responder: responder, configuration: configuration)) }
    }
}
