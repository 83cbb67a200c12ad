import HTTPTypes
import NIOCore
import NIOHTTP1

/// Refuses requests HTTP/1.1 says a server must refuse, on connections served by NIO's HTTP/1 codec (placed
/// right after the decoder), as problem details in the API's words, then closes the connection:
/// - a request with two or more `Host` fields, or an HTTP/1.1 request with none (RFC 9112 §3.2) → 400;
/// - a request head over the decoder's limits (e.g. a 1 MB token) → 431; any other malformed request → 400.
///
/// Behind a pipelined response still being written, the refusal waits until that response has ended.
final class RequestHeadCheckHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Requests whose response has not ended.
    private var outstanding = 0
    private var refused = false
    private var pending: GatewayError?

    static func hostError(count: Int) -> GatewayError {
        GatewayError(.badRequest, "bad request", detail: count == 0 ? "an HTTP/1.1 request needs a Host field" : "a request may have only one Host field")
    }

    static func parseError(_ error: HTTPParserError) -> GatewayError {
        switch error {
        case .headerOverflow:
            GatewayError(HTTPResponse.Status(code: 431, reasonPhrase: "Request Header Fields Too Large"), "request headers too large",
                         detail: "the request's head is larger than this server accepts")
        default:
            GatewayError(.badRequest, "bad request", detail: "the request is not well-formed HTTP/1.1")
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        if case .head(let head) = unwrapInboundIn(data) {
            let hosts = head.headers["host"].count
            if hosts > 1 || (hosts == 0 && (head.version.major, head.version.minor) >= (1, 1)) {
                refuse(Self.hostError(count: hosts), context: context)
                return
            }
            outstanding += 1
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        refuse(Self.parseError(parserError), context: context)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        if case .end = unwrapOutboundIn(data) {
            outstanding = max(0, outstanding - 1)
            if outstanding == 0, let error = pending {
                pending = nil
                answer(error, context: context)
            }
        }
    }

    private func refuse(_ error: GatewayError, context: ChannelHandlerContext) {
        guard !refused else { return }
        refused = true
        if outstanding == 0 { answer(error, context: context) } else { pending = error }
    }

    private func answer(_ error: GatewayError, context: ChannelHandlerContext) {
        error.writeAsLastResponse(context: context)
    }
}

extension GatewayError {
    /// Writes this error as the last response of a connection on NIO's HTTP/1 codec (`connection: close`),
    /// then closes the connection.
    func writeAsLastResponse(context: ChannelHandlerContext) {
        let (fields, body) = problem(instance: nil)
        var headers = HTTPHeaders()
        for field in fields { headers.add(name: field.name.rawName, value: field.value) }
        headers.add(name: "content-length", value: String(body.readableBytes))
        headers.add(name: "connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status.code, reasonPhrase: status.reasonPhrase),
                                    headers: headers)
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension RequestHeadCheckHandler: Sendable {}
