import Foundation
import TroupeTLS

extension ServerProcess {
    /// A single-member etcd on a free client port (its peer port is found the same way), data in
    /// the process's temporary directory so that a restart keeps the data.
    /// With `tls`, clients must speak TLS and present a certificate of that CA (`--client-cert-auth`).
    public static func etcd(name: String = "n1", host: String = "127.0.0.1", extraArguments: [String] = [],
                            tls: TestCertificates? = nil) async throws -> ServerProcess {
        let peerPort = try await freePort()
        let scheme = tls == nil ? "http" : "https"
        var extraArguments = extraArguments
        if let tls {
            let identity = try tls.issue("etcd-\(name)", hosts: [host, "localhost"])
            extraArguments += ["--cert-file", identity.certificate ?? "", "--key-file", identity.privateKey ?? "",
                               "--trusted-ca-file", tls.ca, "--client-cert-auth"]
        }
        return try await launch("etcd", installHint: "run scripts/test, or apt-get install etcd-server etcd-client", host: host) { port, directory in
            [
                "--name", name, "--data-dir", directory.appendingPathComponent("data").path,
                "--listen-client-urls", "\(scheme)://\(host):\(port)", "--advertise-client-urls", "\(scheme)://\(host):\(port)",
                "--listen-peer-urls", "http://127.0.0.1:\(peerPort)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
                "--initial-cluster", "\(name)=http://127.0.0.1:\(peerPort)",
                "--logger=zap", "--log-outputs=\(directory.appendingPathComponent("etcd.log").path)",
            ] + extraArguments
        }
    }

    /// `HOST:PORT`
    public var endpoint: String { "\(host):\(port)" }
}

/// A 3-member etcd cluster on loopback.
public final class EtcdClusterFixture: Sendable {
    public let members: [ServerProcess]

    private init(members: [ServerProcess]) {
        self.members = members
    }

    public var endpoints: [String] { members.map(\.endpoint) }

    public static func start(size: Int = 3) async throws -> EtcdClusterFixture {
        var ports: [(client: Int, peer: Int)] = []
        for _ in 0..<size {
            ports.append((try await ServerProcess.freePort(), try await ServerProcess.freePort()))
        }
        let clientPorts = ports.map(\.client)
        let peerPorts = ports.map(\.peer)
        let cluster = (0..<size).map { "m\($0)=http://127.0.0.1:\(peerPorts[$0])" }.joined(separator: ",")
        let token = "troupe-\(UUID().uuidString.prefix(8))"
        // Members must start together: each waits for a quorum before it serves clients.
        let members = try await withThrowingTaskGroup(of: ServerProcess.self) { group in
            for index in 0..<size {
                group.addTask {
                    try await ServerProcess.launch(
                        "etcd", installHint: "run scripts/test, or apt-get install etcd-server etcd-client", port: clientPorts[index]
                    ) { port, directory in
                        [
                            "--name", "m\(index)", "--data-dir", directory.appendingPathComponent("data").path,
                            "--listen-client-urls", "http://127.0.0.1:\(port)", "--advertise-client-urls", "http://127.0.0.1:\(port)",
                            "--listen-peer-urls", "http://127.0.0.1:\(peerPorts[index])",
                            "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPorts[index])",
                            "--initial-cluster", cluster, "--initial-cluster-token", token, "--initial-cluster-state", "new",
                            "--logger=zap", "--log-outputs=\(directory.appendingPathComponent("etcd.log").path)",
                        ]
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        return EtcdClusterFixture(members: members.sorted { $0.port < $1.port })
    }

    public func shutdown() async {
        for member in members { await member.shutdown() }
    }
}
