public import Instrumentation
import ServiceContextModule

/// A trace id for tests, carried in ``ServiceContext``.
public enum TestTraceKey: ServiceContextKey {
    public typealias Value = String
}

extension ServiceContext {
    public var testTrace: String? {
        get { self[TestTraceKey.self] }
        set { self[TestTraceKey.self] = newValue }
    }
}

/// Propagates ``TestTraceKey`` as the `x-test-trace` carrier field, like a W3C propagator would.
public struct TestPropagator: Instrument {
    public init() {}

    public func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        if let value = context.testTrace { injector.inject(value, forKey: "x-test-trace", into: &carrier) }
    }

    public func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        if let value = extractor.extract(key: "x-test-trace", from: carrier) { context.testTrace = value }
    }
}

/// The process-wide instrument may be bootstrapped only once, and every test target links into one
/// test process: every test that needs the instrument touches this.
public let bootstrapTestInstrument: Void = InstrumentationSystem.bootstrap(TestPropagator())
