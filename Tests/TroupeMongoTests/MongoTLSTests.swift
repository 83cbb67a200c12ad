import Foundation
import Testing
import TroupeBSON
import TroupeMongo
import TroupeTestSupport
import TroupeTLS

@Suite("MongoDB driver over TLS (SecantusDB with --tls-require-client-cert)", .serialized, .enabled(if: ServerProcess.shouldRunMongo))
struct MongoTLSTests {
    @Test("tls=true with tlsCAFile and a client certificate: CRUD works, the server's name is verified")
    func mutualTLS() async throws {
        let certificates = try TestCertificates()
        let server = try await ServerProcess.mongo(tls: certificates)
        defer { server.terminate() }
        let clientFile = try certificates.issueCombined("client")
        try await withDeadline(.seconds(120)) {
            let url = server.mongoURL + "?tls=true&tlsCAFile=\(certificates.ca)&tlsCertificateKeyFile=\(clientFile)&serverSelectionTimeoutMS=10000"
            let settings = try MongoClientSettings(url)
            #expect(settings.tls?.settings.verifyHostname == true)
            try await withMongoClient(settings) { client in
                let orders = client.database("tls").collection("orders")
                try await orders.insertOne(["_id": "o1", "total": 42])
                #expect(try await orders.countDocuments() == 1)
                #expect(try await orders.findOne(["_id": "o1"])?["total"]?.intValue == 42)
            }
            // The same through settings with separate files (the node configuration's form).
            var separate = try MongoClientSettings(server.mongoURL + "?serverSelectionTimeoutMS=10000")
            try separate.useTLS(try certificates.issue("client-2", hosts: []))
            try await withMongoClient(separate) { client in
                let count = try await client.database("tls").collection("orders").countDocuments()
                #expect(count == 1)
            }
        }
    }

    @Test("no client certificate, an untrusted server, or plaintext: no server is selected, and it fails in time")
    func refusals() async throws {
        let certificates = try TestCertificates()
        let server = try await ServerProcess.mongo(tls: certificates)
        defer { server.terminate() }
        let strangers = try TestCertificates()
        let clientFile = try certificates.issueCombined("client")
        let quick = "serverSelectionTimeoutMS=2000&connectTimeoutMS=2000"
        let cases = [
            ("anonymous", server.mongoURL + "?tls=true&tlsCAFile=\(certificates.ca)&\(quick)"),
            ("untrusted server", server.mongoURL + "?tls=true&tlsCAFile=\(strangers.ca)&tlsCertificateKeyFile=\(clientFile)&\(quick)"),
            ("plaintext", server.mongoURL + "?\(quick)"),
        ]
        try await withDeadline(.seconds(120)) {
            for (name, url) in cases {
                let started = ContinuousClock.now
                let error = await #expect(throws: MongoError.self, "\(name)") {
                    try await withMongoClient(try MongoClientSettings(url)) { client in
                        try await client.database("tls").collection("c").insertOne(["x": 1])
                    }
                }
                #expect(error != nil, "\(name)")
                #expect(ContinuousClock.now - started < .seconds(15), "\(name) took too long to fail")
            }
        }
    }

    @Test("TLS options that cannot work are configuration errors")
    func invalidOptions() {
        for url in ["mongodb://h/?tls=true&tlsCAFile=/missing/ca.pem", "mongodb://h/?tls=true&tlsAllowInvalidCertificates=true",
                    "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=x"] {
            #expect(throws: MongoError.self, "\(url)") { try MongoClientSettings(url) }
        }
    }
}
