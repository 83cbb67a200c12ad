import NIOCore
import TroupeRESP

/// How a queued request is completed: a continuation for single awaits, a NIO promise for pipelines.
enum RedisPromise: Sendable {
    // Unsafe (not checked): the state machine completes every request exactly once — on its reply, on
    // its deadline or when the connection closes — and a checked continuation costs an allocation per call.
    case continuation(UnsafeContinuation<RESPValue, any Error>)
    case promise(EventLoopPromise<RESPValue>)

    func succeed(_ value: RESPValue) {
        switch self {
        case .continuation(let continuation): continuation.resume(returning: value)
        case .promise(let promise): promise.succeed(value)
        }
    }

    func fail(_ error: any Error) {
        switch self {
        case .continuation(let continuation): continuation.resume(throwing: error)
        case .promise(let promise): promise.fail(error)
        }
    }
}

/// Encoded commands and the requests waiting for their replies, written together.
struct RedisBatch: Sendable {
    var bytes: ByteBuffer
    var pending: [RedisConnectionStateMachine<RedisPromise>.Pending]
}

/// Drives ``RedisConnectionStateMachine``: each NIO callback becomes one machine call and one action.
///
/// Replies are decoded here, straight from the socket's bytes: a separate decoding handler would hand
/// every reply on as an `NIOAny` (a boxed existential and a dynamic cast per reply).
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisBatch
    typealias OutboundOut = ByteBuffer

    private var machine = RedisConnectionStateMachine<RedisPromise>()
    private let onPush: @Sendable (RESPValue) -> Void
    private let deadlineCheckInterval: TimeAmount
    private var deadlineTimer: Scheduled<Void>?
    private let limits: RESPLimits
    /// Bytes of a reply that has not arrived completely yet.
    private var partial: ByteBuffer?

    init(limits: RESPLimits, deadlineCheckInterval: TimeAmount, onPush: @escaping @Sendable (RESPValue) -> Void) {
        self.limits = limits
        self.deadlineCheckInterval = deadlineCheckInterval
        self.onPush = onPush
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleDeadlineCheck(context: context)
        context.fireChannelActive()
    }

    /// Checks the oldest request's deadline periodically, for as long as the channel is open.
    private func scheduleDeadlineCheck(context: ChannelHandlerContext) {
        deadlineTimer = context.eventLoop.assumeIsolated().scheduleTask(in: deadlineCheckInterval) { [self] in
            self.run(self.machine.checkDeadline(now: .now), context: context)
            if context.channel.isActive { self.scheduleDeadlineCheck(context: context) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadlineTimer?.cancel()
        partial = nil
        run(machine.closed(RedisError(.connectionClosed, "the connection to the server closed")), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let redisError: RedisError
        if let decoding = error as? RESPDecodeError {
            redisError = RedisError(.decoding, "the server sent invalid RESP", underlying: decoding)
        } else {
            redisError = RedisError(.connectionClosed, "the connection failed", underlying: error)
        }
        run(machine.closed(redisError), context: context)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if var earlier = partial.take() {
            earlier.writeBuffer(&bytes)
            bytes = earlier
        }
        do {
            while let value = try RESPDecoder.parse(&bytes, limits: limits) {
                run(machine.received(value), context: context)
            }
        } catch {
            errorCaught(context: context, error: error)
            return
        }
        if bytes.readableBytes > 0 { partial = bytes }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let batch = unwrapOutboundIn(data)
        switch machine.enqueue(batch.pending) {
        case .write:
            // The requests are now the machine's: it fails them if the connection breaks. The caller's
            // promise therefore only reports whether the batch reached this handler.
            context.write(wrapOutboundOut(batch.bytes), promise: nil)
            promise?.succeed()
        case .fail(let error):
            for pending in batch.pending { pending.promise.fail(error) }
            promise?.fail(error)
        }
    }

    private func run(_ action: RedisConnectionStateMachine<RedisPromise>.ReplyAction, context: ChannelHandlerContext) {
        switch action {
        case .succeed(let promise, let value):
            promise.succeed(value)
        case .deliverPush(let value):
            onPush(value)
        case .failAllAndClose(let promises, let error):
            for promise in promises { promise.fail(error) }
            context.close(promise: nil)
        case .none:
            break
        }
    }
}

@available(*, unavailable)
extension RedisChannelHandler: Sendable {}
