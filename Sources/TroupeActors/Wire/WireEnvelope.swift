import NIOCore

/// Everything that crosses a node-to-node connection, after the 4-byte length prefix.
///
/// Layout: one kind byte, then the fields of that kind in network byte order. Strings are
/// UTF-8 with a `UInt16` length; opaque payloads have a `UInt32` length. Every length is
/// checked against the bytes that remain before anything is read or allocated.
enum WireEnvelope: Sendable, Equatable {
    case hello(Hello)
    case challenge(Challenge)
    case auth(mac: [UInt8])
    case refused(reason: String)
    case call(CallEnvelope)
    case reply(ReplyEnvelope)
    case goodbye

    enum Kind: UInt8 {
        case hello = 1, challenge, auth, refused, call, reply, goodbye
    }

    struct Hello: Sendable, Equatable {
        var protocolVersion: UInt16
        var cluster: String
        var node: NodeID
        var nonce: [UInt8]
    }

    struct Challenge: Sendable, Equatable {
        var node: NodeID
        var nonce: [UInt8]
        var mac: [UInt8]
    }
}

/// A request to run a distributed target.
struct CallEnvelope: Sendable, Equatable {
    var callID: UInt64
    /// Milliseconds the caller will wait; clocks of different nodes are never compared.
    var timeoutMillis: UInt32
    var target: ActorID
    var method: String
    var genericSubstitutions: [String]
    var arguments: [[UInt8]]
    var trace: [String: String]
}

/// The outcome of a call.
struct ReplyEnvelope: Sendable, Equatable {
    enum Result: Sendable, Equatable {
        case value([UInt8])
        case void
        /// `code` is an ``ActorSystemError/Code`` wire name when the callee's system failed the call,
        /// or `remoteError` with the thrown error's details.
        case error(code: String, type: String, message: String)
        /// A ``CodableRemoteError``: as `error`, plus the error's mangled type name and its binary encoding, so
        /// that the caller can throw the same type.
        case typedError(code: String, type: String, message: String, mangledName: String, payload: [UInt8])
    }
    var callID: UInt64
    var result: Result
}

/// Why bytes from a peer could not be read as a ``WireEnvelope``.
struct WireDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    var reason: String
    var description: String { "invalid frame: \(reason)" }
}

// MARK: - Encoding

extension WireEnvelope {
    static let nonceLength = 32
    static let macLength = 32
    static let maxArguments = 64
    static let maxTraceEntries = 32
    static let maxErrorMessageBytes = 4096

    /// Appends the length-prefixed frame to `buffer`.
    func encodeFrame(into buffer: inout ByteBuffer) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        encodeBody(into: &buffer)
        buffer.setInteger(UInt32(buffer.writerIndex - lengthIndex - 4), at: lengthIndex)
    }

    func encodeBody(into buffer: inout ByteBuffer) {
        switch self {
        case .hello(let hello):
            buffer.writeInteger(Kind.hello.rawValue)
            buffer.writeInteger(hello.protocolVersion)
            buffer.writeShortString(hello.cluster)
            buffer.writeNodeID(hello.node)
            buffer.writeBytes(hello.nonce)
        case .challenge(let challenge):
            buffer.writeInteger(Kind.challenge.rawValue)
            buffer.writeNodeID(challenge.node)
            buffer.writeBytes(challenge.nonce)
            buffer.writeBytes(challenge.mac)
        case .auth(let mac):
            buffer.writeInteger(Kind.auth.rawValue)
            buffer.writeBytes(mac)
        case .refused(let reason):
            buffer.writeInteger(Kind.refused.rawValue)
            buffer.writeShortString(String(reason.utf8.prefix(1024)) ?? "refused")
        case .call(let call):
            buffer.writeInteger(Kind.call.rawValue)
            buffer.writeInteger(call.callID)
            buffer.writeInteger(call.timeoutMillis)
            buffer.writeActorID(call.target)
            buffer.writeShortString(call.method)
            buffer.writeInteger(UInt8(call.genericSubstitutions.count))
            for name in call.genericSubstitutions { buffer.writeShortString(name) }
            buffer.writeInteger(UInt8(call.arguments.count))
            for argument in call.arguments {
                buffer.writeInteger(UInt32(argument.count))
                buffer.writeBytes(argument)
            }
            buffer.writeInteger(UInt8(call.trace.count))
            for (key, value) in call.trace {
                buffer.writeShortString(key)
                buffer.writeShortString(value)
            }
        case .reply(let reply):
            buffer.writeInteger(Kind.reply.rawValue)
            buffer.writeInteger(reply.callID)
            switch reply.result {
            case .value(let bytes):
                buffer.writeInteger(UInt8(0))
                buffer.writeInteger(UInt32(bytes.count))
                buffer.writeBytes(bytes)
            case .void:
                buffer.writeInteger(UInt8(1))
            case .error(let code, let type, let message):
                buffer.writeInteger(UInt8(2))
                buffer.writeShortString(code)
                buffer.writeShortString(type)
                buffer.writeShortString(String(message.utf8.prefix(Self.maxErrorMessageBytes)) ?? "")
            case .typedError(let code, let type, let message, let mangledName, let payload):
                buffer.writeInteger(UInt8(3))
                buffer.writeShortString(code)
                buffer.writeShortString(type)
                buffer.writeShortString(String(message.utf8.prefix(Self.maxErrorMessageBytes)) ?? "")
                buffer.writeShortString(mangledName)
                buffer.writeInteger(UInt32(payload.count))
                buffer.writeBytes(payload)
            }
        case .goodbye:
            buffer.writeInteger(Kind.goodbye.rawValue)
        }
    }
}

