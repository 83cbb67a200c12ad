import Instrumentation
import ServiceContextModule
import Testing
import TroupeActors
import TroupeTestSupport

@Suite("Trace context")
struct TracingTests {
    @Test("the caller's ServiceContext reaches the remote target through the call envelope")
    func propagates() async throws {
        _ = bootstrapTestInstrument
        try await LocalCluster().run(nodes: 2, register: { $0.register(TraceProbe.self) }) { systems in
            let remoteKey = systems[1].firstKeyOwned(type: "TraceProbe")
            let probe = try await systems[0].actor(TraceProbe.self, key: remoteKey)
            var context = ServiceContext.topLevel
            context.testTrace = "trace-1234"
            let seen = try await ServiceContext.withValue(context) { try await probe.observedTrace() }
            #expect(seen == "trace-1234")
            #expect(try await probe.observedTrace() == nil, "no context, nothing propagated")
        }
    }
}
