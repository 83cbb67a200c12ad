import Crypto

/// The mutual-authentication handshake of a node-to-node connection, as a pure state machine.
///
/// ```
/// dialer                                   listener
///   hello(version, cluster, node, nonceD) ──▶  checks version and cluster
///   ◀── challenge(node, nonceL, macL)          macL = HMAC(secret, "L" ‖ transcript)
///   checks macL
///   auth(macD) ──▶                             macD = HMAC(secret, "D" ‖ transcript); checks it
/// ```
/// The transcript binds both nonces, both node ids, the cluster name and the version, so a
/// recorded handshake cannot be replayed and neither side proves anything without the secret.
/// The dialer may send calls right after `auth`: the listener reads frames in order and only
/// dispatches calls once `auth` has verified.
///
/// A plain copyable value: its states carry a few small fields and no queues, so the
/// consume-and-reinitialise pattern of the pipelining machines buys nothing here.
struct HandshakeMachine {
    enum Role { case dialer, listener }

    enum Action: Equatable {
        /// Send this envelope and keep waiting.
        case send(WireEnvelope)
        /// Send this envelope (if any); the peer is authenticated.
        case established(peer: NodeID, send: WireEnvelope?)
        /// Send `refused` (when `notifyPeer`) and close; log `reason`.
        case refuse(reason: String, notifyPeer: Bool)
    }

    private enum State {
        case idle
        case dialerSentHello(WireEnvelope.Hello)
        case listenerAwaitingHello
        case listenerSentChallenge(hello: WireEnvelope.Hello, nonce: [UInt8])
        case established(NodeID)
        case failed
    }

    static let protocolVersion: UInt16 = 1

    private var state: State
    private let local: NodeID
    private let cluster: String
    private let key: SymmetricKey

    init(role: Role, local: NodeID, cluster: String, secret: [UInt8]) {
        self.local = local
        self.cluster = cluster
        self.key = SymmetricKey(data: secret)
        switch role {
        case .dialer: self.state = .idle
        case .listener: self.state = .listenerAwaitingHello
        }
    }

    var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// Dialer only: the first message, with a fresh nonce.
    mutating func start(nonce: [UInt8]) -> WireEnvelope {
        let hello = WireEnvelope.Hello(protocolVersion: Self.protocolVersion, cluster: cluster, node: local, nonce: nonce)
        guard case .idle = state else {
            preconditionFailure("HandshakeMachine.start called after the handshake began")
        }
        state = .dialerSentHello(hello)
        return .hello(hello)
    }

    /// An envelope arrived before the handshake completed.
    mutating func received(_ envelope: WireEnvelope, listenerNonce: [UInt8]) -> Action {
        switch state {
        case .listenerAwaitingHello:
            guard case .hello(let hello) = envelope else {
                return fail("expected hello", notify: false)
            }
            guard hello.protocolVersion == Self.protocolVersion else {
                return fail("unsupported protocol version \(hello.protocolVersion)", notify: true)
            }
            guard hello.cluster == cluster else {
                return fail("wrong cluster name", notify: true)
            }
            let mac = Self.mac(key, role: "L", hello: hello, listener: local, listenerNonce: listenerNonce)
            state = .listenerSentChallenge(hello: hello, nonce: listenerNonce)
            return .send(.challenge(.init(node: local, nonce: listenerNonce, mac: mac)))

        case .dialerSentHello(let hello):
            if case .refused(let reason) = envelope {
                return fail("refused by peer: \(reason)", notify: false)
            }
            guard case .challenge(let challenge) = envelope else {
                return fail("expected challenge", notify: false)
            }
            let expected = Self.mac(key, role: "L", hello: hello, listener: challenge.node, listenerNonce: challenge.nonce)
            guard Self.constantTimeEqual(expected, challenge.mac) else {
                return fail("peer failed authentication (wrong cluster secret)", notify: true)
            }
            let mac = Self.mac(key, role: "D", hello: hello, listener: challenge.node, listenerNonce: challenge.nonce)
            state = .established(challenge.node)
            return .established(peer: challenge.node, send: .auth(mac: mac))

        case .listenerSentChallenge(let hello, let nonce):
            guard case .auth(let mac) = envelope else {
                return fail("expected auth", notify: false)
            }
            let expected = Self.mac(key, role: "D", hello: hello, listener: local, listenerNonce: nonce)
            guard Self.constantTimeEqual(expected, mac) else {
                return fail("peer failed authentication (wrong cluster secret)", notify: true)
            }
            state = .established(hello.node)
            return .established(peer: hello.node, send: nil)

        case .idle:
            state = .idle
            preconditionFailure("HandshakeMachine.received before start in state idle")
        case .established(let node):
            state = .established(node)
            preconditionFailure("HandshakeMachine.received after the handshake completed")
        case .failed:
            state = .failed
            return .refuse(reason: "handshake already failed", notifyPeer: false)
        }
    }

    private mutating func fail(_ reason: String, notify: Bool) -> Action {
        state = .failed
        return .refuse(reason: reason, notifyPeer: notify)
    }

    static func mac(_ key: SymmetricKey, role: String, hello: WireEnvelope.Hello, listener: NodeID, listenerNonce: [UInt8]) -> [UInt8] {
        var transcript = HMAC<SHA256>(key: key)
        func add(_ string: String) {
            transcript.update(data: Array(string.utf8) + [0])
        }
        add("troupe-handshake")
        add(role)
        add(String(hello.protocolVersion))
        add(hello.cluster)
        add(hello.node.description)
        add(listener.description)
        transcript.update(data: hello.nonce)
        transcript.update(data: listenerNonce)
        return Array(transcript.finalize())
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
