import Crypto
import Foundation
import Synchronization
import TroupeBSON
import TroupeCore

/// SCRAM-SHA-256 (RFC 7677) over `saslStart` / `saslContinue`, with SASLprep of the password and a cache
/// of salted passwords so a pool does not redo PBKDF2 per connection.
enum SCRAM {
    static let saltedCache = Guarded<[String: [UInt8]]>([:])

    static func authenticate(_ connection: MongoConnection, credential: MongoCredential, timeout: Duration) async throws(MongoError) {
        if let mechanisms = connection.hello["saslSupportedMechs"]?.arrayValue?.compactMap(\.stringValue),
            !mechanisms.contains("SCRAM-SHA-256") {
            throw MongoError(.authenticationFailed, "user \(credential.username) cannot use SCRAM-SHA-256 (server offers \(mechanisms))")
        }
        let password = try saslPrep(credential.password)
        var conversation = SCRAMConversation(username: credential.username, password: password, nonce: randomNonce())
        func fail(_ error: MongoError) -> MongoError {
            MongoError(.authenticationFailed, "SCRAM-SHA-256 authentication of \(credential.username) on \(credential.source) failed: \(error.message)",
                       code: error.code, codeName: error.codeName, underlying: error)
        }
        do throws(MongoError) {
            let start = try await connection.command([
                "saslStart": 1, "mechanism": "SCRAM-SHA-256",
                "payload": .binary(BSONBinary(data: Array(conversation.clientFirst.utf8))),
                "options": ["skipEmptyExchange": true],
            ], database: credential.source, timeout: timeout)
            guard let conversationID = start["conversationId"], let serverFirst = start["payload"]?.binaryValue?.data else {
                throw MongoError(.protocolViolation, "saslStart reply without conversationId or payload")
            }
            let clientFinal = try conversation.receiveServerFirst(String(decoding: serverFirst, as: UTF8.self))
            let next = try await connection.command([
                "saslContinue": 1, "conversationId": conversationID,
                "payload": .binary(BSONBinary(data: Array(clientFinal.utf8))),
            ], database: credential.source, timeout: timeout)
            guard let serverFinal = next["payload"]?.binaryValue?.data else { throw MongoError(.protocolViolation, "saslContinue reply without payload") }
            try conversation.receiveServerFinal(String(decoding: serverFinal, as: UTF8.self))
            var done = next["done"]?.boolValue ?? false
            var rounds = 0
            while !done {
                rounds += 1
                guard rounds < 3 else { throw MongoError(.protocolViolation, "SCRAM conversation did not finish") }
                let more = try await connection.command([
                    "saslContinue": 1, "conversationId": conversationID, "payload": .binary(BSONBinary(data: [])),
                ], database: credential.source, timeout: timeout)
                done = more["done"]?.boolValue ?? false
            }
        } catch {
            throw fail(error)
        }
    }

    static func randomNonce() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<24).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return Data(bytes).base64EncodedString()
    }

    /// SASLprep (RFC 4013): map non-ASCII spaces to space, drop characters mapped to nothing, NFKC,
    /// then refuse prohibited characters.
    static func saslPrep(_ text: String) throws(MongoError) -> String {
        if text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return text }
        var mapped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            let v = scalar.value
            if [0x00A0, 0x1680, 0x202F, 0x205F, 0x3000].contains(v) || (0x2000...0x200B).contains(v) {
                mapped.append(" ")
            } else if [0x00AD, 0x034F, 0x1806, 0x180B, 0x180C, 0x180D, 0x200C, 0x200D, 0x2060, 0xFEFF].contains(v) || (0xFE00...0xFE0F).contains(v) {
                continue
            } else {
                mapped.append(scalar)
            }
        }
        let normalized = String(mapped).precomposedStringWithCompatibilityMapping
        for scalar in normalized.unicodeScalars {
            let v = scalar.value
            let prohibited = v < 0x20 || v == 0x7F || (0x80...0x9F).contains(v)
                || (0xE000...0xF8FF).contains(v) || (0xF0000...0xFFFFD).contains(v) || (0x100000...0x10FFFD).contains(v)
                || (0xFDD0...0xFDEF).contains(v) || (v & 0xFFFE) == 0xFFFE || (0xD800...0xDFFF).contains(v)
                || (0xFFF9...0xFFFD).contains(v) || (0x2FF0...0x2FFB).contains(v) || [0x0340, 0x0341, 0x200E, 0x200F].contains(v)
                || (0x202A...0x202E).contains(v) || (0x206A...0x206F).contains(v) || v == 0xE0001 || (0xE0020...0xE007F).contains(v)
            if prohibited {
                throw MongoError(.authenticationFailed, "the password contains a character SASLprep prohibits (U+\(String(v, radix: 16, uppercase: true)))")
            }
        }
        return normalized
    }
}

