// Instructions per actor call, for scripts/instructions (run under valgrind --tool=callgrind): two nodes of the
// real runtime on loopback TCP in this process, then three sections, each between a reset of callgrind's
// counters and a dump named "troupe <section> <calls>" — calls to the local activation, calls through a kept
// reference (routed) to an actor on the same node, and sequential remote calls. Callgrind counts every thread
// (a remote call's caller and callee both run here), so a section's instructions divided by its calls is the
// cost of one call, whatever else the machine is doing.
//
// The main is synchronous on purpose: valgrind 3.19 dies in the main-thread `sigsuspend` of an async main.
import CTroupeCallgrind
import Dispatch
import Distributed
import Foundation
import TroupeActors
import TroupeCore
import TroupeTestSupport

/// The measured virtual actor: one argument in, one result out.
distributed actor InstructionsPinger: VirtualActor {
    typealias ActorSystem = ClusterActorSystem
    var total = 0

    init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    distributed func ping(_ value: Int) -> Int {
        total &+= value
        return total
    }
}

/// Calls per section (the counts are per call, so these only trade run time for averaging).
enum Sections {
    static let all: [(name: String, calls: Int)] = [("activation_call", 2_000), ("routed_call", 2_000), ("remote_call", 1_000)]
}

func measure() async throws {
    // Two nodes of one cluster on loopback TCP in this process (the same set-up as `troupe bench actors`).
    let cluster = LocalCluster(clusterName: "instructions", secret: Array("instructions-secret-instructions".utf8), callTimeout: .seconds(300))
    try await cluster.run(nodes: 2, register: { $0.register(InstructionsPinger.self) }) { systems in
        let (a, b) = (systems[0], systems[1])
        let localKey = a.firstKeyOwned(type: InstructionsPinger.virtualTypeName, prefix: "local")
        let pingers: [String: InstructionsPinger] = [
            "activation_call": try await a.actor(InstructionsPinger.self, key: localKey),
            "routed_call": try a.reference(InstructionsPinger.self, key: localKey),
            "remote_call": try await a.actor(InstructionsPinger.self, key: b.firstKeyOwned(type: InstructionsPinger.virtualTypeName, prefix: "remote")),
        ]
        for (name, calls) in Sections.all {
            guard let pinger = pingers[name] else { continue }
            for index in 0..<200 { _ = try await pinger.ping(index) }  // warm-up: connections, caches, activations
            troupe_callgrind_zero()
            var sum = 0
            for index in 0..<calls { sum &+= try await pinger.ping(index) }
            troupe_callgrind_dump("troupe \(name) \(calls)")
            precondition(sum != 42, "keeps the loop from being optimised away")
            print("troupe-instructions: \(name) \(calls) calls")  // an executable's own report on its standard output
        }
    }
}

/// Runs the measurement on the cooperative pool while this thread waits: top-level code is on the main actor,
/// so the work is detached from it (a `Task {}` here would inherit the main actor, which this blocked thread
/// never gives back). Not unowned: this function waits for it before it returns, and the process ends after.
func runBlocking() -> (any Error)? {
    let done = DispatchSemaphore(value: 0)
    let failure = Locked<(any Error)?>(nil)
    Task.detached {
        do { try await measure() } catch { failure.withLock { $0 = error } }
        done.signal()
    }
    done.wait()
    return failure.withLock { $0 }
}

guard troupe_callgrind_available() == 1 else {
    FileHandle.standardError.write(Data("troupe-instructions: built without valgrind's headers (install valgrind, build again)\n".utf8))
    exit(1)
}
if troupe_running_on_valgrind() == 0 {
    FileHandle.standardError.write(Data("troupe-instructions: not under valgrind; the sections run, nothing is counted (use scripts/instructions)\n".utf8))
}
if let error = runBlocking() {
    FileHandle.standardError.write(Data("troupe-instructions: \(error)\n".utf8))
    exit(1)
}
