public import NIOCore
import TroupeRESP

/// A message received on a subscription.
public struct RedisMessage: Sendable, Hashable {
    /// The channel the message was published to.
    public var channel: String
    /// The pattern that matched, for pattern subscriptions.
    public var pattern: String?
    /// The message's payload.
    public var payload: ByteBuffer
}

/// Messages of one subscription, on a connection of its own; ends when the connection closes.
/// Stop iterating (or cancel the task) to unsubscribe: the connection is closed.
public struct RedisSubscription: AsyncSequence, Sendable {
    public typealias Element = RedisMessage

    let stream: AsyncThrowingStream<RedisMessage, any Error>
    let connection: RedisConnection

    public func makeAsyncIterator() -> AsyncThrowingStream<RedisMessage, any Error>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// Ends the subscription.
    public func cancel() async {
        await connection.close()
    }
}

extension RedisClient {
    /// Whether a subscription is to channels or to patterns.
    public enum SubscriptionKind: Sendable {
        /// `SUBSCRIBE channel…`
        case channels
        /// `PSUBSCRIBE pattern…`
        case patterns
        /// `SSUBSCRIBE shard-channel…` (Redis 7, cluster-aware pub/sub)
        case shardChannels

        var command: String {
            switch self {
            case .channels: "SUBSCRIBE"
            case .patterns: "PSUBSCRIBE"
            case .shardChannels: "SSUBSCRIBE"
            }
        }
    }

    /// Subscribes on a dedicated connection and returns once the server confirmed every name.
    public func subscribe(_ kind: SubscriptionKind = .channels, to names: [String]) async throws -> RedisSubscription {
        precondition(!names.isEmpty, "subscribe needs at least one channel or pattern")
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: RedisMessage.self, bufferingPolicy: .bufferingNewest(10_000))
        let connection = try await RedisConnection.connect(configuration) { push in
            guard let items = push.array, let kind = items.first?.string?.lowercased() else { return }
            switch (kind, items.count) {
            case ("message", 3), ("smessage", 3):
                guard let channel = items[1].string, let payload = items[2].buffer else { return }
                continuation.yield(RedisMessage(channel: channel, pattern: nil, payload: payload))
            case ("pmessage", 4):
                guard let pattern = items[1].string, let channel = items[2].string, let payload = items[3].buffer else { return }
                continuation.yield(RedisMessage(channel: channel, pattern: pattern, payload: payload))
            default:
                break
            }
        }
        guard connection.protocolVersion == 3 else {
            await connection.close()
            throw RedisError(.unexpectedReply, "subscriptions need a RESP3 server (Redis 6 or later)")
        }
        connection.channel.closeFuture.whenComplete { _ in
            continuation.finish(throwing: RedisError(.connectionClosed, "the subscription's connection closed"))
        }
        continuation.onTermination = { _ in connection.channel.close(promise: nil) }
        let confirmation = try await connection.subscribe(
            [kind.command] + names, kind: kind.command.lowercased(), count: names.count
        )
        if confirmation.isError {
            await connection.close()
            throw RedisError.server(confirmation, command: kind.command)
        }
        return RedisSubscription(stream: stream, connection: connection)
    }
}
