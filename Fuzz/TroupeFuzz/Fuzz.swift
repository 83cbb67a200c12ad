// libFuzzer entry points for every decoder that reads bytes from outside the process. One binary; the
// target is chosen by TROUPE_FUZZ_TARGET (scripts/fuzz runs each in turn). Each target also checks the
// decoder's contracts where it has one (a split input decodes as the whole does; what decodes re-encodes),
// and traps when a contract breaks, so the fuzzer reports it like a crash.
import Foundation
import HTTPTypes
import NIOCore
import Troupe
import TroupeBSON
@testable import TroupeActors
@testable import TroupeBus
import TroupeCore
@testable import TroupeGateway
@testable import TroupeMongo
import TroupeRESP

/// A model for the Codable decoders (nested, optional, collections, numbers of every width).
struct FuzzModel: Codable, Equatable {
    var name: String
    var count: Int64
    var small: UInt8?
    var ratio: Double?
    var tags: [String]
    var nested: [String: [Int32]]?
    var flag: Bool
}

enum FuzzTarget: String, CaseIterable {
    case bson, bsonCodable = "bson-codable", extendedJSON = "extended-json", resp, wire, handshake, binary, http1, opmsg, bus, json, body, config

    static let selected: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["TROUPE_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("set TROUPE_FUZZ_TARGET to one of: \(allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            exit(2)
        }
        return target
    }()
}

