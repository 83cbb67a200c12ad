import ArgumentParser
import Foundation
import TroupeTLS

/// `troupe certs init|issue`: a development CA and node certificates for a TLS cluster.
struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Make a development CA and certificates for nodes, gateways and servers (PEM files).",
        discussion: """
        troupe certs init --dir certs            # certs/ca.pem, certs/ca-key.pem
        troupe certs issue node-1 --dir certs --host 127.0.0.1 --host localhost
        Point a node file's "tls" section at the files:
        "tls": {"certificate": "certs/node-1.pem", "privateKey": "certs/node-1-key.pem", "ca": "certs/ca.pem"}
        Keep ca-key.pem off the nodes. For production, issue node certificates from your own PKI.
        """,
        subcommands: [Init.self, Issue.self]
    )

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a CA (ca.pem and ca-key.pem) in a directory.")
        @Option(help: "Where the CA's files go (created if missing; an existing CA is never overwritten).")
        var dir = "certs"
        @Option(help: "The CA's common name.")
        var name = "Troupe development CA"
        @Option(help: "Days the CA is valid.")
        var days = 3650

        func run() throws {
            guard days >= 1 else { throw ValidationError("--days must be at least 1") }
            let authority = try DevelopmentCertificateAuthority.create(in: URL(fileURLWithPath: dir), name: name, validityDays: days)
            print("created \(authority.certificatePath) and its key (ca-key.pem, readable by you only)")
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a certificate (server and client use) signed by the CA in --dir: NAME.pem and NAME-key.pem.")
        @Argument(help: "The certificate's name (file name and common name), e.g. node-1.")
        var name: String
        @Option(help: "Where the CA is; the certificate is written there too.")
        var dir = "certs"
        @Option(name: .customLong("host"), help: "A DNS name or IP address the certificate is valid for (repeatable).")
        var hosts: [String] = []
        @Option(help: "Days the certificate is valid.")
        var days = 825

        func run() throws {
            guard days >= 1 else { throw ValidationError("--days must be at least 1") }
            let authority = try DevelopmentCertificateAuthority(directory: URL(fileURLWithPath: dir))
            let issued = try authority.issue(name: name, hosts: hosts.isEmpty ? ["127.0.0.1", "localhost"] : hosts, validityDays: days)
            print("issued \(issued.certificate) and \(issued.privateKey) (serial \(issued.serial))")
        }
    }
}
