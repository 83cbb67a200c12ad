import Logging
public import NIOCore
import NIOPosix
import Synchronization
public import TroupeRESP
import TroupeCore
import TroupeTLS

/// One connection to a Redis server, usable from any task; many commands can be in flight.
///
/// Commands from any thread are encoded straight into an outbox; the first of a batch schedules one
/// event-loop task that hands the whole batch to the channel (one write, one flush), so concurrent
/// callers pipeline automatically.
public final class RedisConnection: Sendable {
    let channel: any Channel
    let configuration: RedisConfiguration
    /// The protocol the server agreed to (3 after `HELLO 3`, 2 on older servers).
    public let protocolVersion: Int
    private let outbox: Guarded<Outbox>
    private let pushHandler: PushRouter

    private struct Outbox {
        var bytes: ByteBuffer
        var pending: [RedisConnectionStateMachine<RedisPromise>.Pending] = []
        var drainScheduled = false
    }

    private init(channel: any Channel, configuration: RedisConfiguration, protocolVersion: Int, pushHandler: PushRouter) {
        self.channel = channel
        self.configuration = configuration
        self.protocolVersion = protocolVersion
        self.pushHandler = pushHandler
        self.outbox = Guarded(Outbox(bytes: channel.allocator.buffer(capacity: 1024)))
    }

