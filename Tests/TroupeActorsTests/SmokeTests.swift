import Testing
import TroupeActors
import TroupeTestSupport

@Suite("Cluster smoke")
struct SmokeTests {
    @Test("calls a virtual actor locally and on another node")
    func localAndRemote() async throws {
        try await LocalCluster().run(nodes: 2, register: { $0.register(Counter.self); $0.register(Greeter.self) }) { systems in
            let (a, b) = (systems[0], systems[1])
            let key = b.firstKeyOwned(type: "Counter")
            let viaA = try await a.actor(Counter.self, key: key)
            #expect(try await viaA.increment(by: 2) == 2)
            #expect(try await viaA.host() == b.node.name)
            let viaB = try await b.actor(Counter.self, key: key)
            #expect(try await viaB.increment(by: 3) == 5)
            let greeter = try await a.actor(Greeter.self, key: key)
            let greeting = try await greeter.greet("ann")
            #expect(greeting.hasPrefix("hello ann from \(key)@"))
            #expect(greeting.hasSuffix("activated=true"))
        }
    }
}
