import Foundation
import TroupeTLS

/// A development CA in a fresh temporary directory, issuing certificates for loopback servers and clients.
public struct TestCertificates: Sendable {
    public let authority: DevelopmentCertificateAuthority
    public var directory: URL { authority.directory }
    /// The CA certificate's path (what servers and clients trust).
    public var ca: String { authority.certificatePath }

    public init() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-certs-\(UInt64.random(in: 0 ... .max))")
        authority = try DevelopmentCertificateAuthority.create(in: directory)
    }

    /// Issues `name` for `hosts` and returns settings with it as identity and this CA as trust root.
    public func issue(_ name: String, hosts: [String] = ["127.0.0.1", "localhost"], revoked: [String] = []) throws -> TLSSettings {
        let issued = try authority.issue(name: name, hosts: hosts)
        return TLSSettings(certificate: issued.certificate, privateKey: issued.privateKey, ca: ca, revokedSerials: revoked)
    }

    /// The serial of an issued certificate file.
    public static func serial(of settings: TLSSettings) throws -> String {
        try TLSSettings.serial(ofCertificateFile: settings.certificate ?? "")
    }
}
