import ServiceContextModule
import Distributed
import TroupeActors
import TroupeTestSupport

struct TestFailure: Error, RemoteErrorCode, CustomStringConvertible {
    var reason: String
    var remoteErrorCode: String { "test-failure" }
    var description: String { "test failure: \(reason)" }
}

/// An error that travels as itself (``CodableRemoteError``).
struct TestRefusal: CodableRemoteError, Equatable {
    var reason: String
    var limit: Int
    var remoteErrorCode: String { "test-refusal" }
}

/// A persistent counter used by most runtime tests.
distributed actor Counter: PersistentVirtualActor {
    typealias ActorSystem = ClusterActorSystem

    struct State: Codable, Sendable {
        var count = 0
    }

    var persisted = Persisted(State())

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    distributed func increment(by amount: Int) async throws -> Int {
        try await update { state in
            state.count += amount
            return state.count
        }
    }

    distributed func count() -> Int { state.count }

    distributed func host() -> String { actorSystem.node.name }

    distributed func fail(_ reason: String) throws {
        throw TestFailure(reason: reason)
    }

    /// Takes `amount` off the count, or refuses (``TestRefusal``) when the count is lower: a decision made from state.
    distributed func take(_ amount: Int) async throws -> Int {
        try await update { state in
            guard state.count >= amount else { throw TestRefusal(reason: "only \(state.count)", limit: state.count) }
            state.count -= amount
            return state.count
        }
    }

    distributed func refuse(_ reason: String, limit: Int) throws {
        throw TestRefusal(reason: reason, limit: limit)
    }

    /// A generic target (the runtime's generic path, with substitutions).
    distributed func wrap<Value: Codable & Sendable>(_ value: Value) -> [Value] { [value, value] }

    distributed func sleep(milliseconds: Int) async throws {
        try await Task.sleep(for: .milliseconds(milliseconds))
    }

    distributed func echo(_ text: String, _ numbers: [Int], _ flag: Bool?) -> String {
        "\(text)|\(numbers.map(String.init).joined(separator: ","))|\(flag.map(String.init) ?? "nil")"
    }
}

/// A virtual actor without persistence that records its activation hooks.
distributed actor Greeter: VirtualActor {
    typealias ActorSystem = ClusterActorSystem

    var activated = false

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    func didActivate() async throws {
        activated = true
    }

    distributed func greet(_ name: String) -> String {
        "hello \(name) from \(key)@\(actorSystem.node.name) activated=\(activated)"
    }
}

/// An actor that reports the trace value it sees, to prove the context travels with calls.
distributed actor TraceProbe: VirtualActor {
    typealias ActorSystem = ClusterActorSystem

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    distributed func observedTrace() -> String? {
        ServiceContext.current?.testTrace
    }
}
