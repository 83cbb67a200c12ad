import NIOCore
import NIOPosix
import Testing
import TroupeBSON
@testable import TroupeMongo
import TroupeTestSupport

/// A fake server that answers the handshake with hostile bytes: the client rejects them with a clear
/// error and the process survives.
@Suite("MongoDB driver: hostile server replies")
struct MongoHostileServerTests {
    final class Responder: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let reply: @Sendable (Int32) -> [UInt8]
        let closeAfter: Bool
        init(closeAfter: Bool, reply: @escaping @Sendable (Int32) -> [UInt8]) {
            self.reply = reply
            self.closeAfter = closeAfter
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            guard let requestID = buffer.getInteger(at: buffer.readerIndex + 4, endianness: .little, as: Int32.self) else { return }
            let bytes = reply(requestID)
            let close = closeAfter
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes))).whenComplete { _ in
                if close { context.close(promise: nil) }
            }
        }
    }

    static func header(length: Int32, responseTo: Int32) -> [UInt8] {
        var b = ByteBuffer()
        b.writeInteger(length, endianness: .little)
        b.writeInteger(Int32(99), endianness: .little)
        b.writeInteger(responseTo, endianness: .little)
        b.writeInteger(Int32(2013), endianness: .little)
        return Array(b.readableBytesView)
    }

    static func withFakeServer(closeAfter: Bool, _ reply: @escaping @Sendable (Int32) -> [UInt8]) async throws -> MongoError? {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Responder(closeAfter: closeAfter, reply: reply)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        var settings = MongoClientSettings(hosts: [MongoServerAddress(host: "127.0.0.1", port: server.localAddress!.port!)])
        settings.connectTimeout = .seconds(3)
        do {
            let connection = try await MongoConnection.connect(to: settings.hosts[0], settings: settings, group: MultiThreadedEventLoopGroup.singleton)
            await connection.close()
            return nil
        } catch {
            return error
        }
    }

    @Test("a truncated OP_MSG is rejected")
    func truncated() async throws {
        let error = try await withDeadline(.seconds(10)) {
            try await Self.withFakeServer(closeAfter: true) { id in
                let body: BSONDocument = ["ok": 1, "maxWireVersion": 21]
                let full = Self.header(length: Int32(16 + 5 + body.bytes.count), responseTo: id) + [0, 0, 0, 0, 0] + body.bytes
                return Array(full.prefix(full.count - 7))
            }
        }
        #expect(error?.kind == .connectFailed)
        #expect(error.map { "\($0)".contains("truncated") } == true)
    }

    @Test("a document length of 2^31-1 is rejected before allocation")
    func hugeDocument() async throws {
        let error = try await withDeadline(.seconds(10)) {
            try await Self.withFakeServer(closeAfter: false) { id in
                Self.header(length: 16 + 5 + 5, responseTo: id) + [0, 0, 0, 0, 0] + [0xFF, 0xFF, 0xFF, 0x7F, 0]
            }
        }
        #expect(error?.kind == .connectFailed)
        #expect(error.map { "\($0)".contains("document length 2147483647") } == true)
    }

    @Test("a message length of 2^31-1 is rejected before buffering")
    func hugeMessage() async throws {
        let error = try await withDeadline(.seconds(10)) {
            try await Self.withFakeServer(closeAfter: false) { id in Self.header(length: Int32.max, responseTo: id) }
        }
        #expect(error?.kind == .connectFailed)
        #expect(error.map { "\($0)".contains("exceeds the limit") } == true)
    }

    @Test("1,000-deep nesting is rejected")
    func deepNesting() async throws {
        var value: BSONValue = 1
        for _ in 0..<1000 { value = .document(["a": value]) }
        let body: BSONDocument = ["ok": 1, "deep": value]
        let bytes = body.bytes
        let error = try await withDeadline(.seconds(10)) {
            try await Self.withFakeServer(closeAfter: false) { id in
                Self.header(length: Int32(16 + 5 + bytes.count), responseTo: id) + [0, 0, 0, 0, 0] + bytes
            }
        }
        #expect(error?.kind == .connectFailed)
        #expect(error.map { "\($0)".contains("nest") } == true)
    }
}
