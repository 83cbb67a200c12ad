import Foundation
import TroupeTLS

extension ServerProcess {
    /// Where `secantusd-py` is: on `PATH`, or in the project's `.venv-mongo` (which `scripts/test` creates).
    public static func secantusExecutable(filePath: String = #filePath) -> String? {
        TestEnv.venvExecutable("secantusd-py", filePath: filePath)
    }

    /// Whether MongoDB suites should run: SecantusDB is installed, or `CI` is set (a missing server then fails).
    public static var shouldRunMongo: Bool { secantusExecutable() != nil || TestEnv.isCI }

    /// SecantusDB (a MongoDB-compatible server) on a free port, data in the server's directory (so a restart
    /// keeps it), test commands (`configureFailPoint`) enabled; `auth` enforces SCRAM-SHA-256.
    /// With `tls`, the server speaks only TLS with a certificate of that CA and requires client certificates.
    public static func mongo(host: String = "127.0.0.1", auth: Bool = false, standalone: Bool = false,
                             tls: TestCertificates? = nil) async throws -> ServerProcess {
        let identity = try tls?.issue("mongo-server", hosts: [host, "localhost"])
        return try await launch("secantusd-py", installHint: "run scripts/test (it pip-installs secantusdb into .venv-mongo)", host: host,
                         executable: secantusExecutable(), startTimeout: .seconds(60)) { port, directory in
            let config = directory.appendingPathComponent("empty.toml")
            // An unwritable directory fails the launch itself (the server finds no config file).
            _ = FileManager.default.createFile(atPath: config.path, contents: Data())
            var arguments = ["--config", config.path, "--host", host, "--port", String(port),
                             "--storage-path", directory.appendingPathComponent("data").path, "--cache-size", "256M",
                             "--enable-test-commands", "--log-level", "WARNING"]
            if auth { arguments.append("--auth") }
            if standalone { arguments.append("--standalone") }
            if let tls, let identity {
                arguments += ["--tls-cert-file", identity.certificate ?? "", "--tls-key-file", identity.privateKey ?? "",
                              "--tls-ca-file", tls.ca, "--tls-require-client-cert"]
            }
            return arguments
        }
    }

    /// `mongodb://HOST:PORT/`
    public var mongoURL: String { "mongodb://\(host):\(port)/" }
}
