// Seed inputs made by the project's own encoders, so every campaign starts from well-formed messages of
// each kind instead of having to discover the formats: `TROUPE_FUZZ_WRITE_SEEDS=DIR troupe-fuzz` writes
// DIR/<target>/enc-<name> (scripts/fuzz --write-seeds refreshes Fuzz/corpus with them).
import Foundation
import NIOCore
import TroupeBSON
import TroupeCore
@testable import TroupeActors
@testable import TroupeBus
@testable import TroupeMongo
import TroupeRESP

func writeSeeds(into directory: String) -> CInt {
    var written = 0
    func put(_ target: FuzzTarget, _ name: String, _ bytes: [UInt8]) {
        let folder = URL(fileURLWithPath: directory).appendingPathComponent(target.rawValue)
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        do {
            try Data(bytes).write(to: folder.appendingPathComponent("enc-\(name)"))
            written += 1
        } catch {
            FileHandle.standardError.write(Data("cannot write the seed \(target.rawValue)/\(name): \(error)\n".utf8))
        }
    }
    func frame(_ envelopes: [WireEnvelope]) -> [UInt8] {
        var buffer = ByteBuffer()
        for envelope in envelopes { envelope.encodeFrame(into: &buffer) }
        return Array(buffer.readableBytesView)
    }

    // BSON: one document holding every element type, and the Codable model.
    let model = FuzzModel(name: "seed", count: -42, small: 7, ratio: 0.25, tags: ["a", "βγ"], nested: ["k": [1, -2, .max]], flag: true)
    let every: BSONDocument = [
        "double": .double(1.5), "string": "text", "document": ["inner": .int32(1)], "array": [.int64(2), "x", .null],
        "binary": .binary(BSONBinary(data: [1, 2, 3])), "old": .binary(BSONBinary(subtype: BSONBinary.binaryOld, data: [4, 0, 0, 0, 9, 9, 9, 9])),
        "uuid": .binary(BSONBinary(subtype: BSONBinary.uuid, data: Array(repeating: 0xAB, count: 16))),
        "undefined": .undefined, "oid": .objectID(BSONObjectID(seconds: 1_700_000_000)), "bool": false, "date": .datetime(1_700_000_000_000),
        "null": .null, "regex": .regex(BSONRegularExpression(pattern: "^a.*", options: "im")),
        "pointer": .dbPointer(collection: "c", id: BSONObjectID(seconds: 1)), "code": .code("f()"), "symbol": .symbol("s"),
        "scoped": .codeWithScope(code: "g(x)", scope: ["x": .int32(3)]), "int32": .int32(-5),
        "timestamp": .timestamp(BSONTimestamp(seconds: 10, increment: 2)), "int64": .int64(.min),
        "decimal": .decimal128(BSONDecimal128(high: 0x3040_0000_0000_0000, low: 12345)), "min": .minKey, "max": .maxKey,
    ]
    put(.bson, "every-type", every.bytes)
    if let document = try? BSONEncoder().encode(model) {
        put(.bson, "model", document.bytes)
        put(.bsonCodable, "model", document.bytes)
        put(.extendedJSON, "model-relaxed", Array(ExtendedJSON.encode(document, mode: .relaxed).utf8))
    }
    put(.extendedJSON, "every-type-canonical", Array(ExtendedJSON.encode(every, mode: .canonical).utf8))
    put(.extendedJSON, "every-type-relaxed", Array(ExtendedJSON.encode(every, mode: .relaxed).utf8))

    // MongoDB: a command with a document sequence, and a reply.
    var message = ByteBuffer()
    MongoMessage(requestID: 7, body: ["insert": "orders", "$db": "shop", "ordered": true],
                 sequences: [("documents", [["_id": "o-1", "qty": .int32(2)], every])]).write(into: &message)
    put(.opmsg, "insert", Array(message.readableBytesView))
    var reply = ByteBuffer()
    MongoMessage(requestID: 8, responseTo: 7, flags: [.moreToCome], body: ["ok": .double(1), "n": .int32(2)]).write(into: &reply)
    put(.opmsg, "reply", Array(reply.readableBytesView))

    // RESP3: commands as the client writes them, and replies of every type.
    var command = ByteBuffer()
    RESPCommandEncoder.encode(["XADD", "orders", "*", "body", "hello"], into: &command)
    put(.resp, "command", Array(command.readableBytesView))
    let replies: [RESPValue] = [
        .simpleString(ByteBuffer(string: "OK")), .simpleError(ByteBuffer(string: "ERR wrong")), .blobString(ByteBuffer(string: "hello")),
        .blobError(ByteBuffer(string: "SYNTAX bad")), .verbatimString(format: "txt", ByteBuffer(string: "text")), .integer(-12),
        .double(2.5), .double(.infinity), .boolean(true), .null, .bigNumber("-123456789012345678901234567890"),
        .array([.integer(1), .set([.boolean(false)])]),
        .map([RESPPair(key: .simpleString(ByteBuffer(string: "k")), value: .array([]))]),
        .attribute([RESPPair(key: .simpleString(ByteBuffer(string: "ttl")), value: .integer(3))], .blobString(ByteBuffer(string: "v"))),
        .push([.blobString(ByteBuffer(string: "message")), .blobString(ByteBuffer(string: "channel")), .blobString(ByteBuffer(string: "data"))]),
    ]
    for (index, value) in replies.enumerated() { put(.resp, "reply-\(index)", resp(value)) }
    put(.resp, "all-replies", replies.flatMap(resp))

    // The actor transport: a whole handshake, a call with arguments and trace, every reply form.
    let dialerNode = NodeID(name: "node-2", host: "127.0.0.1", port: 7001, incarnation: 9)
    let listenerNode = NodeID(name: "node-1", host: "127.0.0.1", port: 7000, incarnation: 1)
    let secret = Array("fuzz-cluster-secret-0123456789".utf8)
    var dialer = HandshakeMachine(role: .dialer, local: dialerNode, cluster: "fuzz", secret: secret)
    var listener = HandshakeMachine(role: .listener, local: listenerNode, cluster: "fuzz", secret: secret)
    let hello = dialer.start(nonce: [UInt8](repeating: 1, count: 32))
    var transcript = [hello]
    if case .send(let challenge) = listener.received(hello, listenerNonce: [UInt8](repeating: 2, count: 32)) {
        transcript.append(challenge)
        switch dialer.received(challenge, listenerNonce: []) {
        case .send(let auth), .established(_, let auth?): transcript.append(auth)
        default: break
        }
    }
    put(.handshake, "transcript", frame(transcript))
    put(.handshake, "refused", frame([.refused(reason: "wrong cluster")]))
    let argument = (try? BinaryEncoder().encode(model)) ?? []
    let call = WireEnvelope.call(CallEnvelope(
        callID: 99, timeoutMillis: 5_000, target: ActorID(type: "OrderActor", key: "o-1", node: listenerNode),
        method: "$s4Shop10OrderActorC5placeyyYaKFTE", genericSubstitutions: ["Si"], arguments: [argument, []],
        trace: ["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]))
    let replyForms: [WireEnvelope] = [
        .reply(ReplyEnvelope(callID: 99, result: .value(argument))), .reply(ReplyEnvelope(callID: 100, result: .void)),
        .reply(ReplyEnvelope(callID: 101, result: .error(code: "transient", type: "ActorSystemError", message: "membership changed"))),
        .reply(ReplyEnvelope(callID: 102, result: .typedError(
            code: "user:shop-decline", type: "TroupeShop.ShopDecline", message: "out of stock", mangledName: "10TroupeShop0B7DeclineV", payload: [12, 0, 0, 0]
        ))),
        .goodbye,
    ]
    put(.wire, "call", frame([call]))
    put(.wire, "replies", frame(replyForms))
    put(.wire, "session", frame(transcript + [call] + replyForms))
    put(.binary, "model", argument)
    put(.binary, "sparse-model", (try? BinaryEncoder().encode(FuzzModel(name: "", count: 0, small: nil, ratio: nil, tags: [], nested: nil, flag: false))) ?? [])

    // The bus's stored form, with and without its optional fields.
    let full = BusMessage(id: "m-1", topic: "orders", tag: "created", keys: ["o-1", "u-1"], properties: ["p": "v", "trace": "t"],
                          body: Array(#"{"order":"o-1"}"#.utf8), shardingKey: "u-1", queue: 3, bornAtMS: 1_700_000_000_000, reconsumeTimes: 2,
                          producerGroup: "shop", originalTopic: "orders-retry")
    put(.bus, "full", BusMessageCodec.encode(full))
    put(.bus, "bare", BusMessageCodec.encode(BusMessage(id: "m-2", topic: "t", body: [], bornAtMS: 0)))

    // The gateway's request bodies.
    put(.body, "login", Array(#"{"username":"alice","password":"secret"}"#.utf8))
    put(.body, "order", Array(#"{"sku":"sku-1","quantity":2}"#.utf8))
    if let json = try? JSONEncoder().encode(model) { put(.body, "model", [UInt8](json)) }
    put(.body, "stored-response", Array(#"{"status":201,"contentType":"application/json","body":[123,125]}"#.utf8))

    print("wrote \(written) seeds into \(directory)")
    return 0
}

/// A reply as a RESP3 server writes it (the client never encodes replies, so the seeds do it here).
func resp(_ value: RESPValue) -> [UInt8] {
    func line(_ prefix: String, _ text: String) -> [UInt8] { Array("\(prefix)\(text)\r\n".utf8) }
    func blob(_ prefix: String, _ bytes: [UInt8]) -> [UInt8] { line(prefix, String(bytes.count)) + bytes + Array("\r\n".utf8) }
    func pairs(_ list: [RESPPair]) -> [UInt8] { list.flatMap { resp($0.key) + resp($0.value) } }
    switch value {
    case .simpleString(let text): return line("+", String(buffer: text))
    case .simpleError(let text): return line("-", String(buffer: text))
    case .blobString(let bytes): return blob("$", Array(bytes.readableBytesView))
    case .blobError(let bytes): return blob("!", Array(bytes.readableBytesView))
    case .verbatimString(let format, let bytes): return blob("=", Array("\(format):".utf8) + Array(bytes.readableBytesView))
    case .integer(let number): return line(":", String(number))
    case .double(let number): return line(",", number.isInfinite ? (number > 0 ? "inf" : "-inf") : number.isNaN ? "nan" : String(number))
    case .boolean(let flag): return line("#", flag ? "t" : "f")
    case .null: return line("_", "")
    case .bigNumber(let digits): return line("(", digits)
    case .array(let items): return line("*", String(items.count)) + items.flatMap(resp)
    case .set(let items): return line("~", String(items.count)) + items.flatMap(resp)
    case .map(let list): return line("%", String(list.count)) + pairs(list)
    case .attribute(let list, let described): return line("|", String(list.count)) + pairs(list) + resp(described)
    case .push(let items): return line(">", String(items.count)) + items.flatMap(resp)
    }
}