// MARK: - Decoding

extension WireEnvelope {
    /// Decodes one frame body (the bytes after the length prefix); the whole body must be consumed.
    static func decode(body: inout ByteBuffer) throws(WireDecodingError) -> WireEnvelope {
        let kindByte: UInt8 = try body.readChecked()
        guard let kind = Kind(rawValue: kindByte) else { throw WireDecodingError(reason: "unknown kind \(kindByte)") }
        let envelope: WireEnvelope
        switch kind {
        case .hello:
            let version: UInt16 = try body.readChecked()
            let cluster = try body.readShortString()
            let node = try body.readNodeID()
            let nonce = try body.readFixedBytes(nonceLength)
            envelope = .hello(Hello(protocolVersion: version, cluster: cluster, node: node, nonce: nonce))
        case .challenge:
            let node = try body.readNodeID()
            let nonce = try body.readFixedBytes(nonceLength)
            let mac = try body.readFixedBytes(macLength)
            envelope = .challenge(Challenge(node: node, nonce: nonce, mac: mac))
        case .auth:
            envelope = .auth(mac: try body.readFixedBytes(macLength))
        case .refused:
            envelope = .refused(reason: try body.readShortString())
        case .call:
            envelope = .call(try decodeCall(&body))
        case .reply:
            let callID: UInt64 = try body.readChecked()
            let status: UInt8 = try body.readChecked()
            switch status {
            case 0: envelope = .reply(ReplyEnvelope(callID: callID, result: .value(try body.readLongBytes())))
            case 1: envelope = .reply(ReplyEnvelope(callID: callID, result: .void))
            case 2:
                let code = try body.readShortString()
                let type = try body.readShortString()
                let message = try body.readShortString()
                envelope = .reply(ReplyEnvelope(callID: callID, result: .error(code: code, type: type, message: message)))
            case 3:
                let code = try body.readShortString()
                let type = try body.readShortString()
                let message = try body.readShortString()
                let mangledName = try body.readShortString()
                let payload = try body.readLongBytes()
                envelope = .reply(ReplyEnvelope(
                    callID: callID, result: .typedError(code: code, type: type, message: message, mangledName: mangledName, payload: payload)
                ))
            default: throw WireDecodingError(reason: "unknown reply status \(status)")
            }
        case .goodbye:
            envelope = .goodbye
        }
        guard body.readableBytes == 0 else { throw WireDecodingError(reason: "\(body.readableBytes) trailing bytes") }
        return envelope
    }

