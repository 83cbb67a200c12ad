import Testing
import TroupeRedis
import TroupeTestSupport
import TroupeTLS

@Suite("Redis over TLS (real redis-server with --tls-port)", .enabled(if: redisAvailable, Comment(rawValue: redisMissing)))
struct RedisTLSTests {
    @Test("rediss:// with a client certificate of the server's CA: commands work, the server name is verified")
    func mutualTLS() async throws {
        let certificates = try TestCertificates()
        let server = try await ServerProcess.redisTLS(certificates: certificates)
        defer { server.terminate() }
        let client = try certificates.issue("client", hosts: [])
        let configuration = try RedisConfiguration(url: server.redissURL, tls: client)
        #expect(configuration.tls?.settings.verifyHostname != false)
        try await withRedisClient(configuration) { redis in
            try await redis.set("over-tls", to: "yes")
            #expect(try await redis.getString("over-tls") == "yes")
            for _ in 0 ..< 50 { _ = try await redis.increment("n") }
            #expect(try await redis.getString("n") == "50")
        }
    }

    @Test("no client certificate, another CA, or plaintext: connecting fails with connectFailed, within the timeout")
    func refusals() async throws {
        let certificates = try TestCertificates()
        let server = try await ServerProcess.redisTLS(certificates: certificates)
        defer { server.terminate() }
        let strangers = try TestCertificates()
        var foreignServerTrust = try certificates.issue("client", hosts: [])
        foreignServerTrust.ca = strangers.ca  // does not trust the server's CA
        let cases: [(String, String, TLSSettings?)] = [
            ("anonymous", server.redissURL, TLSSettings(ca: certificates.ca)),
            ("untrusted server", server.redissURL, foreignServerTrust),
            ("plaintext", "redis://\(server.host):\(server.port)", nil),
        ]
        for (name, url, tls) in cases {
            var configuration = try RedisConfiguration(url: url, tls: tls)
            configuration.commandTimeout = .seconds(2)
            let started = ContinuousClock.now
            do {
                _ = try await RedisConnection.connect(configuration)
                Issue.record("\(name): connected")
            } catch let error as RedisError {
                #expect(error.code == .connectFailed, "\(name): \(error)")
            }
            #expect(ContinuousClock.now - started < .seconds(4), "\(name) took too long to fail")
        }
    }

    @Test("a TLS file that does not exist is a configuration error naming it")
    func invalidSettings() throws {
        #expect {
            try RedisConfiguration(url: "rediss://127.0.0.1:6380", tls: TLSSettings(ca: "/missing/ca.pem"))
        } throws: { error in
            (error as? RedisError)?.code == .invalidConfiguration && "\(error)".contains("/missing/ca.pem")
        }
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "http://127.0.0.1:6379") }
    }
}
