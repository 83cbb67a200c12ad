import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Testing
@testable import TroupeGateway
import TroupeTestSupport
import TroupeTLS
import TroupeCore

@Suite("Gateway over HTTPS", .serialized)
struct GatewayHTTPSTests {
    let serving = EventLoopServingTests()
    let logger = Logger(label: "test.https", factory: { _ in SwiftLogNoOpLogHandler() })

    @Test("routes and proxied upstream routes answer over TLS (client offering ALPN http/1.1); plaintext gets no answer")
    func servesHTTPS() async throws {
        let certificates = try TestCertificates()
        let tls = try Gateway.httpsContext(try certificates.issue("gateway"), logger: logger)
        let client = try TLSSettings(ca: certificates.ca).makeClientContext(applicationProtocols: ["http/1.1"])
        try await serving.withLiveGateway(tls: tls) { port, upstream, _ in
            let local = try await serving.exchange(port: port, "GET /where HTTP/1.1\r\nHost: localhost\r\n\r\n", tls: client) { $0.hasSuffix("loop") }
            #expect(local.hasPrefix("HTTP/1.1 200"))
            let proxied = try await serving.exchange(port: port, "GET /api/item/7 HTTP/1.1\r\nHost: localhost\r\n\r\n", tls: client) {
                $0.hasSuffix("up /item/7")
            }
            #expect(proxied.hasPrefix("HTTP/1.1 200"))
            #expect(upstream.hits.withLock { $0 } == 1)

            let plaintext = try await serving.exchangeWatchingClose(port: port, "GET /where HTTP/1.1\r\nHost: localhost\r\n\r\n",
                                                                    closeWait: .seconds(3)) { _ in true }
            try await Task.sleep(for: .milliseconds(200))
            #expect(!plaintext.text.contains("HTTP/1.1"), "a plaintext request was answered: \(plaintext.text)")
            #expect(upstream.hits.withLock { $0 } == 1)
        }
    }

    @Test("renewed certificate files serve new connections without a restart")
    func rotation() async throws {
        let certificates = try TestCertificates()
        let settings = try certificates.issue("gateway")
        let tls = try Gateway.httpsContext(settings, logger: logger)
        let client = try TLSSettings(ca: certificates.ca).makeClientContext()
        let firstSerial = try TestCertificates.serial(of: settings)
        try await serving.withLiveGateway(tls: tls) { port, _, _ in
            #expect(try await servedSerial(port: port, client: client) == firstSerial)
            let renewed = try certificates.issue("gateway")  // same paths, new key and serial
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(5)], ofItemAtPath: renewed.certificate ?? "")
            #expect(try tls.reloadIfChanged())
            let secondSerial = try TestCertificates.serial(of: renewed)
            #expect(secondSerial != firstSerial)
            #expect(try await servedSerial(port: port, client: client) == secondSerial)
        }
    }

    /// The serial of the certificate the gateway presents to a new connection (after a full request).
    func servedSerial(port: Int, client: NIOSSLContext) async throws -> String {
        let collector = ByteCollector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: client, serverHostname: "localhost"))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        defer { channel.close(promise: nil) }
        try await channel.writeAndFlush(ByteBuffer(string: "GET /where HTTP/1.1\r\nHost: localhost\r\n\r\n"))
        try await withDeadline(.seconds(10)) { while !collector.received.withLock({ $0.hasSuffix("loop") }) { try await Task.sleep(for: .milliseconds(10)) } }
        let handler = try await channel.pipeline.handler(type: NIOSSLHandler.self).get()
        return TLSSettings.serial(of: try #require(handler.peerCertificate))
    }
}
