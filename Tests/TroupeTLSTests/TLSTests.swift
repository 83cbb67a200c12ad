import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import TroupeTLS

/// Echoes what it reads (the server side of the tests).
private final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// Completes with the first bytes read, or fails when the connection closes or errs first.
private final class FirstReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let reply: EventLoopPromise<String>
    init(reply: EventLoopPromise<String>) { self.reply = reply }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reply.succeed(String(buffer: unwrapInboundIn(data)))
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        reply.fail(error)
        context.close(promise: nil)
    }
    func channelInactive(context: ChannelHandlerContext) {
        reply.fail(ChannelError.ioOnClosedChannel)
    }
}

final class TLSFixture {
    let directory: URL
    let authority: DevelopmentCertificateAuthority
    let logger = Logger(label: "test.tls")

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-tls-\(UInt64.random(in: 0 ... .max))")
        authority = try DevelopmentCertificateAuthority.create(in: directory)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    func settings(_ issued: DevelopmentCertificateAuthority.Issued, ca: String? = nil, revoked: [String] = []) -> TLSSettings {
        TLSSettings(certificate: issued.certificate, privateKey: issued.privateKey, ca: ca ?? authority.certificatePath, revokedSerials: revoked)
    }

    /// A mutual-TLS echo server on a free loopback port.
    func echoServer(_ settings: TLSSettings, context: (@Sendable () -> NIOSSLContext)? = nil) async throws -> any Channel {
        let fixed = try settings.makeServerContext(requireClientCertificate: true, minimumVersion: .tlsv13)
        let revoked = settings.revoked
        let logger = logger
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addTLSServer(context: context?() ?? fixed, revoked: revoked, link: "test", logger: logger)
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// Sends "ping" over TLS and returns the echo; throws when the connection is refused or closed first.
    func ping(_ server: any Channel, _ settings: TLSSettings?, serverName: String? = nil, verifyHostname: Bool = false,
              peerSerial: (@Sendable (String) -> Void)? = nil) async throws -> String {
        let group = MultiThreadedEventLoopGroup.singleton
        let reply = group.any().makePromise(of: String.self)
        let context = try settings?.makeClientContext(minimumVersion: .tlsv12, verifyHostname: verifyHostname)
        let logger = logger
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addTLSClient(context: context, serverName: serverName, revoked: [], link: "test", logger: logger)
                    }
                    try channel.pipeline.syncOperations.addHandler(FirstReplyHandler(reply: reply))
                }
            }
            .connect(to: server.localAddress!).get()
        defer { channel.close(promise: nil) }
        try await channel.writeAndFlush(ByteBuffer(string: "ping over TLS"))
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(5)) { reply.fail(ChannelError.connectTimeout(.seconds(5))) }
        defer { timeout.cancel() }
        let text = try await reply.futureResult.get()
        if let peerSerial, let tls = try? await channel.pipeline.handler(type: NIOSSLHandler.self).get(),
           let certificate = tls.peerCertificate {
            peerSerial(TLSSettings.serial(of: certificate))
        }
        return text
    }
}

@Suite("TLS: settings, development CA, mutual authentication, revocation, reload")
struct TLSTests {
    @Test("the development CA issues certificates that load, with private keys readable by the owner only")
    func authorityIssues() throws {
        let fixture = try TLSFixture()
        let node = try fixture.authority.issue(name: "node1", hosts: ["localhost", "127.0.0.1", "::1"])
        try fixture.settings(node).validate()
        let permissions = try FileManager.default.attributesOfItem(atPath: node.privateKey)[.posixPermissions] as? Int
        #expect(permissions == 0o600)
        let loaded = try NIOSSLCertificate.fromPEMFile(node.certificate)
        #expect(TLSSettings.serial(of: loaded[0]) == node.serial)
        // A second CA in the same directory is refused, and the existing one loads.
        #expect(throws: TLSError.self) { try DevelopmentCertificateAuthority.create(in: fixture.directory) }
        let again = try DevelopmentCertificateAuthority(directory: fixture.directory)
        #expect(again.certificate == fixture.authority.certificate)
        #expect(throws: TLSError.self) { try fixture.authority.issue(name: "../evil", hosts: []) }
        #expect(throws: TLSError.self) { try fixture.authority.issue(name: "n", hosts: ["not a host"]) }
    }

    @Test("settings that cannot work fail at start-up with the file to fix")
    func invalidSettings() throws {
        let fixture = try TLSFixture()
        let node = try fixture.authority.issue(name: "n", hosts: ["localhost"])
        let missing = TLSSettings(certificate: "/nonexistent/cert.pem", privateKey: node.privateKey)
        #expect { try missing.validate() } throws: { ($0 as? TLSError)?.message.contains("/nonexistent/cert.pem") == true }
        let halfPair = TLSSettings(certificate: node.certificate)
        #expect(throws: TLSError.self) { try halfPair.validate() }
        let notPEM = TLSSettings(certificate: node.certificate, privateKey: node.certificate)
        #expect { try notPEM.validate() } throws: { ($0 as? TLSError)?.message.contains("private key") == true }
        let other = try fixture.authority.issue(name: "other", hosts: ["localhost"])
        let mismatched = TLSSettings(certificate: node.certificate, privateKey: other.privateKey)
        #expect(throws: TLSError.self) { _ = try mismatched.makeServerContext(requireClientCertificate: false) }
        #expect(throws: TLSError.self) { _ = try TLSSettings(certificate: node.certificate, privateKey: node.privateKey).makeServerContext(requireClientCertificate: true) }
    }

