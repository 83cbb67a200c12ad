import Distributed
import Synchronization

// The runtime entry that runs a distributed target by its mangled name (the Distributed module's own
// `executeDistributedTarget` calls it after demangling the name three times — parameter count, parameter
// types, return type — on every call). Declared here so that those facts are demangled once per target.
@_silgen_name("swift_distributed_execute_target")
private func runtimeExecuteDistributedTarget<D: DistributedTargetInvocationDecoder>(
    on actor: AnyObject,
    _ targetName: UnsafePointer<UInt8>, _ targetNameLength: UInt,
    argumentDecoder: inout D,
    argumentTypes: UnsafeRawPointer,
    resultBuffer: UnsafeMutableRawPointer,
    substitutions: UnsafeRawPointer?,
    witnessTables: UnsafeRawPointer?,
    numWitnessTables: UInt
) async throws

/// What the runtime needs to run one non-generic distributed target, resolved from its mangled name once:
/// the name's bytes, its parameters' types and how to receive its result. Lives as long as its cache.
///
/// `@unchecked Sendable` invariant: every stored property is a `let` set once in `init`; the two buffers it
/// owns are written only there and afterwards only read (by the runtime, during calls on any thread), and are
/// freed in `deinit`, when no call can hold the entry any more (calls keep a strong reference while they run).
final class ResolvedTarget: @unchecked Sendable {
    private let name: UnsafeMutableBufferPointer<UInt8>
    private let argumentTypes: UnsafeMutableBufferPointer<Any.Type>
    private let result: any TargetResult

    fileprivate init?(identifier: String) {
        let bytes = Array(identifier.utf8)
        guard !bytes.isEmpty else { return nil }
        let name = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: bytes.count)
        _ = name.initialize(from: bytes)
        // Generic targets need their substitutions per call: the Distributed module's path serves them.
        guard _getGenericEnvironmentOfDistributedTarget(name.baseAddress!, UInt(name.count)) == nil else {
            name.deallocate()
            return nil
        }
        let count = __getParameterCount(name.baseAddress!, UInt(name.count))
        guard count >= 0 else {
            name.deallocate()
            return nil
        }
        let types = UnsafeMutableBufferPointer<Any.Type>.allocate(capacity: max(1, Int(count)))
        let written = _getParameterTypeInfo(
            mangledMethodName: identifier, genericEnv: nil, genericArguments: nil,
            into: UnsafeMutableRawPointer(types.baseAddress!)._rawValue, length: Int(count)
        )
        guard written == count, let returnType = __getReturnTypeInfo(name.baseAddress!, UInt(name.count), nil, nil),
              let result = Self.result(of: returnType)
        else {
            name.deallocate()
            types.deallocate()
            return nil
        }
        self.name = name
        self.argumentTypes = types
        self.result = result
    }

    deinit {
        name.deallocate()
        argumentTypes.deallocate()
    }

    private static func result(of type: Any.Type) -> (any TargetResult)? {
        if type == Void.self { return VoidResult() }
        guard let codable = type as? any Codable.Type else { return nil }
        func make<R: Codable>(_: R.Type) -> any TargetResult { ValueResult<R>() }
        return make(codable)
    }

    /// Runs the target on `actor`; what it returned, or what it (or the decoding of its arguments) threw.
    func execute(on actor: any DistributedActor, decoder: inout ClusterInvocationDecoder) async -> ResultSink.Outcome {
        await result.execute(on: actor, name: UnsafePointer(name.baseAddress!), length: UInt(name.count),
                             argumentTypes: UnsafeRawPointer(argumentTypes.baseAddress!), decoder: &decoder)
    }
}

/// Receives a target's result of one type into a buffer of that type.
private protocol TargetResult: Sendable {
    func execute(on actor: any DistributedActor, name: UnsafePointer<UInt8>, length: UInt, argumentTypes: UnsafeRawPointer,
                 decoder: inout ClusterInvocationDecoder) async -> ResultSink.Outcome
}

private struct ValueResult<R: Codable>: TargetResult {
    func execute(on actor: any DistributedActor, name: UnsafePointer<UInt8>, length: UInt, argumentTypes: UnsafeRawPointer,
                 decoder: inout ClusterInvocationDecoder) async -> ResultSink.Outcome {
        let buffer = UnsafeMutablePointer<R>.allocate(capacity: 1)
        defer { buffer.deallocate() }
        do {
            try await runtimeExecuteDistributedTarget(
                on: actor, name, length, argumentDecoder: &decoder, argumentTypes: argumentTypes,
                resultBuffer: UnsafeMutableRawPointer(buffer), substitutions: nil, witnessTables: nil, numWitnessTables: 0
            )
        } catch {
            return .error(error)  // nothing was written to the buffer
        }
        return .value(buffer.move())
    }
}

private struct VoidResult: TargetResult {
    func execute(on actor: any DistributedActor, name: UnsafePointer<UInt8>, length: UInt, argumentTypes: UnsafeRawPointer,
                 decoder: inout ClusterInvocationDecoder) async -> ResultSink.Outcome {
        // Void has no bytes: any non-null pointer does.
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
        defer { buffer.deallocate() }
        do {
            try await runtimeExecuteDistributedTarget(
                on: actor, name, length, argumentDecoder: &decoder, argumentTypes: argumentTypes,
                resultBuffer: buffer, substitutions: nil, witnessTables: nil, numWitnessTables: 0
            )
        } catch {
            return .error(error)
        }
        return .void
    }
}

/// A system's resolved targets, by mangled name (only names that resolve to a non-generic target are kept,
/// so the cache holds at most the distributed functions of the registered types).
final class TargetCache: Sendable {
    private let targets = Mutex<[String: ResolvedTarget]>([:])
    /// Names that did not resolve (generic targets, or names this process has no target for): not cached, so
    /// that a peer sending made-up names cannot grow the cache.
    init() {}

    func resolved(_ identifier: String) -> ResolvedTarget? {
        if let known = targets.withLock({ $0[identifier] }) { return known }
        guard let resolved = ResolvedTarget(identifier: identifier) else { return nil }
        return targets.withLock { targets in
            if let raced = targets[identifier] { return raced }
            targets[identifier] = resolved
            return resolved
        }
    }
}