/// The client side of one SCRAM-SHA-256 exchange, without I/O.
struct SCRAMConversation {
    let username: String
    let password: String
    let nonce: String
    private(set) var expectedServerSignature: [UInt8] = []

    init(username: String, password: String, nonce: String) {
        self.username = username
        self.password = password
        self.nonce = nonce
    }

    private var escapedUsername: String {
        username.replacingOccurrences(of: "=", with: "=3D").replacingOccurrences(of: ",", with: "=2C")
    }

    var clientFirstBare: String { "n=\(escapedUsername),r=\(nonce)" }
    var clientFirst: String { "n,," + clientFirstBare }

    mutating func receiveServerFirst(_ message: String) throws(MongoError) -> String {
        var fields = [Character: String]()
        for part in message.split(separator: ",") where part.count >= 2 {
            fields[part.first!] = String(part.dropFirst(2))
        }
        guard let serverNonce = fields["r"], let saltText = fields["s"], let iterationText = fields["i"],
            let iterations = Int(iterationText), let salt = Data(base64Encoded: saltText)
        else { throw MongoError(.protocolViolation, "malformed server-first-message") }
        guard serverNonce.hasPrefix(nonce), serverNonce.count > nonce.count else {
            throw MongoError(.authenticationFailed, "server nonce does not extend the client nonce")
        }
        guard iterations >= 4096 else { throw MongoError(.authenticationFailed, "iteration count \(iterations) below 4096") }
        let cacheKey = "\(password)\u{0}\(saltText)\u{0}\(iterations)"
        let salted: [UInt8]
        if let cached = SCRAM.saltedCache.withLock({ $0[cacheKey] }) {
            salted = cached
        } else {
            salted = Self.pbkdf2(password: Array(password.utf8), salt: [UInt8](salt), iterations: iterations)
            SCRAM.saltedCache.withLock { $0[cacheKey] = salted }
        }
        let clientKey = Self.hmac(salted, Array("Client Key".utf8))
        let storedKey = Array(SHA256.hash(data: clientKey))
        let withoutProof = "c=biws,r=\(serverNonce)"
        let authMessage = Array("\(clientFirstBare),\(message),\(withoutProof)".utf8)
        let signature = Self.hmac(storedKey, authMessage)
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        let serverKey = Self.hmac(salted, Array("Server Key".utf8))
        expectedServerSignature = Self.hmac(serverKey, authMessage)
        return "\(withoutProof),p=\(Data(proof).base64EncodedString())"
    }

    func receiveServerFinal(_ message: String) throws(MongoError) {
        if message.hasPrefix("e=") { throw MongoError(.authenticationFailed, "server refused: \(message.dropFirst(2))") }
        guard message.hasPrefix("v="), let signature = Data(base64Encoded: String(message.dropFirst(2).prefix { $0 != "," })) else {
            throw MongoError(.protocolViolation, "malformed server-final-message")
        }
        guard [UInt8](signature) == expectedServerSignature else {
            throw MongoError(.authenticationFailed, "the server's signature is wrong (not the server we think it is)")
        }
    }

    static func hmac(_ key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
    }

    /// PBKDF2-HMAC-SHA-256 with one output block (32 bytes = the key length SCRAM-SHA-256 needs).
    static func pbkdf2(password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        let key = SymmetricKey(data: password)
        var u = Array(HMAC<SHA256>.authenticationCode(for: salt + [0, 0, 0, 1], using: key))
        var result = u
        for _ in 1..<iterations {
            u = Array(HMAC<SHA256>.authenticationCode(for: u, using: key))
            for i in 0..<result.count { result[i] ^= u[i] }
        }
        return result
    }
}