/// Stops the run with a message: the fuzzer saves the input as a crash.
func contract(_ holds: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !holds() { fatalError("contract broken: \(message())") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = start.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? []
    switch FuzzTarget.selected {
    case .bson: fuzzBSON(bytes)
    case .bsonCodable: _ = try? BSONDecoder().decode(FuzzModel.self, from: BSONDocument(bytes: bytes))
    case .extendedJSON: _ = try? BSONDocument(extendedJSON: String(decoding: bytes, as: UTF8.self))
    case .resp: fuzzRESP(bytes)
    case .wire: fuzzWire(bytes)
    case .handshake: fuzzHandshake(bytes)
    case .binary: fuzzBinary(bytes)
    case .http1: fuzzHTTP1(bytes)
    case .opmsg: _ = try? MongoMessage.parse(ByteBuffer(bytes: bytes), limits: BSONLimits(maxDepth: 64, maxDocumentSize: 1 << 20))
    case .bus: _ = try? BusMessageCodec.decode(bytes)
    case .json: _ = JSONDuplicateKeys.first(in: bytes)
    case .body: fuzzBody(bytes)
    case .config: fuzzConfiguration(bytes)
    }
    return 0
}

/// What decodes re-encodes to a document that decodes to the same value.
func fuzzBSON(_ bytes: [UInt8]) {
    guard let document = try? BSONDocument(bytes: bytes) else { return }
    let again = try? BSONDocument(bytes: document.bytes)
    contract(again != nil, "a decoded document's own bytes do not decode")
}

/// The incremental decoder's contract: every prefix of the input is either incomplete (nil, nothing
/// consumed) or answers what the whole input answers.
func fuzzRESP(_ bytes: [UInt8]) {
    var whole = ByteBuffer(bytes: bytes)
    let result = Result { try RESPDecoder.parse(&whole) }
    let consumed = bytes.count - whole.readableBytes
    // Every split position for short inputs; for longer ones the ends, 32 evenly spaced positions and 16
    // that depend on the input (every position is quadratic, and the campaign needs millions of runs).
    let seed = bytes.reduce(UInt64(1469598103934665603)) { ($0 ^ UInt64($1)) &* 1099511628211 }
    let count = bytes.count
    var cuts = Set<Int>([0, 1, count / 3, count / 2, count - 2, count - 1])
    if count <= 48 {
        cuts.formUnion(0..<count)
    } else {
        for step in 0..<32 { cuts.insert(step * count / 32) }
        for shift in 0..<16 { cuts.insert(Int(((seed >> UInt64(shift * 4)) &* 2654435761) % UInt64(count))) }
    }
    for cut in cuts where cut >= 0 && cut < bytes.count {
        var prefix = ByteBuffer(bytes: bytes[0..<cut])
        switch (Result { try RESPDecoder.parse(&prefix) }, result) {
        case (.success(nil), _):
            contract(prefix.readableBytes == cut, "an incomplete prefix of \(cut) bytes consumed input")
        case (.success(let value?), .success(let expected)):
            // NaN is not equal to itself: compare such values by their description (both unwrapped: an
            // Optional's description differs from its value's, which once made every NaN look like a break).
            contract(value == expected || expected.map { String(reflecting: $0) } == String(reflecting: value),
                     "a prefix of \(cut) bytes decoded another value than the whole")
            contract(cut >= consumed, "a prefix of \(cut) bytes decoded a value the whole needed \(consumed) bytes for")
        case (.success, .failure):
            fatalError("contract broken: a prefix of \(cut) bytes decoded a value, the whole input failed")
        case (.failure, .success(let expected)):
            contract(expected == nil && false, "a prefix of \(cut) bytes failed, the whole input decoded")
        case (.failure, .failure):
            break
        }
    }
}

func fuzzWire(_ bytes: [UInt8]) {
    var decoder = FrameDecoder(limit: FrameLimit(authenticated: 1 << 16))
    var buffer = ByteBuffer(bytes: bytes)
    while buffer.readableBytes > 0 {
        guard let envelope = (try? decoder.decode(buffer: &buffer)) ?? nil else { break }
        if case .call(let call) = envelope {
            for argument in call.arguments.prefix(4) { _ = try? BinaryDecoder().decode(FuzzModel.self, from: argument) }
        }
    }
    var body = ByteBuffer(bytes: bytes)
    _ = try? WireEnvelope.decode(body: &body)
}

/// A listener fed whatever envelopes the bytes decode to: it must refuse or go on, never trap.
func fuzzHandshake(_ bytes: [UInt8]) {
    let local = NodeID(name: "node-1", host: "127.0.0.1", port: 7000, incarnation: 1)
    var listener = HandshakeMachine(role: .listener, local: local, cluster: "fuzz", secret: Array("fuzz-cluster-secret-0123456789".utf8))
    var dialer = HandshakeMachine(role: .dialer, local: local, cluster: "fuzz", secret: Array("fuzz-cluster-secret-0123456789".utf8))
    _ = dialer.start(nonce: [UInt8](repeating: 1, count: 32))
    var decoder = FrameDecoder(limit: FrameLimit(authenticated: 1 << 16))
    var buffer = ByteBuffer(bytes: bytes)
    while buffer.readableBytes > 0, let envelope = (try? decoder.decode(buffer: &buffer)) ?? nil {
        _ = listener.received(envelope, listenerNonce: [UInt8](repeating: 2, count: 32))
        _ = dialer.received(envelope, listenerNonce: [UInt8](repeating: 3, count: 32))
    }
}

/// What decodes re-encodes and decodes to the same value.
func fuzzBinary(_ bytes: [UInt8]) {
    let limits = BinaryDecodingLimits(maxDepth: 32, maxBytes: 1 << 20)
    guard let model = try? BinaryDecoder(limits: limits).decode(FuzzModel.self, from: bytes) else { return }
    guard let encoded = try? BinaryEncoder().encode(model) else { fatalError("contract broken: a decoded value does not encode") }
    let again = try? BinaryDecoder(limits: limits).decode(FuzzModel.self, from: encoded)
    contract(again == model || (model.ratio.map { $0.isNaN } ?? false), "a value does not survive encode → decode")
}

/// The gateway's JSON request bodies (the shapes of the login and order bodies, and a nested model) and
/// the idempotent responses it stores in Redis: a value or a 400 (a refused entry), never a trap.
func fuzzBody(_ bytes: [UInt8]) {
    struct Login: Decodable { var username: String; var password: String }
    struct PlaceOrder: Decodable { var sku: String; var quantity: Int }
    let buffer = ByteBuffer(bytes: bytes)
    func refusedAs400<T: Decodable>(_ type: T.Type) {
        let result = Result { () throws(GatewayError) -> T in try Gateway.decodeBody(type, from: buffer) }
        if case .failure(let error) = result { contract(error.status == .badRequest, "a body was answered \(error.status.code), not 400") }
    }
    refusedAs400(Login.self)
    refusedAs400(PlaceOrder.self)
    refusedAs400(FuzzModel.self)
    _ = try? StoredResponse.decode(bytes)
}

/// A node configuration file: decoded, validated for both roles and turned into the runtime's settings,
/// answering every input with a value or an error.
func fuzzConfiguration(_ bytes: [UInt8]) {
    guard let configuration = try? JSONDecoder().decode(NodeConfiguration.self, from: Data(bytes)) else { return }
    let environment = ["TROUPE_SECRET": "fuzz-cluster-secret-0123456789", "TROUPE_JWT_SECRET": "fuzz-token-secret-0123456789abcdef0123"]
    for role in [NodeConfiguration.Role.node, .gateway] { _ = try? configuration.validate(role: role, environment: environment) }
}

/// The scanner answers every input, and a request it accepts is accepted the same from a longer buffer.
func fuzzHTTP1(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        _ = HTTP1Scanner.scanRequest(raw)
        _ = HTTP1Scanner.scanResponse(raw, toHEAD: false)
        _ = HTTP1Scanner.scanResponse(raw, toHEAD: true)
        var from = 0
        var body = ByteBufferAllocator().buffer(capacity: 0)
        _ = HTTP1Scanner.scanChunks(raw, from: &from, into: &body, limit: 1 << 16)
        contract(from <= raw.count, "the chunk scanner moved past the input")
    }
}

// SwiftPM links an executable's entry point as `<module>_main`; libFuzzer's own `main` is then not linked,
// so this one hands the command line to libFuzzer's driver with the entry point above.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("TroupeFuzz_main")
public func troupeFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    if let directory = ProcessInfo.processInfo.environment["TROUPE_FUZZ_WRITE_SEEDS"] {
        return writeSeeds(into: directory)
    }
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzz(data, size) }
}
