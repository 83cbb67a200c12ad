import Synchronization
import Testing
import TroupeCore
@testable import TroupeActors
import TroupeTestSupport

@Suite("Calls whose caller gave up")
struct AbandonedCallTests {
    @Test("a served call whose caller's deadline passed makes no write; the same task within its deadline, and a task it started, do")
    func noWriteAfterTheDeadline() async throws {
        try await LocalCluster().run(nodes: 1, register: registerTestActors) { systems in
            let counter = try systems[0].reference(Counter.self, key: "abandoned")
            #expect(try await counter.increment(by: 1) == 1)
            guard let task = ClusterActorSystem.currentTaskHash else { Issue.record("no current task"); return }
            let expired = ClusterActorSystem.ServedCall(deadline: .now - .milliseconds(1), task: task)
            try await ClusterActorSystem.$servedCall.withValue(expired) { () async throws in
                await #expect(throws: ActorSystemError.self, "the caller already gave up") { _ = try await counter.increment(by: 1) }
                // A task started from inside the call inherits the task-local but is not the call: it writes.
                let spawned = Task { try await counter.increment(by: 1) }
                #expect(try await spawned.value == 2)
            }
            let current = ClusterActorSystem.ServedCall(deadline: .now + .seconds(30), task: task)
            try await ClusterActorSystem.$servedCall.withValue(current) { () async throws in
                #expect(try await counter.increment(by: 1) == 3, "within the deadline the write is made")
            }
            #expect(try await counter.count() == 3)
        }
    }

    @Test("once its serving task has finished, a served call's deadline applies to no task — not to one that inherited the record and got the same identity (the simulation's shop seed 10002: a saga's step attempt never wrote)")
    func overRecord() async throws {
        guard let task = ClusterActorSystem.currentTaskHash else { Issue.record("no current task"); return }
        // The identity a later task may get once the serving task's memory is reused: here, this very task.
        let record = ClusterActorSystem.ServedCall(deadline: .now - .milliseconds(1), task: task)
        ClusterActorSystem.$servedCall.withValue(record) {
            #expect(ClusterActorSystem.servedCallDeadline != nil, "while the call is served, its task has the deadline")
            record.over.store(true, ordering: .releasing)
            #expect(ClusterActorSystem.servedCallDeadline == nil, "served: no task has it any more")
        }
    }
}
