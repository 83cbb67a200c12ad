import NIOCore
import TroupeBSON

/// One request on its way to the server: the encoded message, and where its reply goes
/// (no promise for `moreToCome` messages, which get no reply).
struct MongoRequest {
    var bytes: ByteBuffer
    var requestID: Int32
    var promise: EventLoopPromise<MongoMessage>?
    var deadline: NIODeadline
}

/// Matches replies to requests by `responseTo`; fails what is pending when the connection ends,
/// and each request at its own deadline. Event-loop confined.
final class MongoChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = MongoMessage
    typealias OutboundIn = MongoRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<MongoMessage>
        var timeout: Scheduled<Void>
    }

    private var pending: [Int32: Pending] = [:]
    private var closedError: MongoError?
    private let address: String

    init(address: String) {
        self.address = address
    }

    var inFlight: Int { pending.count }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let closedError {
            request.promise?.fail(closedError)
            promise?.fail(closedError)
            return
        }
        if let replyPromise = request.promise {
            let requestID = request.requestID
            let loop = context.eventLoop
            let timeout = loop.assumeIsolated().scheduleTask(deadline: request.deadline) { [weak self] in
                guard let self, let entry = self.pending.removeValue(forKey: requestID) else { return }
                entry.promise.fail(MongoError(.timeout, "no reply from \(self.address) before the deadline"))
            }
            pending[requestID] = Pending(promise: replyPromise, timeout: timeout)
        }
        context.write(wrapOutboundOut(request.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        // A reply after its deadline finds nothing pending and is dropped.
        guard let entry = pending.removeValue(forKey: message.responseTo) else { return }
        entry.timeout.cancel()
        entry.promise.succeed(message)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason = (error as? MongoError) ?? MongoError(.connectionClosed, "connection to \(address) failed", underlying: error)
        failAll(reason)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(MongoError(.connectionClosed, "connection to \(address) closed"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: MongoError) {
        if closedError == nil { closedError = error }
        let entries = pending
        pending.removeAll()
        for (_, entry) in entries {
            entry.timeout.cancel()
            entry.promise.fail(error)
        }
    }
}

@available(*, unavailable)
extension MongoChannelHandler: Sendable {}
