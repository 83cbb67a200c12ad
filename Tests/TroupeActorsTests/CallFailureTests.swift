import Testing
@testable import TroupeActors
import TroupeCore
import TroupeTestSupport

/// A key of `Counter` whose owner is `system`, so calls from other nodes cross the network.
func key(ownedBy system: ClusterActorSystem, prefix: String = "k") -> String {
    system.firstKeyOwned(type: "Counter", prefix: prefix)
}

@Suite("Remote call failures")
struct CallFailureTests {
    @Test("a remote throw reaches the caller as a structured error")
    func remoteThrow() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            do {
                try await counter.fail("out of stock")
                Issue.record("expected a throw")
            } catch let error as RemoteCallError {
                #expect(error.code == "test-failure")
                #expect(error.type.hasSuffix("TestFailure"))
                #expect(error.message == "test failure: out of stock")
            }
            // The same error shape for a routed call to a local activation.
            let local = try systems[1].reference(Counter.self, key: key(ownedBy: systems[1]))
            await #expect(throws: RemoteCallError(code: "test-failure", type: String(reflecting: TestFailure.self), message: "test failure: local")) {
                try await local.fail("local")
            }
        }
    }

    @Test("a CodableRemoteError reaches the caller as its own type, from another node and from this one")
    func typedError() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            let remote = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            await #expect(throws: TestRefusal(reason: "over the limit", limit: 7)) {
                try await remote.refuse("over the limit", limit: 7)
            }
            let local = try systems[1].reference(Counter.self, key: key(ownedBy: systems[1]))
            await #expect(throws: TestRefusal(reason: "here", limit: 1)) {
                try await local.refuse("here", limit: 1)
            }
        }
    }

    @Test("a typed error whose type the caller has not registered, or cannot decode, arrives as a RemoteCallError with its code")
    func typedErrorUnknownType() async throws {
        try await LocalCluster().run(nodes: 2, register: { system in
            system.register(Counter.self)
            // Only node-2 (the owner of the key called) registers the type: node-1 has it in its process but did not.
            if system.node.name == "node-2" { system.registerRemoteError(TestRefusal.self) }
        }) { systems in
            #expect(systems[1].node.name == "node-2")
            let remote = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            do {
                try await remote.refuse("over the limit", limit: 7)
                Issue.record("expected a throw")
            } catch let error as RemoteCallError {
                #expect(error.code == "test-refusal")
                #expect(error.type.hasSuffix("TestRefusal"))
            }
            // Registered on node 1: its calls to node 0's actors decode the type.
            let back = try await systems[1].actor(Counter.self, key: key(ownedBy: systems[0]))
            await #expect(throws: TestRefusal(reason: "back", limit: 2)) { try await back.refuse("back", limit: 2) }
        }
        try await LocalCluster().run(nodes: 1, register: registerTestActors) { systems in
            let system = systems[0]
            // Names that are no registered type — unknown, a standard type, garbage — are not decoded.
            #expect(system.codableRemoteError(mangledName: "NotAType", payload: []) == nil)
            #expect(system.codableRemoteError(mangledName: "Si", payload: [0, 0, 0, 0, 0, 0, 0, 0]) == nil)
            #expect(system.codableRemoteError(mangledName: "", payload: []) == nil)
            let name = try #require(_mangledTypeName(TestRefusal.self))
            #expect(system.codableRemoteError(mangledName: name, payload: [1, 2]) == nil, "bytes that do not decode")
            let payload = try BinaryEncoder().encode(TestRefusal(reason: "r", limit: 2))
            #expect(system.codableRemoteError(mangledName: name, payload: payload) as? TestRefusal == TestRefusal(reason: "r", limit: 2))
            let error = ClusterActorSystem.error(fromWire: "user:test-refusal", type: "T", message: "m", peer: "p")
            #expect(error as? RemoteCallError == RemoteCallError(code: "test-refusal", type: "T", message: "m"))
        }
    }

    @Test("arguments of several types travel intact")
    func arguments() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            #expect(try await counter.echo("héllo", [1, -2, 300_000], nil) == "héllo|1,-2,300000|nil")
            #expect(try await counter.echo("", [], true) == "||true")
            // The same target again (resolved once, then reused), and a generic target.
            #expect(try await counter.echo("x", [2], false) == "x|2|false")
            for system in systems { system.registerGenericSubstitution(String.self) }
            #expect(try await counter.wrap("twice") == ["twice", "twice"])
            let local = try systems[1].reference(Counter.self, key: key(ownedBy: systems[1]))
            #expect(try await local.wrap("here") == ["here", "here"])
        }
    }

    @Test("a call past its deadline fails with a timeout error")
    func deadline() async throws {
        try await LocalCluster().run(nodes: 2, register: registerTestActors) { systems in
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            let start = ContinuousClock.now
            do {
                try await ClusterActorSystem.withCallTimeout(.milliseconds(200)) {
                    try await counter.sleep(milliseconds: 3_000)
                }
                Issue.record("expected a timeout")
            } catch let error as ActorSystemError {
                #expect(error.code == .timeout)
            }
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(200) && elapsed < .milliseconds(1_000), "timed out after \(elapsed)")
            // The connection is still good for the next call.
            #expect(try await counter.increment(by: 1) == 1)
        }
    }

    @Test("a node shut down mid-call: the caller fails within 1 s")
    func calleeShutsDown() async throws {
        try await LocalCluster(callTimeout: .seconds(30)).run(nodes: 2, register: registerTestActors) { systems in
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            _ = try await counter.increment(by: 1)
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await Task.sleep(for: .milliseconds(100))
                    systems[1].shutdown()
                }
                group.addTask {
                    do {
                        try await counter.sleep(milliseconds: 20_000)
                        Issue.record("expected the call to fail")
                    } catch let error as ActorSystemError {
                        #expect(error.code == .connectionClosed || error.code == .systemShuttingDown, "\(error)")
                    }
                }
                try await group.waitForAll()
            }
            let elapsed = ContinuousClock.now - start
            #expect(elapsed < .seconds(1), "caller failed only after \(elapsed)")
        }
    }

    @Test("the caller's own shutdown fails its in-flight calls")
    func callerShutsDown() async throws {
        try await LocalCluster(callTimeout: .seconds(30)).run(nodes: 2, register: registerTestActors) { systems in
            let counter = try await systems[0].actor(Counter.self, key: key(ownedBy: systems[1]))
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await Task.sleep(for: .milliseconds(100))
                    systems[0].shutdown()
                }
                group.addTask {
                    await #expect(throws: ActorSystemError.self) { try await counter.sleep(milliseconds: 20_000) }
                }
                try await group.waitForAll()
            }
            #expect(ContinuousClock.now - start < .seconds(1))
        }
    }

    @Test("a type nobody hosts fails with a clear error")
    func unhostedType() async throws {
        try await LocalCluster().run(nodes: 1, register: { $0.register(Counter.self) }) { systems in
            // The member announces only Counter, so Greeter has no host.
            let greeter = try await systems[0].actor(Greeter.self, key: "g")
            do {
                _ = try await greeter.greet("x")
                Issue.record("expected an error")
            } catch let error as ActorSystemError {
                #expect(error.code == .noMemberHostsType)
            }
        }
    }

    @Test("invalid configuration fails at start-up with a message that says what to fix")
    func invalidConfiguration() async throws {
        var configuration = LocalCluster().configuration(node: "bad")
        configuration.secret = Array("short".utf8)
        do {
            _ = try await ClusterActorSystem.start(configuration, membership: InMemoryMembership())
            Issue.record("expected a configuration error")
        } catch let error as ActorSystemError {
            #expect(error.code == .invalidConfiguration)
            #expect(error.message.contains("secret"))
        }
    }
}
