public import Foundation
public import TroupeTLS

/// A development CA in a fresh temporary directory, issuing certificates for loopback servers and clients.
/// The directory is removed when the last reference goes.
public final class TestCertificates: Sendable {
    public let authority: DevelopmentCertificateAuthority
    public var directory: URL { authority.directory }
    /// The CA certificate's path (what servers and clients trust).
    public var ca: String { authority.certificatePath }

    public init() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-certs-\(UInt64.random(in: 0 ... .max))")
        authority = try DevelopmentCertificateAuthority.create(in: directory)
    }

    deinit { try? FileManager.default.removeItem(at: authority.directory) }

    /// Issues `name` for `hosts` and returns settings with it as identity and this CA as trust root.
    public func issue(_ name: String, hosts: [String] = ["127.0.0.1", "localhost"], revoked: [String] = []) throws -> TLSSettings {
        let issued = try authority.issue(name: name, hosts: hosts)
        return TLSSettings(certificate: issued.certificate, privateKey: issued.privateKey, ca: ca, revokedSerials: revoked)
    }

    /// Issues `name` and writes its certificate and key into one PEM file (MongoDB's `tlsCertificateKeyFile`).
    public func issueCombined(_ name: String, hosts: [String] = []) throws -> String {
        let settings = try issue(name, hosts: hosts)
        let combined = directory.appendingPathComponent("\(name)-combined.pem")
        let text = try String(contentsOfFile: settings.certificate ?? "", encoding: .utf8) + String(contentsOfFile: settings.privateKey ?? "", encoding: .utf8)
        guard FileManager.default.createFile(atPath: combined.path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        return combined.path
    }

    /// The serial of an issued certificate file.
    public static func serial(of settings: TLSSettings) throws -> String {
        try TLSSettings.serial(ofCertificateFile: settings.certificate ?? "")
    }
}

extension ServerProcess {
    /// A `redis-server` that speaks only TLS (no plaintext port), with a certificate from `certificates` and
    /// client certificates required (`--tls-auth-clients yes`).
    public static func redisTLS(certificates: TestCertificates, host: String = "127.0.0.1") async throws -> ServerProcess {
        let server = try certificates.issue("redis-server", hosts: [host, "localhost"])
        return try await launch("redis-server", installHint: "run scripts/test, or apt-get install redis-server", host: host) { port, directory in
            ["--port", "0", "--tls-port", String(port), "--bind", host,
             "--tls-cert-file", server.certificate ?? "", "--tls-key-file", server.privateKey ?? "", "--tls-ca-cert-file", certificates.ca,
             "--tls-auth-clients", "yes", "--save", "", "--appendonly", "no", "--dir", directory.path]
        }
    }

    /// `rediss://HOST:PORT`
    public var redissURL: String { "rediss://\(host):\(port)" }
}
