import NIOCore
import NIOEmbedded
import Testing
@testable import TroupeRedis
import TroupeRESP

@Suite("Redis connection state machine")
struct RedisStateMachineTests {
    typealias Machine = RedisConnectionStateMachine<Int>
    let far = ContinuousClock.now + .seconds(60)

    func text(_ string: String) -> RESPValue { .simpleString(ByteBuffer(string: string)) }

    @Test("replies complete requests in order")
    func inOrder() {
        var machine = Machine()
        guard case .write = machine.enqueue([.reply(1, deadline: far), .reply(2, deadline: far)]) else { Issue.record("not written"); return }
        guard case .succeed(1, text("a")) = machine.received(text("a")) else { Issue.record("first"); return }
        guard case .succeed(2, text("b")) = machine.received(text("b")) else { Issue.record("second"); return }
        #expect(machine.inFlight == 0)
    }

    @Test("push frames are delivered, never matched to the head of the queue")
    func pushes() {
        var machine = Machine()
        _ = machine.enqueue([.reply(1, deadline: far)])
        let message = RESPValue.push([text("message"), text("news"), text("hi")])
        guard case .deliverPush(message) = machine.received(message) else { Issue.record("push not delivered"); return }
        guard case .succeed(1, _) = machine.received(text("OK")) else { Issue.record("reply lost"); return }
    }

    @Test("subscribe confirmations complete the subscribe request after the last one")
    func confirmations() {
        var machine = Machine()
        _ = machine.enqueue([.confirmations(kind: "subscribe", remaining: 2, 7, deadline: far)])
        let first = RESPValue.push([text("subscribe"), text("a"), .integer(1)])
        let second = RESPValue.push([text("subscribe"), text("b"), .integer(2)])
        guard case .none = machine.received(first) else { Issue.record("completed early"); return }
        guard case .succeed(7, second) = machine.received(second) else { Issue.record("not completed"); return }
    }

    @Test("a reply nobody asked for closes the connection")
    func unexpectedReply() {
        var machine = Machine()
        guard case .failAllAndClose([], let error) = machine.received(text("surprise")) else { Issue.record("not closed"); return }
        #expect(error.code == .protocolViolation)
        guard case .fail = machine.enqueue([.reply(1, deadline: far)]) else { Issue.record("accepted after close"); return }
    }

    @Test("a passed deadline fails every request and closes; later requests fail fast")
    func deadline() {
        var machine = Machine()
        let now = ContinuousClock.now
        _ = machine.enqueue([.reply(1, deadline: now + .milliseconds(10)), .reply(2, deadline: now + .seconds(10))])
        guard case .none = machine.checkDeadline(now: now) else { Issue.record("early"); return }
        guard case .failAllAndClose([1, 2], let error) = machine.checkDeadline(now: now + .milliseconds(11)) else {
            Issue.record("not failed"); return
        }
        #expect(error.code == .timeout)
    }

    @Test("closing fails what is in flight")
    func close() {
        var machine = Machine()
        _ = machine.enqueue([.reply(1, deadline: far), .reply(2, deadline: far)])
        guard case .failAllAndClose([1, 2], _) = machine.closed(RedisError(.connectionClosed, "closed")) else { Issue.record("not failed"); return }
        guard case .none = machine.closed(RedisError(.connectionClosed, "again")) else { Issue.record("twice"); return }
    }

    @Test("garbage from the server fails the requests in flight and closes the channel")
    func garbage() async throws {
        let channel = NIOAsyncTestingChannel()
        try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.addHandler(RedisChannelHandler(limits: RESPLimits(), deadlineCheckInterval: .seconds(10)) { _ in })
        }
        try await channel.connect(to: .init(ipAddress: "127.0.0.1", port: 6379))
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        var bytes = ByteBuffer()
        RESPCommandEncoder.encode(["PING"], into: &bytes)
        try await channel.writeOutbound(RedisBatch(bytes: bytes, pending: [.reply(.promise(promise), deadline: far)]))
        let written = try await channel.waitForOutboundWrite(as: ByteBuffer.self)
        #expect(String(buffer: written) == "*1\r\n$4\r\nPING\r\n")
        _ = try? await channel.writeInbound(ByteBuffer(string: "?garbage\r\n"))
        do {
            _ = try await promise.futureResult.get()
            Issue.record("expected a failure")
        } catch let error as RedisError {
            #expect(error.code == .decoding)
        }
        #expect(!channel.isActive)
    }

    @Test("replies split across reads, and several in one read, are decoded and matched in order")
    func splitReads() async throws {
        let channel = NIOAsyncTestingChannel()
        try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.addHandler(RedisChannelHandler(limits: RESPLimits(), deadlineCheckInterval: .seconds(10)) { _ in })
        }
        try await channel.connect(to: .init(ipAddress: "127.0.0.1", port: 6379))
        let promises = (0..<3).map { _ in channel.eventLoop.makePromise(of: RESPValue.self) }
        try await channel.writeOutbound(RedisBatch(bytes: ByteBuffer(), pending: promises.map { .reply(.promise($0), deadline: far) }))
        // "$5\r\nhello\r\n" one byte at a time, then ":7\r\n" and "+OK\r\n" in one read.
        for byte in Array("$5\r\nhello\r\n".utf8) { try await channel.writeInbound(ByteBuffer(bytes: [byte])) }
        try await channel.writeInbound(ByteBuffer(string: ":7\r\n+OK\r\n"))
        #expect(try await promises[0].futureResult.get().string == "hello")
        #expect(try await promises[1].futureResult.get().int == 7)
        #expect(try await promises[2].futureResult.get().string == "OK")
        #expect(channel.isActive)
    }
}
