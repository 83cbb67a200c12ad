import NIOCore
import NIOPosix
import Testing
import TroupeCore
@testable import TroupeGateway
import TroupeTestSupport

/// One client connection to a live gateway, kept open across requests.
struct ClientConnection {
    let channel: any Channel
    let collector = ByteCollector()

    init(port: Int) async throws {
        let collector = self.collector
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) } }
            .connect(host: "127.0.0.1", port: port).get()
    }

    var text: String { collector.received.withLock { $0 } }
    var closed: Bool { collector.closed.withLock { $0 } }

    func send(_ raw: String) async throws { try await channel.writeAndFlush(ByteBuffer(string: raw)) }

    /// Waits until the received text satisfies `done` (at most 10 s).
    func receive(until done: @escaping @Sendable (String) -> Bool) async throws -> String {
        try await withDeadline(.seconds(10)) {
            while !done(text) { try await Task.sleep(for: .milliseconds(5)) }
            return text
        }
    }

    /// Waits up to `limit` for the server to close the connection; returns how long it took, nil if it did not.
    func closing(within limit: Duration) async throws -> Duration? {
        let start = ContinuousClock.now
        while !closed {
            guard ContinuousClock.now - start < limit else { return nil }
            try await Task.sleep(for: .milliseconds(5))
        }
        return ContinuousClock.now - start
    }
}

@Suite("Client deadlines: idle connections and requests that do not arrive in time", .serialized)
struct ClientDeadlineTests {
    let serving = EventLoopServingTests()

    static func short(_ configuration: inout GatewayConfiguration) {
        configuration.idleTimeout = .milliseconds(400)
        configuration.requestReadTimeout = .milliseconds(300)
    }

    @Test("an idle connection is closed after idleTimeout; one whose requests keep coming stays open (both paths)")
    func idle() async throws {
        for byteLevel in [true, false] {
            try await serving.withLiveGateway(byteLevel: byteLevel, configure: Self.short) { port, _, _ in
                let client = try await ClientConnection(port: port)
                defer { client.channel.close(promise: nil) }
                // Six requests 150 ms apart: 900 ms in all, more than the idle timeout, each wait shorter.
                for i in 0..<6 {
                    try await client.send("GET /api/keep/\(i) HTTP/1.1\r\nHost: x\r\n\r\n")
                    _ = try await client.receive { $0.hasSuffix("up /keep/\(i)") }
                    try await Task.sleep(for: .milliseconds(150))
                }
                #expect(!client.closed, "requests in time keep the connection open (byteLevel \(byteLevel))")
                let took = try await client.closing(within: .seconds(5))
                #expect(took != nil, "the idle connection was closed (byteLevel \(byteLevel))")
                #expect(!client.text.contains("408"), "an idle close sends nothing")
            }
        }
    }

    @Test("a connection that never sends a byte is closed after idleTimeout")
    func silent() async throws {
        try await serving.withLiveGateway(configure: Self.short) { port, _, _ in
            let client = try await ClientConnection(port: port)
            defer { client.channel.close(promise: nil) }
            let took = try await client.closing(within: .seconds(5))
            #expect(took.map { $0 >= .milliseconds(350) } == true, "closed, not before the idle timeout: \(String(describing: took))")
            #expect(client.text.isEmpty)
        }
    }

    @Test("a request head that stalls on the byte-level path is answered 408 problem+json and the connection closed")
    func stalledHead() async throws {
        try await serving.withLiveGateway(configure: Self.short) { port, _, _ in
            let client = try await ClientConnection(port: port)
            defer { client.channel.close(promise: nil) }
            let start = ContinuousClock.now
            try await client.send("GET /api/slow HTTP/1.1\r\nHost: x\r\n")
            let text = try await client.receive { $0.contains("}") }
            let took = ContinuousClock.now - start
            #expect(text.hasPrefix("HTTP/1.1 408 "), "\(text)")
            #expect(text.contains("application/problem+json") && text.contains("connection: close"), "\(text)")
            #expect(took >= .milliseconds(250) && took < .seconds(5), "\(took)")
            #expect(try await client.closing(within: .seconds(5)) != nil)
        }
    }

    @Test("on the codec path a body that stalls is answered 408; after a hand-over an idle connection is closed")
    func codecPath() async throws {
        try await serving.withLiveGateway(byteLevel: false, configure: Self.short) { port, _, _ in
            let client = try await ClientConnection(port: port)
            defer { client.channel.close(promise: nil) }
            try await client.send("POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            let text = try await client.receive { $0.contains("}") }
            #expect(text.hasPrefix("HTTP/1.1 408 "), "\(text)")
            #expect(text.lowercased().contains("application/problem+json"), "\(text)")
            #expect(try await client.closing(within: .seconds(5)) != nil)
        }
        // Byte-level first: /where is not an upstream route, so the connection is handed to the codec path,
        // whose deadlines then apply.
        try await serving.withLiveGateway(configure: Self.short) { port, _, _ in
            let client = try await ClientConnection(port: port)
            defer { client.channel.close(promise: nil) }
            try await client.send("GET /where HTTP/1.1\r\nHost: x\r\n\r\n")
            _ = try await client.receive { $0.hasSuffix("loop") || $0.hasSuffix("pool") }
            #expect(try await client.closing(within: .seconds(5)) != nil, "closed after the hand-over too")
        }
    }
}
