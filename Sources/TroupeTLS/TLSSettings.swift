import Foundation
public import NIOSSL

/// One side's TLS material and policy, as files on disk (PEM).
///
/// The same value configures a server (the listener of the cluster transport, the gateway's HTTPS) and a
/// client (a node dialing a peer, the Redis, MongoDB and etcd clients). A node usually has one identity:
/// a certificate issued by the cluster's CA (`troupe certs issue`) with both server and client usage, and
/// the CA as its trust root, so the same settings serve every link.
public struct TLSSettings: Sendable, Hashable, Codable {
    /// This side's certificate chain (PEM, leaf first). Required for servers and for mutual TLS.
    public var certificate: String?
    /// The private key of ``certificate`` (PEM, PKCS#8 or SEC1/PKCS#1).
    public var privateKey: String?
    /// The CA bundle that peers' certificates must chain to (PEM). `nil`: the system's roots.
    public var ca: String?
    /// Serial numbers (hex, any case, colons allowed) of certificates to refuse even though they chain to ``ca``.
    public var revokedSerials: [String]?
    /// Clients: check that the server's certificate names the host dialed (default `true`). The cluster
    /// transport never checks names: membership in the cluster CA is the identity there.
    public var verifyHostname: Bool?
    /// Clients: the name to send in SNI and to verify, when it differs from the host dialed.
    public var serverName: String?

    /// Settings of the given files (PEM paths) and checks; see each property.
    public init(certificate: String? = nil, privateKey: String? = nil, ca: String? = nil,
                revokedSerials: [String]? = nil, verifyHostname: Bool? = nil, serverName: String? = nil) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.ca = ca
        self.revokedSerials = revokedSerials
        self.verifyHostname = verifyHostname
        self.serverName = serverName
    }

    /// The revoked serials, normalised to lowercase hex without separators or leading zeros.
    public var revoked: Set<String> { Set((revokedSerials ?? []).map(Self.normalisedSerial)) }

    static func normalisedSerial(_ serial: String) -> String {
        let hex = serial.lowercased().filter { $0.isHexDigit }
        let trimmed = hex.drop { $0 == "0" }
        return trimmed.isEmpty ? "0" : String(trimmed)
    }

    /// The serial of `certificate` in the form of ``revoked``.
    public static func serial(of certificate: NIOSSLCertificate) -> String {
        normalisedSerial(certificate.serialNumber.map { String(format: "%02x", $0) }.joined())
    }

    /// The serial of the first certificate in the PEM file at `path`.
    public static func serial(ofCertificateFile path: String) throws -> String {
        serial(of: try loadChain(path)[0])
    }

    // MARK: - Contexts

    /// A server context. `requireClientCertificate` asks for and verifies a client certificate against ``ca``
    /// (mutual TLS); otherwise no client certificate is requested.
    /// - Throws: ``TLSError`` naming the file or setting to fix.
    public func makeServerContext(requireClientCertificate: Bool, minimumVersion: TLSVersion = .tlsv12,
                                  applicationProtocols: [String] = []) throws -> NIOSSLContext {
        guard let certificate, let privateKey else {
            throw TLSError("a TLS server needs both certificate and privateKey")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try Self.loadChain(certificate).map { .certificate($0) },
            privateKey: .privateKey(try Self.loadKey(privateKey))
        )
        configuration.minimumTLSVersion = minimumVersion
        configuration.applicationProtocols = applicationProtocols
        if requireClientCertificate {
            guard let ca else { throw TLSError("mutual TLS needs ca (the CA that issued the peers' certificates)") }
            configuration.trustRoots = .certificates(try Self.loadChain(ca))
            configuration.certificateVerification = .noHostnameVerification
            configuration.sendCANameList = true
        }
        return try Self.context(configuration, "server")
    }

    /// A client context: verifies the server against ``ca`` (or the system roots) and presents
    /// ``certificate`` when one is set (mutual TLS).
    public func makeClientContext(minimumVersion: TLSVersion = .tlsv12, verifyHostname: Bool? = nil,
                                  applicationProtocols: [String] = []) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = minimumVersion
        configuration.applicationProtocols = applicationProtocols
        if let ca { configuration.trustRoots = .certificates(try Self.loadChain(ca)) }
        configuration.certificateVerification = (verifyHostname ?? self.verifyHostname ?? true) ? .fullVerification : .noHostnameVerification
        switch (certificate, privateKey) {
        case let (certificate?, privateKey?):
            configuration.certificateChain = try Self.loadChain(certificate).map { .certificate($0) }
            configuration.privateKey = .privateKey(try Self.loadKey(privateKey))
        case (nil, nil):
            break
        default:
            throw TLSError("set both certificate and privateKey, or neither")
        }
        return try Self.context(configuration, "client")
    }

    /// The name to put in SNI for a connection to `host`: ``serverName``, else `host` unless it is an IP address.
    public func sniName(for host: String) -> String? {
        if let serverName { return serverName }
        return Self.isIPAddress(host) ? nil : host
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// Checks that every configured file exists and parses (start-up validation).
    public func validate() throws {
        if let certificate { _ = try Self.loadChain(certificate) }
        if let privateKey { _ = try Self.loadKey(privateKey) }
        if let ca { _ = try Self.loadChain(ca) }
        if (certificate == nil) != (privateKey == nil) { throw TLSError("set both certificate and privateKey, or neither") }
    }

    static func loadChain(_ path: String) throws -> [NIOSSLCertificate] {
        guard FileManager.default.isReadableFile(atPath: path) else { throw TLSError("cannot read the certificate file \(path)") }
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(path) } catch {
            throw TLSError("\(path) is not a PEM certificate file", underlying: error)
        }
        guard !chain.isEmpty else { throw TLSError("\(path) holds no certificate") }
        return chain
    }

    static func loadKey(_ path: String) throws -> NIOSSLPrivateKey {
        guard FileManager.default.isReadableFile(atPath: path) else { throw TLSError("cannot read the private key file \(path)") }
        do { return try NIOSSLPrivateKey(file: path, format: .pem) } catch {
            throw TLSError("\(path) is not a PEM private key", underlying: error)
        }
    }

    private static func context(_ configuration: TLSConfiguration, _ side: String) throws -> NIOSSLContext {
        do { return try NIOSSLContext(configuration: configuration) } catch {
            throw TLSError("cannot build the TLS \(side) context (does the private key match the certificate?)", underlying: error)
        }
    }
}