    private static func decodeCall(_ body: inout ByteBuffer) throws(WireDecodingError) -> CallEnvelope {
        let callID: UInt64 = try body.readChecked()
        let timeout: UInt32 = try body.readChecked()
        let target = try body.readActorID()
        let method = try body.readShortString()
        guard !method.isEmpty else { throw WireDecodingError(reason: "empty method") }
        let substitutionCount: UInt8 = try body.readChecked()
        guard substitutionCount <= maxArguments else { throw WireDecodingError(reason: "too many generic substitutions") }
        var substitutions: [String] = []
        for _ in 0..<substitutionCount { substitutions.append(try body.readShortString()) }
        let argumentCount: UInt8 = try body.readChecked()
        guard argumentCount <= maxArguments else { throw WireDecodingError(reason: "too many arguments") }
        var arguments: [[UInt8]] = []
        arguments.reserveCapacity(Int(argumentCount))
        for _ in 0..<argumentCount { arguments.append(try body.readLongBytes()) }
        let traceCount: UInt8 = try body.readChecked()
        guard traceCount <= maxTraceEntries else { throw WireDecodingError(reason: "too many trace entries") }
        var trace: [String: String] = [:]
        for _ in 0..<traceCount {
            let key = try body.readShortString()
            trace[key] = try body.readShortString()
        }
        return CallEnvelope(
            callID: callID, timeoutMillis: timeout, target: target, method: method,
            genericSubstitutions: substitutions, arguments: arguments, trace: trace
        )
    }
}

// MARK: - ByteBuffer helpers

extension ByteBuffer {
    mutating func writeShortString(_ string: String) {
        let lengthIndex = writerIndex
        writeInteger(UInt16(0))
        let written = writeString(string)
        // Strings longer than 65535 bytes are a local programming error; encode them truncated to
        // an empty string rather than producing a frame the peer would reject.
        if written > Int(UInt16.max) {
            moveWriterIndex(to: lengthIndex + 2)
        } else {
            setInteger(UInt16(written), at: lengthIndex)
        }
    }

    mutating func writeNodeID(_ node: NodeID) {
        writeShortString(node.name)
        writeShortString(node.host)
        writeInteger(UInt16(clamping: node.port))
        writeInteger(node.incarnation)
    }

    mutating func writeActorID(_ id: ActorID) {
        writeShortString(id.type)
        writeShortString(id.key)
        if let node = id.node {
            writeInteger(UInt8(1))
            writeNodeID(node)
        } else {
            writeInteger(UInt8(0))
        }
    }

    mutating func readChecked<I: FixedWidthInteger>(as: I.Type = I.self) throws(WireDecodingError) -> I {
        guard let value = readInteger(as: I.self) else { throw WireDecodingError(reason: "truncated") }
        return value
    }

    mutating func readShortString() throws(WireDecodingError) -> String {
        let length: UInt16 = try readChecked()
        guard let bytes = readBytes(length: Int(length)) else { throw WireDecodingError(reason: "truncated string") }
        guard let string = String(validating: bytes, as: UTF8.self) else { throw WireDecodingError(reason: "invalid UTF-8") }
        return string
    }

    mutating func readLongBytes() throws(WireDecodingError) -> [UInt8] {
        let length: UInt32 = try readChecked()
        guard Int(length) <= readableBytes, let bytes = readBytes(length: Int(length)) else {
            throw WireDecodingError(reason: "truncated payload")
        }
        return bytes
    }

    mutating func readFixedBytes(_ count: Int) throws(WireDecodingError) -> [UInt8] {
        guard let bytes = readBytes(length: count) else { throw WireDecodingError(reason: "truncated") }
        return bytes
    }

    mutating func readNodeID() throws(WireDecodingError) -> NodeID {
        let name = try readShortString()
        let host = try readShortString()
        let port: UInt16 = try readChecked()
        let incarnation: UInt64 = try readChecked()
        guard !name.isEmpty, !host.isEmpty, port != 0 else { throw WireDecodingError(reason: "invalid node id") }
        return NodeID(name: name, host: host, port: Int(port), incarnation: incarnation)
    }

    mutating func readActorID() throws(WireDecodingError) -> ActorID {
        let type = try readShortString()
        let key = try readShortString()
        guard !type.isEmpty else { throw WireDecodingError(reason: "empty actor type") }
        let hasNode: UInt8 = try readChecked()
        switch hasNode {
        case 0: return ActorID(type: type, key: key, node: nil)
        case 1: return ActorID(type: type, key: key, node: try readNodeID())
        default: throw WireDecodingError(reason: "invalid actor id flag")
        }
    }
}
