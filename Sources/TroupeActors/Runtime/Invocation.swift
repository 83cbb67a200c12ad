public import Distributed
import TroupeCore

/// Records the arguments of an outgoing distributed call.
///
/// Values are kept as they are and serialised only when the call leaves the process, so a
/// call routed to a local activation pays no encoding cost.
public struct ClusterInvocationEncoder: DistributedTargetInvocationEncoder {
    public typealias SerializationRequirement = Codable

    var arguments: [any Codable] = []
    var genericSubstitutions: [String] = []

    init() {}

    public mutating func recordGenericSubstitution<T>(_ type: T.Type) throws {
        guard let name = _mangledTypeName(type) else {
            throw ActorSystemError(.serialization, "generic substitution \(type) has no mangled name")
        }
        genericSubstitutions.append(name)
    }

    public mutating func recordArgument<Value: Codable>(_ argument: RemoteCallArgument<Value>) throws {
        arguments.append(argument.value)
    }

    public mutating func recordErrorType<E: Error>(_ type: E.Type) throws {}

    public mutating func recordReturnType<R: Codable>(_ type: R.Type) throws {}

    public mutating func doneRecording() throws {}

    /// The binary encoding of each argument.
    func encodedArguments() throws -> [[UInt8]] {
        try arguments.map { argument in
            do {
                return try encodeOpened(argument)
            } catch {
                throw ActorSystemError(.serialization, "cannot encode argument of type \(type(of: argument))", underlying: error)
            }
        }
    }
}

private func encodeOpened<T: Encodable>(_ value: T) throws -> [UInt8] {
    try BinaryEncoder().encode(value)
}

/// Supplies the arguments of an incoming call to the runtime.
public struct ClusterInvocationDecoder: DistributedTargetInvocationDecoder {
    public typealias SerializationRequirement = Codable

    enum Arguments {
        /// Encoded arguments from the network.
        case encoded([[UInt8]])
        /// Values from a caller in this process.
        case values([any Codable])
    }

    private let arguments: Arguments
    private let substitutions: [Any.Type]
    private var index = 0
    private let limits: BinaryDecodingLimits

    init(arguments: Arguments, substitutions: [Any.Type], limits: BinaryDecodingLimits) {
        self.arguments = arguments
        self.substitutions = substitutions
        self.limits = limits
    }

    public mutating func decodeGenericSubstitutions() throws -> [Any.Type] { substitutions }

    public mutating func decodeNextArgument<Argument: Codable>() throws -> Argument {
        defer { index += 1 }
        switch arguments {
        case .encoded(let encoded):
            guard index < encoded.count else {
                throw ActorSystemError(.serialization, "the call carries \(encoded.count) arguments; the target takes more")
            }
            do {
                return try BinaryDecoder(limits: limits).decode(Argument.self, from: encoded[index])
            } catch {
                throw ActorSystemError(.serialization, "cannot decode argument \(index) as \(Argument.self)", underlying: error)
            }
        case .values(let values):
            guard index < values.count, let value = values[index] as? Argument else {
                throw ActorSystemError(.serialization, "argument \(index) is not a \(Argument.self)")
            }
            return value
        }
    }

    public mutating func decodeErrorType() throws -> Any.Type? { nil }

    public mutating func decodeReturnType() throws -> Any.Type? { nil }
}

/// Receives the outcome of a distributed target run by ``ClusterActorSystem``.
public struct ClusterResultHandler: DistributedTargetInvocationResultHandler {
    public typealias SerializationRequirement = Codable

    let sink: ResultSink

    public func onReturn<Success: Codable>(value: Success) async throws {
        sink.complete(.value(value))
    }

    public func onReturnVoid() async throws {
        sink.complete(.void)
    }

    public func onThrow<Err: Error>(error: Err) async throws {
        sink.complete(.error(error))
    }
}

/// Where a target's outcome goes; used within the one task that runs the target.
final class ResultSink {
    enum Outcome {
        case value(any Codable)
        case void
        case error(any Error)
    }

    private(set) var outcome: Outcome?

    init() {}

    func complete(_ outcome: Outcome) {
        if self.outcome == nil { self.outcome = outcome }
    }
}
