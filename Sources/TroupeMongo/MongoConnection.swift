import Logging
public import NIOCore
import NIOPosix
import Synchronization
public import TroupeBSON
import TroupeTLS

/// One connection to a MongoDB server: handshake (`hello` with client metadata), authentication,
/// and commands as OP_MSG. Many commands may be in flight; replies are matched by request id.
public final class MongoConnection: Sendable {
    let channel: any Channel
    /// The server it is connected to.
    public let address: MongoServerAddress
    /// The server's `hello` reply from the handshake.
    public let hello: BSONDocument
    let inFlightCount = Atomic<Int>(0)
    private let defaultTimeout: Duration

    private static let nextRequestID = Atomic<Int32>(1)

    private init(channel: any Channel, address: MongoServerAddress, hello: BSONDocument, defaultTimeout: Duration) {
        self.channel = channel
        self.address = address
        self.hello = hello
        self.defaultTimeout = defaultTimeout
    }

    /// Whether the connection is still open.
    public var isActive: Bool { channel.isActive }
    /// The newest wire protocol version the server speaks.
    public var maxWireVersion: Int { hello["maxWireVersion"]?.intValue ?? 0 }
    /// The largest message the server accepts (48 MB unless it says otherwise).
    public var maxMessageSize: Int { hello["maxMessageSizeBytes"]?.intValue ?? 48_000_000 }
    /// The largest document the server accepts (16 MiB unless it says otherwise).
    public var maxBSONObjectSize: Int { hello["maxBsonObjectSize"]?.intValue ?? 16 * 1024 * 1024 }
    /// The most writes in one write command (100,000 unless the server says otherwise).
    public var maxWriteBatchSize: Int { hello["maxWriteBatchSize"]?.intValue ?? 100_000 }

    /// Connects, runs the handshake and authenticates.
    public static func connect(
        to address: MongoServerAddress,
        settings: MongoClientSettings,
        group: any EventLoopGroup
    ) async throws(MongoError) -> MongoConnection {
        let channel: any Channel
        let limits = BSONLimits(maxDepth: settings.maxBSONDepth, maxDocumentSize: 48_000_000)
        let tls = settings.tls
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(TimeAmount.nanoseconds(settings.connectTimeout.nanosecondsClamped))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try tls?.addHandlers(to: channel, host: address.host, link: "mongo", logger: Logger(label: "troupe.mongo"))
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MongoMessageDecoder(limits: limits)))
                        try channel.pipeline.syncOperations.addHandler(MongoChannelHandler(address: address.description))
                    }
                }
                .connect(host: address.host, port: address.port)
                .get()
        } catch {
            throw MongoError(.connectFailed, "cannot connect to \(address)", underlying: error)
        }
        do {
            var helloCommand: BSONDocument = ["hello": 1, "helloOk": true]
            if settings.isFirstHandshakeOnConnection {
                helloCommand["client"] = .document(MongoClientSettings.clientMetadata(appName: settings.appName))
            }
            if let credential = settings.credential {
                helloCommand["saslSupportedMechs"] = .string("\(credential.source).\(credential.username)")
            }
            let probe = MongoConnection(channel: channel, address: address, hello: [:], defaultTimeout: settings.connectTimeout)
            let reply = try await probe.command(helloCommand, database: "admin", timeout: settings.connectTimeout)
            let connection = MongoConnection(channel: channel, address: address, hello: reply, defaultTimeout: settings.socketTimeout)
            if let credential = settings.credential {
                try await SCRAM.authenticate(connection, credential: credential, timeout: settings.connectTimeout)
            }
            return connection
        } catch {
            channel.close(promise: nil)
            if error.kind == .authenticationFailed || error.kind == .connectFailed { throw error }
            throw MongoError(.connectFailed, "handshake with \(address) failed: \(error.message)", code: error.code,
                             codeName: error.codeName, underlying: error)
        }
    }

    /// Runs a command on `database` and returns its reply; `ok: 0` throws ``MongoError`` with the server's code.
    public func command(
        _ body: BSONDocument,
        database: String,
        sequences: [(String, [BSONDocument])] = [],
        timeout: Duration? = nil
    ) async throws(MongoError) -> BSONDocument {
        let reply = try await rawCommand(body, database: database, sequences: sequences, timeout: timeout)
        try MongoConnection.check(reply)
        return reply
    }

    /// Runs a command and returns the reply as is, `ok: 0` included.
    public func rawCommand(
        _ body: BSONDocument,
        database: String,
        sequences: [(String, [BSONDocument])] = [],
        timeout: Duration? = nil
    ) async throws(MongoError) -> BSONDocument {
        var body = body
        body["$db"] = .string(database)
        let requestID = Self.nextRequestID.wrappingAdd(1, ordering: .relaxed).newValue
        let message = MongoMessage(requestID: requestID, body: body, sequences: sequences)
        var buffer = channel.allocator.buffer(capacity: 256)
        message.write(into: &buffer)
        guard buffer.readableBytes <= maxMessageSize || hello.isEmpty else {
            throw MongoError(.invalidUse, "command of \(buffer.readableBytes) bytes exceeds the server's maxMessageSizeBytes \(maxMessageSize)")
        }
        let promise = channel.eventLoop.makePromise(of: MongoMessage.self)
        let deadline = NIODeadline.now() + TimeAmount.nanoseconds((timeout ?? defaultTimeout).nanosecondsClamped)
        inFlightCount.add(1, ordering: .relaxed)
        defer { inFlightCount.subtract(1, ordering: .relaxed) }
        channel.writeAndFlush(MongoRequest(bytes: buffer, requestID: requestID, promise: promise, deadline: deadline), promise: nil)
        do {
            return try await promise.futureResult.get().body
        } catch let error as MongoError {
            throw error
        } catch {
            throw MongoError(.connectionClosed, "request to \(address) failed", underlying: error)
        }
    }

    /// Throws for `ok: 0`, turning the reply into a ``MongoError``.
    static func check(_ reply: BSONDocument) throws(MongoError) {
        let ok = reply["ok"]?.doubleValue ?? 0
        if ok == 1 { return }
        throw serverError(reply)
    }

    static func serverError(_ reply: BSONDocument) -> MongoError {
        let labels = reply["errorLabels"]?.arrayValue?.compactMap(\.stringValue) ?? []
        return MongoError(
            .server, reply["errmsg"]?.stringValue ?? "command failed",
            code: reply["code"]?.intValue, codeName: reply["codeName"]?.stringValue, labels: labels,
            reply: reply.extendedJSON(.relaxed))
    }

    /// Closes the connection; commands in flight fail.
    public func close() async {
        try? await channel.close()
    }
}

extension Duration {
    /// Nanoseconds, clamped to `Int64`.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return product &+ attoseconds / 1_000_000_000
    }
}
