import Foundation
import Testing
import TroupeActors
import TroupeTestSupport
import TroupeTLS

@Suite("Cluster transport over mutual TLS")
struct ClusterTLSTests {
    @Test("nodes with certificates of the cluster CA call each other; the handshake runs inside the tunnel")
    func callsOverTLS() async throws {
        let certificates = try TestCertificates()
        let settings = try ["node-1", "node-2"].reduce(into: [String: TLSSettings]()) { $0[$1] = try certificates.issue($1) }
        try await LocalCluster(tls: { settings[$0] }).run(nodes: 2, register: registerTestActors) { systems in
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            #expect(try await counter.increment(by: 2) == 2)
            #expect(try await counter.increment(by: 3) == 5)
            // A client that does not speak TLS is closed without being served.
            #expect(try await nodeClosesConnection(systems[1], after: Array(repeating: 0x41, count: 64)))
        }
    }

    @Test("a node with the right secret but a certificate of another CA, a revoked one, or none, cannot call in")
    func intrudersRefused() async throws {
        let certificates = try TestCertificates()
        let revokedIdentity = try certificates.issue("revoked-node")
        let revokedSerial = try TestCertificates.serial(of: revokedIdentity)
        let settings = try ["node-1", "node-2"].reduce(into: [String: TLSSettings]()) {
            $0[$1] = try certificates.issue($1, revoked: [revokedSerial])
        }
        let strangers = try TestCertificates()
        var foreign = try strangers.issue("foreign")
        foreign.ca = certificates.ca  // trusts the cluster, but is not trusted by it
        // What each refusal looks like to the intruder: the cluster's CA refuses the foreign certificate with a TLS
        // alert; a revoked one is closed right after the TLS handshake; a plaintext peer reads the alert as a bad frame.
        let intruders: [(String, TLSSettings?, Set<ActorSystemError.Code>)] = [
            ("foreign", foreign, [.handshakeFailed]),
            ("revoked", revokedIdentity, [.connectionClosed, .handshakeFailed, .timeout]),
            ("plaintext", nil, [.protocolViolation, .connectionClosed]),
        ]

        try await LocalCluster(tls: { settings[$0] }).run(nodes: 2, register: registerTestActors) { systems in
            for (name, identity, refusals) in intruders {
                let intruder = try await LocalCluster(callTimeout: .seconds(3), tls: { _ in identity })
                    .start(node: "intruder-\(name)", membership: InMemoryMembership(members: systems.map(\.member)),
                           stateStore: InMemoryActorStateStore()) { _ in }  // hosts nothing: every call must cross
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await intruder.run() }
                    let counter = try await intruder.actor(Counter.self, key: key(ownedBy: systems[1]))
                    do {
                        _ = try await counter.increment(by: 100)
                        Issue.record("the \(name) intruder's call went through")
                    } catch let error as ActorSystemError {
                        #expect(refusals.contains(error.code), "\(name): \(error)")
                    }
                    intruder.shutdown()
                }
            }
            // The members still serve each other, and no intruder's increment landed.
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            #expect(try await counter.increment(by: 1) == 1)
        }
    }

    @Test("a TLS setting that cannot work stops the node at start-up, naming the file")
    func invalidSettings() async throws {
        let certificates = try TestCertificates()
        var configuration = LocalCluster().configuration(node: "n")
        configuration.tls = TLSSettings(certificate: "/missing/node.pem", privateKey: "/missing/node-key.pem", ca: certificates.ca)
        await #expect { _ = try await ClusterActorSystem.start(configuration, membership: InMemoryMembership()) } throws: { error in
            let error = error as? ActorSystemError
            return error?.code == .invalidConfiguration && error?.message.contains("/missing/node.pem") == true
        }
        configuration.tls = TLSSettings(certificate: "/missing/node.pem", privateKey: "/missing/node-key.pem")
        await #expect { _ = try await ClusterActorSystem.start(configuration, membership: InMemoryMembership()) } throws: { error in
            (error as? ActorSystemError)?.message.contains("ca") == true
        }
    }
}
