import Testing
import TroupeEtcd
import TroupeTestSupport
import TroupeTLS

@Suite("etcd client over TLS (real etcd with --client-cert-auth)", .enabled(if: etcdAvailable, "\(etcdMissing)"), .serialized)
struct EtcdTLSTests {
    @Test("https:// endpoints with a client certificate of the cluster CA: KV and leases work")
    func mutualTLS() async throws {
        let certificates = try TestCertificates()
        let server = try await ServerProcess.etcd(tls: certificates)
        defer { server.terminate() }
        let configuration = try EtcdConfiguration(endpoints: ["https://\(server.endpoint)"], tls: try certificates.issue("client", hosts: []))
        try await withEtcdClient(configuration) { etcd in
            _ = try await etcd.put("/tls/key", "value")
            #expect(try await etcd.get("/tls/key")?.stringValue == "value")
            let lease = try await etcd.grantLease(ttl: .seconds(5))
            _ = try await etcd.put("/tls/leased", "x", lease: lease.id)
            #expect(try await etcd.get("/tls/leased") != nil)
        }
    }

    @Test("no client certificate, an untrusted server, or plaintext: calls fail at their deadline")
    func refusals() async throws {
        let certificates = try TestCertificates()
        let server = try await ServerProcess.etcd(tls: certificates)
        defer { server.terminate() }
        let strangers = try TestCertificates()
        var untrusting = try certificates.issue("client", hosts: [])
        untrusting.ca = strangers.ca
        let cases: [(String, EtcdConfiguration)] = [
            ("anonymous", try EtcdConfiguration(endpoints: ["https://\(server.endpoint)"], callTimeout: .seconds(1), tls: TLSSettings(ca: certificates.ca))),
            ("untrusted server", try EtcdConfiguration(endpoints: ["https://\(server.endpoint)"], callTimeout: .seconds(1), tls: untrusting)),
            ("plaintext", try EtcdConfiguration(endpoints: [server.endpoint], callTimeout: .seconds(1))),
        ]
        for (name, configuration) in cases {
            try await withEtcdClient(configuration) { etcd in
                let started = ContinuousClock.now
                do {
                    _ = try await etcd.get("/tls/key")
                    Issue.record("\(name): a call went through")
                } catch let error as EtcdError {
                    #expect([.unavailable, .timeout].contains(error.code), "\(name): \(error)")
                }
                #expect(ContinuousClock.now - started < .seconds(5), "\(name) took too long to fail")
            }
        }
    }

    @Test("TLS settings that cannot work, or endpoints mixing schemes, fail at start-up")
    func invalidSettings() {
        #expect(throws: EtcdError.self) { try EtcdConfiguration(endpoints: ["https://127.0.0.1:2379", "127.0.0.1:2380"]) }
        #expect { try EtcdConfiguration(endpoints: ["https://127.0.0.1:2379"], tls: TLSSettings(ca: "/missing/ca.pem")) } throws: {
            "\($0)".contains("/missing/ca.pem")
        }
    }
}
