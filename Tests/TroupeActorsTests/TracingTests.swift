import Instrumentation
import ServiceContextModule
import Testing
import TroupeActors
import TroupeTestSupport

enum TestTraceKey: ServiceContextKey {
    typealias Value = String
}

extension ServiceContext {
    var testTrace: String? {
        get { self[TestTraceKey.self] }
        set { self[TestTraceKey.self] = newValue }
    }
}

/// Propagates ``TestTraceKey`` as the `x-test-trace` carrier field, like a W3C propagator would.
struct TestPropagator: Instrument {
    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        if let value = context.testTrace { injector.inject(value, forKey: "x-test-trace", into: &carrier) }
    }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        if let value = extractor.extract(key: "x-test-trace", from: carrier) { context.testTrace = value }
    }
}

/// The process-wide instrument may be bootstrapped once; every test that needs it shares this.
let bootstrapTestInstrument: Void = InstrumentationSystem.bootstrap(TestPropagator())

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
