import NIOCore
import Testing
@testable import TroupeActors

@Suite("Wire format and handshake")
struct WireTests {
    static let nodeA = NodeID(name: "a", host: "127.0.0.1", port: 7001, incarnation: 11)
    static let nodeB = NodeID(name: "b", host: "127.0.0.1", port: 7002, incarnation: 22)

    static let envelopes: [WireEnvelope] = [
        .hello(.init(protocolVersion: 1, cluster: "c", node: nodeA, nonce: Array(repeating: 1, count: 32))),
        .challenge(.init(node: nodeB, nonce: Array(repeating: 2, count: 32), mac: Array(repeating: 3, count: 32))),
        .auth(mac: Array(repeating: 4, count: 32)),
        .refused(reason: "wrong cluster name"),
        .call(CallEnvelope(
            callID: 99, timeoutMillis: 5000, target: .virtual(type: "Counter", key: "k-1"), method: "$s4Demo7CounterC3incyyYaKFTE",
            genericSubstitutions: ["Si"], arguments: [[3, 4], []], trace: ["traceparent": "00-abc-def-01"]
        )),
        .call(CallEnvelope(
            callID: 1, timeoutMillis: 1, target: ActorID(type: "Probe", key: "x", node: nodeB), method: "m",
            genericSubstitutions: [], arguments: [], trace: [:]
        )),
        .reply(ReplyEnvelope(callID: 7, result: .value([1, 2, 3]))),
        .reply(ReplyEnvelope(callID: 8, result: .void)),
        .reply(ReplyEnvelope(callID: 9, result: .error(code: "user:x", type: "T", message: "boom"))),
        .reply(ReplyEnvelope(callID: 10, result: .typedError(code: "user:x", type: "T", message: "no", mangledName: "4Demo1TV", payload: [0, 1, 2]))),
        .goodbye,
    ]

    @Test("every envelope round-trips through a frame", arguments: envelopes)
    func roundTrip(envelope: WireEnvelope) throws {
        var buffer = ByteBuffer()
        envelope.encodeFrame(into: &buffer)
        var decoder = FrameDecoder(maxFrameSize: 1 << 20)
        #expect(try decoder.decode(buffer: &buffer) == envelope)
        #expect(buffer.readableBytes == 0)
    }

    @Test("a frame fed one byte at a time decodes once complete", arguments: envelopes)
    func dripFed(envelope: WireEnvelope) throws {
        var frame = ByteBuffer()
        envelope.encodeFrame(into: &frame)
        var decoder = FrameDecoder(maxFrameSize: 1 << 20)
        var buffer = ByteBuffer()
        var decoded: [WireEnvelope] = []
        while let byte = frame.readInteger(as: UInt8.self) {
            buffer.writeInteger(byte)
            if let envelope = try decoder.decode(buffer: &buffer) { decoded.append(envelope) }
        }
        #expect(decoded == [envelope])
    }

    @Test("every truncation of a frame body is rejected", arguments: envelopes)
    func truncated(envelope: WireEnvelope) {
        var body = ByteBuffer()
        envelope.encodeBody(into: &body)
        for length in 0..<body.readableBytes {
            var prefix = body.getSlice(at: 0, length: length)!
            #expect(throws: WireDecodingError.self) { try WireEnvelope.decode(body: &prefix) }
        }
    }

    @Test("oversized and empty frames are rejected from the length prefix alone")
    func frameLimits() {
        var decoder = FrameDecoder(maxFrameSize: 1024)
        var oversized = ByteBuffer(bytes: [0, 0, 4, 1])  // 1025
        #expect(throws: WireDecodingError.self) { try decoder.decode(buffer: &oversized) }
        var empty = ByteBuffer(bytes: [0, 0, 0, 0])
        #expect(throws: WireDecodingError.self) { try decoder.decode(buffer: &empty) }
    }

    @Test("invalid fields are rejected", arguments: [
        [UInt8(0x63)],                              // unknown kind
        [UInt8(7), 0],                              // goodbye with a trailing byte
        [UInt8(6), 0, 0, 0, 0, 0, 0, 0, 1, 9],      // reply with an unknown status
        [UInt8(4), 0, 2, 0xC3, 0x28],               // refused with invalid UTF-8
    ])
    func invalidFields(bytes: [UInt8]) {
        var body = ByteBuffer(bytes: bytes)
        #expect(throws: WireDecodingError.self) { try WireEnvelope.decode(body: &body) }
    }

    static let secret = Array("0123456789abcdef0123456789abcdef".utf8)

    /// Runs a handshake between two machines; returns each side's final action.
    static func handshake(dialerSecret: [UInt8], listenerSecret: [UInt8], dialerCluster: String = "c")
        -> (dialer: HandshakeMachine.Action, listener: HandshakeMachine.Action?) {
        var dialer = HandshakeMachine(role: .dialer, local: nodeA, cluster: dialerCluster, secret: dialerSecret)
        var listener = HandshakeMachine(role: .listener, local: nodeB, cluster: "c", secret: listenerSecret)
        let hello = dialer.start(nonce: Array(repeating: 9, count: 32))
        let challenge = listener.received(hello, listenerNonce: Array(repeating: 8, count: 32))
        guard case .send(let challengeEnvelope) = challenge else { return (challenge, nil) }
        let dialerResult = dialer.received(challengeEnvelope, listenerNonce: [])
        guard case .established(_, let auth?) = dialerResult else { return (dialerResult, nil) }
        return (dialerResult, listener.received(auth, listenerNonce: []))
    }

    @Test("matching secrets authenticate both sides")
    func handshakeSucceeds() {
        let (dialer, listener) = Self.handshake(dialerSecret: Self.secret, listenerSecret: Self.secret)
        guard case .established(let peer, _) = dialer else { Issue.record("dialer: \(dialer)"); return }
        #expect(peer == Self.nodeB)
        #expect(listener == .established(peer: Self.nodeA, send: nil))
    }

    @Test("a wrong secret is detected by the dialer, which refuses the listener")
    func handshakeWrongSecret() {
        let (dialer, listener) = Self.handshake(dialerSecret: Array("another-secret-another-secret-!!".utf8), listenerSecret: Self.secret)
        guard case .refuse(let reason, _) = dialer else { Issue.record("dialer: \(dialer)"); return }
        #expect(reason.contains("secret"))
        #expect(listener == nil)
    }

    @Test("a forged auth is refused by the listener")
    func forgedAuth() {
        var listener = HandshakeMachine(role: .listener, local: Self.nodeB, cluster: "c", secret: Self.secret)
        var dialer = HandshakeMachine(role: .dialer, local: Self.nodeA, cluster: "c", secret: Self.secret)
        _ = listener.received(dialer.start(nonce: Array(repeating: 1, count: 32)), listenerNonce: Array(repeating: 2, count: 32))
        let result = listener.received(.auth(mac: Array(repeating: 0, count: 32)), listenerNonce: [])
        guard case .refuse = result else { Issue.record("listener: \(result)"); return }
    }

    @Test("another cluster name is refused by the listener, who tells the dialer")
    func handshakeWrongCluster() {
        let (dialer, _) = Self.handshake(dialerSecret: Self.secret, listenerSecret: Self.secret, dialerCluster: "other")
        #expect(dialer == .refuse(reason: "wrong cluster name", notifyPeer: true))
    }
}
