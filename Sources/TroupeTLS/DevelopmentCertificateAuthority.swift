import Crypto
public import Foundation
import SwiftASN1
public import X509

/// A certificate authority in a directory, for development and tests: `ca.pem` and `ca-key.pem`, and
/// certificates it issues as `NAME.pem` / `NAME-key.pem` (keys readable by the owner only). Keys are P-256.
///
/// Issued certificates carry both server and client usage, the given host names and IP addresses as
/// subject alternative names, and the random serial that ``TLSSettings/revokedSerials`` refers to.
/// Production clusters should issue node certificates from their own PKI; the files have the same shape.
public struct DevelopmentCertificateAuthority: Sendable {
    /// The directory holding `ca.pem`, `ca-key.pem` and the issued files.
    public let directory: URL
    /// The CA's certificate.
    public let certificate: Certificate
    private let key: P256.Signing.PrivateKey

    /// The path of `ca.pem`.
    public var certificatePath: String { directory.appendingPathComponent("ca.pem").path }
    var keyPath: String { directory.appendingPathComponent("ca-key.pem").path }

    /// Creates a new CA in `directory` (created if missing).
    /// - Throws: ``TLSError`` if a CA is already there (never overwritten) or the files cannot be written.
    public static func create(in directory: URL, name: String = "Troupe development CA", validityDays: Int = 3650) throws -> Self {
        let certificatePath = directory.appendingPathComponent("ca.pem").path
        guard !FileManager.default.fileExists(atPath: certificatePath) else {
            throw TLSError("\(certificatePath) exists already; remove it or choose another directory")
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let key = P256.Signing.PrivateKey()
            let subject = try DistinguishedName {
                OrganizationName("Troupe")
                CommonName(name)
            }
            let publicKey = Certificate.PublicKey(key.publicKey)
            let now = Date()
            let certificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: publicKey,
                notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(validityDays) * 86_400),
                issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(hash: publicKey)
                },
                issuerPrivateKey: .init(key)
            )
            let authority = Self(directory: directory, certificate: certificate, key: key)
            try write(key.pemRepresentation, to: authority.keyPath, secret: true)
            try write(certificate.serializeAsPEM().pemString + "\n", to: certificatePath, secret: false)
            return authority
        } catch let error as TLSError {
            throw error
        } catch {
            throw TLSError("cannot create a CA in \(directory.path)", underlying: error)
        }
    }

    /// Loads the CA in `directory`.
    public init(directory: URL) throws {
        let certificatePath = directory.appendingPathComponent("ca.pem").path
        let keyPath = directory.appendingPathComponent("ca-key.pem").path
        guard FileManager.default.fileExists(atPath: certificatePath), FileManager.default.fileExists(atPath: keyPath) else {
            throw TLSError("no CA in \(directory.path) (ca.pem and ca-key.pem); run `troupe certs init` first")
        }
        do {
            let certificate = try Certificate(pemEncoded: String(contentsOfFile: certificatePath, encoding: .utf8))
            let key = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: keyPath, encoding: .utf8))
            self.init(directory: directory, certificate: certificate, key: key)
        } catch {
            throw TLSError("the CA in \(directory.path) does not load (ca.pem and ca-key.pem must be PEM, the key P-256)", underlying: error)
        }
    }

    private init(directory: URL, certificate: Certificate, key: P256.Signing.PrivateKey) {
        self.directory = directory
        self.certificate = certificate
        self.key = key
    }

    /// Where an issued certificate and its key are written.
    public struct Issued: Sendable {
        /// The path of the issued certificate (PEM).
        public var certificate: String
        /// The path of its private key (PEM, owner-readable only).
        public var privateKey: String
        /// The serial, in ``TLSSettings/revokedSerials`` form.
        public var serial: String
    }

    /// Issues a certificate for `name` valid for `hosts` (DNS names and IP addresses) and writes it next to the CA.
    /// - Parameters:
    ///   - name: the file name (`NAME.pem`, `NAME-key.pem`) and the certificate's common name.
    ///   - hosts: DNS names and IP addresses the certificate names.
    ///   - validityDays: how long it is valid, from `validFrom`.
    ///   - validFrom: the start of the validity window (default: five minutes ago).
    ///   - validUntil: its end (default: `validityDays` after the start).
    public func issue(name: String, hosts: [String], validityDays: Int = 825,
                      validFrom: Date? = nil, validUntil: Date? = nil) throws -> Issued {
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw TLSError("a certificate name uses letters, digits, '-', '_' and '.' only (got \"\(name)\")")
        }
        let certificatePath = directory.appendingPathComponent("\(name).pem").path
        let keyPath = directory.appendingPathComponent("\(name)-key.pem").path
        do {
            let leafKey = P256.Signing.PrivateKey()
            let publicKey = Certificate.PublicKey(leafKey.publicKey)
            let names = try hosts.map(Self.generalName)
            let subject = try DistinguishedName {
                OrganizationName("Troupe")
                CommonName(name)
            }
            let now = Date()
            let serial = Certificate.SerialNumber()
            let leaf = try Certificate(
                version: .v3, serialNumber: serial, publicKey: publicKey,
                notValidBefore: validFrom ?? now.addingTimeInterval(-300),
                notValidAfter: validUntil ?? now.addingTimeInterval(Double(validityDays) * 86_400),
                issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                    try ExtendedKeyUsage([.serverAuth, .clientAuth])
                    SubjectKeyIdentifier(hash: publicKey)
                    AuthorityKeyIdentifier(keyIdentifier: try certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
                    if !names.isEmpty { SubjectAlternativeNames(names) }
                },
                issuerPrivateKey: .init(key)
            )
            try Self.write(leafKey.pemRepresentation, to: keyPath, secret: true)
            try Self.write(leaf.serializeAsPEM().pemString + "\n", to: certificatePath, secret: false)
            let hex = serial.bytes.map { String(format: "%02x", $0) }.joined()
            return Issued(certificate: certificatePath, privateKey: keyPath, serial: TLSSettings.normalisedSerial(hex))
        } catch let error as TLSError {
            throw error
        } catch {
            throw TLSError("cannot issue a certificate for \(name)", underlying: error)
        }
    }

    static func generalName(_ host: String) throws -> GeneralName {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v4) { ArraySlice($0) }))
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v6) { ArraySlice($0) }))
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-.*".contains($0)) }) else {
            throw TLSError("\"\(host)\" is neither a host name nor an IP address")
        }
        return .dnsName(host)
    }

    private static func write(_ text: String, to path: String, secret: Bool) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8),
                                             attributes: [.posixPermissions: secret ? 0o600 : 0o644]) else {
            throw TLSError("cannot write \(path)")
        }
    }
}