    @Test("two certificates of one CA talk over mutual TLS 1.3")
    func mutualTLS() async throws {
        let fixture = try TLSFixture()
        let server = try await fixture.echoServer(fixture.settings(try fixture.authority.issue(name: "server", hosts: ["127.0.0.1"])))
        defer { server.close(promise: nil) }
        let client = fixture.settings(try fixture.authority.issue(name: "client", hosts: []))
        #expect(try await fixture.ping(server, client) == "ping over TLS")
    }

    @Test("a client certificate from another CA, an expired one, none at all, or plaintext is refused")
    func refusals() async throws {
        let fixture = try TLSFixture()
        let server = try await fixture.echoServer(fixture.settings(try fixture.authority.issue(name: "server", hosts: ["127.0.0.1"])))
        defer { server.close(promise: nil) }

        let stranger = try TLSFixture()
        let foreign = stranger.settings(try stranger.authority.issue(name: "foreign", hosts: []), ca: fixture.authority.certificatePath)
        await #expect(throws: (any Error).self) { try await fixture.ping(server, foreign) }

        let expired = fixture.settings(try fixture.authority.issue(
            name: "expired", hosts: [], validFrom: Date().addingTimeInterval(-86_400 * 10), validUntil: Date().addingTimeInterval(-86_400)))
        await #expect(throws: (any Error).self) { try await fixture.ping(server, expired) }

        let anonymous = TLSSettings(ca: fixture.authority.certificatePath)
        await #expect(throws: (any Error).self) { try await fixture.ping(server, anonymous) }

        // Plaintext: the server answers with a TLS alert record (0x15) at most, closes, and echoes nothing.
        let plaintextAnswer = try? await fixture.ping(server, nil)
        #expect(plaintextAnswer.map { $0.utf8.first == 0x15 && !$0.contains("ping") } ?? true)

        // The server still serves a good client afterwards.
        let good = fixture.settings(try fixture.authority.issue(name: "good", hosts: []))
        #expect(try await fixture.ping(server, good) == "ping over TLS")
    }

    @Test("a client verifying names refuses a server whose certificate does not name the host")
    func hostnameVerification() async throws {
        let fixture = try TLSFixture()
        let server = try await fixture.echoServer(fixture.settings(try fixture.authority.issue(name: "server", hosts: ["db.internal"])))
        defer { server.close(promise: nil) }
        let client = fixture.settings(try fixture.authority.issue(name: "client", hosts: []))
        await #expect(throws: (any Error).self) {
            try await fixture.ping(server, client, serverName: "elsewhere.internal", verifyHostname: true)
        }
        #expect(try await fixture.ping(server, client, serverName: "db.internal", verifyHostname: true) == "ping over TLS")
    }

    @Test("a revoked serial is refused although it chains to the CA, and nothing it sends is echoed")
    func revocation() async throws {
        let fixture = try TLSFixture()
        let revokedClient = try fixture.authority.issue(name: "revoked", hosts: [])
        // Serial written in another form (upper case, colons): normalised.
        let written = stride(from: 0, to: revokedClient.serial.count, by: 2).map { offset -> String in
            let start = revokedClient.serial.index(revokedClient.serial.startIndex, offsetBy: offset)
            return String(revokedClient.serial[start ..< revokedClient.serial.index(start, offsetBy: min(2, revokedClient.serial.count - offset))])
        }.joined(separator: ":").uppercased()
        let server = try await fixture.echoServer(fixture.settings(try fixture.authority.issue(name: "server", hosts: []), revoked: [written]))
        defer { server.close(promise: nil) }
        await #expect(throws: (any Error).self) { try await fixture.ping(server, fixture.settings(revokedClient)) }
        #expect(try await fixture.ping(server, fixture.settings(try fixture.authority.issue(name: "fine", hosts: []))) == "ping over TLS")
    }

    @Test("the reloader swaps certificates when the files change, and keeps the old ones when the new ones do not load")
    func reload() async throws {
        let fixture = try TLSFixture()
        let first = try fixture.authority.issue(name: "server", hosts: [])
        let settings = fixture.settings(first)
        let reloader = try TLSContextReloader(settings: settings, logger: fixture.logger) {
            try $0.makeServerContext(requireClientCertificate: true)
        }
        let server = try await fixture.echoServer(settings, context: { reloader.context })
        defer { server.close(promise: nil) }
        let client = fixture.settings(try fixture.authority.issue(name: "client", hosts: []))
        let seen = SerialBox()
        #expect(try await fixture.ping(server, client, peerSerial: seen.set) == "ping over TLS")
        #expect(seen.value == first.serial)
        #expect(try reloader.reloadIfChanged() == false)

        // Same paths, new certificate (as a renewal would write it).
        let second = try fixture.authority.issue(name: "server", hosts: [])
        try touchLater(second.certificate, second.privateKey)
        #expect(try reloader.reloadIfChanged() == true)
        #expect(try await fixture.ping(server, client, peerSerial: seen.set) == "ping over TLS")
        #expect(seen.value == second.serial && second.serial != first.serial)

        // A half-written key: refused, the previous context stays in use.
        try Data("-----BEGIN PRIVATE KEY-----\nAAAA".utf8).write(to: URL(fileURLWithPath: second.privateKey))
        try touchLater(second.privateKey)
        #expect(throws: TLSError.self) { try reloader.reloadIfChanged() }
        #expect(try await fixture.ping(server, client, peerSerial: seen.set) == "ping over TLS")
        #expect(seen.value == second.serial)
    }
}

private final class SerialBox: @unchecked Sendable {
    private let lock = NSLock()
    private var serial: String?
    var value: String? { lock.withLock { serial } }
    func set(_ value: String) { lock.withLock { serial = value } }
}

/// Moves the files' modification time forward, so a change within the same clock tick is still seen.
private func touchLater(_ paths: String...) throws {
    for path in paths {
        let date = Date().addingTimeInterval(Double.random(in: 1 ... 1000))
        try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: path)
    }
}