    /// Connects, negotiates RESP3 (`HELLO 3` with `AUTH` and `SETNAME`; RESP2 `AUTH` when `HELLO` is
    /// unknown), selects the database, and returns the ready connection.
    /// - Throws: ``RedisError/Code/connectFailed`` with the reason (refused, timeout, authentication).
    /// - Parameter configuration: the server and how to connect to it.
    /// - Parameter eventLoop: the loop the connection lives on (by default one of the configuration's group).
    /// - Parameter onPush: called with every push the server sends outside a reply (RESP3 out-of-band data).
    public static func connect(
        _ configuration: RedisConfiguration,
        on eventLoop: (any EventLoop)? = nil,
        onPush: @escaping @Sendable (RESPValue) -> Void = { _ in }
    ) async throws -> RedisConnection {
        let router = PushRouter(onPush)
        let limits = configuration.limits
        let tls = configuration.tls
        let logger = configuration.logger
        let host = configuration.host
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop ?? configuration.eventLoopGroup.next())
                .connectTimeout(.nanoseconds(Int64(configuration.connectTimeout.components.seconds) * 1_000_000_000
                    + configuration.connectTimeout.components.attoseconds / 1_000_000_000))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try tls?.addHandlers(to: channel, host: host, link: "redis", logger: logger)
                        try channel.pipeline.syncOperations.addHandler(
                            RedisChannelHandler(limits: limits, deadlineCheckInterval: .milliseconds(25)) { router.deliver($0) }
                        )
                    }
                }
                .connect(host: configuration.host, port: configuration.port)
                .get()
        } catch {
            throw RedisError(.connectFailed, "cannot connect to \(configuration.host):\(configuration.port)", underlying: error)
        }
        let probe = RedisConnection(channel: channel, configuration: configuration, protocolVersion: 3, pushHandler: router)
        do {
            let version = try await probe.handshake()
            configuration.logger.debug("redis connection ready", metadata: [
                "redis.server.address": "\(configuration.host):\(configuration.port)", "redis.protocol": "\(version)",
            ])
            if version == 3 { return probe }
            return RedisConnection(channel: channel, configuration: configuration, protocolVersion: version, pushHandler: router)
        } catch {
            channel.close(promise: nil)
            if let error = error as? RedisError, error.code == .connectFailed { throw error }
            throw RedisError(.connectFailed, "the handshake with \(configuration.host):\(configuration.port) failed", underlying: error)
        }
    }

    private func handshake() async throws -> Int {
        var hello: [any RESPArgument] = ["HELLO", "3"]
        if let password = configuration.password {
            hello += ["AUTH", configuration.username ?? "default", password]
        }
        if let name = configuration.clientName { hello += ["SETNAME", name] }
        let reply = try await sendRaw(hello)
        var version = 3
        if reply.isError {
            let message = reply.string ?? ""
            if message.hasPrefix("WRONGPASS") || message.hasPrefix("NOAUTH") || message.hasPrefix("NOPERM") {
                throw RedisError(.connectFailed, "authentication failed", serverMessage: message)
            }
            // A server without RESP3 (Redis < 6): authenticate the RESP2 way.
            version = 2
            if let password = configuration.password {
                let auth: [any RESPArgument] = configuration.username.map { ["AUTH", $0, password] } ?? ["AUTH", password]
                let authReply = try await sendRaw(auth)
                if authReply.isError { throw RedisError(.connectFailed, "authentication failed", serverMessage: authReply.string) }
            }
            if let name = configuration.clientName { _ = try await send(["CLIENT", "SETNAME", name]) }
        }
        if configuration.database != 0 {
            let select = try await sendRaw(["SELECT", configuration.database])
            if select.isError { throw RedisError(.connectFailed, "SELECT \(configuration.database) failed", serverMessage: select.string) }
        }
        return version
    }

    /// Whether the connection can still carry commands.
    public var isActive: Bool { channel.isActive }

    /// Sends one command; an error reply throws ``RedisError/Code/server``.
    @discardableResult
    public func send(_ arguments: [any RESPArgument], timeout: Duration? = nil) async throws -> RESPValue {
        let reply = try await sendRaw(arguments, timeout: timeout)
        if reply.isError { throw RedisError.server(reply, command: Self.commandName(arguments)) }
        return reply
    }

    /// Sends one command and returns its reply as is, error replies included.
    public func sendRaw(_ arguments: [any RESPArgument], timeout: Duration? = nil) async throws -> RESPValue {
        let deadline = ContinuousClock.now + (timeout ?? configuration.commandTimeout)
        return try await withUnsafeThrowingContinuation { continuation in
            enqueue([arguments], pending: [.reply(.continuation(continuation), deadline: deadline)])
        }
    }

    /// Sends `commands` back to back (contiguous on the wire, so a `MULTI` … `EXEC` block is never
    /// interleaved with other callers' commands) and returns every reply, error replies included.
    public func pipeline(_ commands: [[any RESPArgument]], timeout: Duration? = nil) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        let deadline = ContinuousClock.now + (timeout ?? configuration.commandTimeout)
        let collected = ReplyCollector(capacity: commands.count)
        let replies = try await withUnsafeThrowingContinuation { continuation in
            enqueue(commands, pending: [.batch(count: commands.count, collected: collected, .continuation(continuation), deadline: deadline)])
        }
        guard case .array(let values) = replies, values.count == commands.count else {
            throw RedisError(.protocolViolation, "a pipeline of \(commands.count) commands got a different number of replies")
        }
        return values
    }

    /// Sends a (p/s)subscribe command and waits for its `count` push confirmations.
    func subscribe(_ arguments: [any RESPArgument], kind: String, count: Int) async throws -> RESPValue {
        let deadline = ContinuousClock.now + configuration.commandTimeout
        return try await withUnsafeThrowingContinuation { continuation in
            enqueue([arguments], pending: [.confirmations(kind: kind, remaining: count, .continuation(continuation), deadline: deadline)])
        }
    }

    /// Closes the connection; requests in flight fail with ``RedisError/Code/connectionClosed``.
    public func close() async {
        try? await channel.close()
    }

    private func enqueue(_ commands: [[any RESPArgument]], pending: [RedisConnectionStateMachine<RedisPromise>.Pending]) {
        let scheduleDrain = outbox.withLock { outbox -> Bool in
            for command in commands { RESPCommandEncoder.encode(command, into: &outbox.bytes) }
            outbox.pending.append(contentsOf: pending)
            guard !outbox.drainScheduled else { return false }
            outbox.drainScheduled = true
            return true
        }
        guard scheduleDrain else { return }
        channel.eventLoop.execute { [self] in
            let batch = outbox.withLock { outbox -> RedisBatch in
                outbox.drainScheduled = false
                let batch = RedisBatch(bytes: outbox.bytes, pending: outbox.pending)
                outbox.bytes = channel.allocator.buffer(capacity: max(1024, batch.bytes.readableBytes))
                outbox.pending.removeAll(keepingCapacity: true)
                return batch
            }
            channel.writeAndFlush(batch).whenFailure { error in
                // Never written (the channel closed first): the handler did not see these requests.
                let reason = RedisError(.connectionClosed, "the connection closed before the command was sent", underlying: error)
                if !(error is RedisError) { for pending in batch.pending { pending.promise.fail(reason) } }
            }
        }
    }

    static func commandName(_ arguments: [any RESPArgument]) -> String {
        (arguments.first as? String) ?? "command"
    }
}

/// Routes RESP3 push frames of a connection to whoever listens (pub/sub subscriptions).
final class PushRouter: Sendable {
    private let handler: Guarded<@Sendable (RESPValue) -> Void>

    init(_ handler: @escaping @Sendable (RESPValue) -> Void) {
        self.handler = Guarded(handler)
    }

    func deliver(_ value: RESPValue) {
        let handler = self.handler.withLock { $0 }
        handler(value)
    }
}
