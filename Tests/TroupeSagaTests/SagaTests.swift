import Distributed
import Foundation
import Testing
import TroupeActors
import TroupeBus
import TroupeCore
@testable import TroupeSaga
import TroupeTestSupport

struct StepFailure: Error, CustomStringConvertible {
    var description: String { "step failed" }
}

/// Records what the steps did, per test (keyed by saga id).
let journal = Locked<[String: [String]]>([:])
func record(_ saga: String, _ entry: String) { journal.withLock { $0[saga, default: []].append(entry) } }

func waitForSaga(_ system: ClusterActorSystem, _ key: String, timeout: Duration = .seconds(20)) async throws -> SagaSnapshot {
    let deadline = ContinuousClock.now + timeout
    while true {
        let snapshot = try await system.reference(SagaActor.self, key: key).status()
        if snapshot.status.isFinal || ContinuousClock.now >= deadline { return snapshot }
        try await Task.sleep(for: .milliseconds(20))
    }
}

@Suite("Saga orchestrator", .serialized)
struct SagaTests {
    static func register(_ system: ClusterActorSystem) {
        system.register(SagaActor.self)
    }

    @Test("step 3 fails: step 3 (it may have taken effect), then 2 and 1 are compensated in reverse order")
    func compensation() async throws {
        let definition = SagaDefinition("three-steps", steps: [
            SagaStep("one", action: { record($0.sagaID, "do one") }, compensation: { record($0.sagaID, "undo one") }),
            SagaStep("two", action: { record($0.sagaID, "do two") }, compensation: { record($0.sagaID, "undo two") }),
            SagaStep("three", maxAttempts: 2, backoff: Backoff(initial: .milliseconds(10)),
                     action: { record($0.sagaID, "try three"); throw StepFailure() }, compensation: { record($0.sagaID, "undo three") }),
        ])
        try await LocalCluster().run(nodes: 1, register: { Self.register($0); $0.sagas.register(definition) }) { systems in
            let saga = try systems[0].reference(SagaActor.self, key: "s-comp")
            #expect(try await saga.start(definition: "three-steps", input: []) == .running)
            let snapshot = try await waitForSaga(systems[0], "s-comp")
            #expect(snapshot.status == .compensated)
            #expect(snapshot.completedSteps == ["one", "two"])
            #expect(snapshot.failedStep == "three")
            #expect(snapshot.compensatedSteps == ["three", "two", "one"])
            #expect(snapshot.failure?.contains("three") == true)
            let entries = journal.withLock { $0["SagaActor/\("s-comp")"] ?? [] }
            #expect(entries == ["do one", "do two", "try three", "try three", "undo three", "undo two", "undo one"])
            // Starting again is idempotent.
            #expect(try await saga.start(definition: "three-steps", input: []) == .compensated)
        }
    }

    @Test("a step that times out is retried, then the saga compensates")
    func timeout() async throws {
        let saga = SagaDefinition("slow", steps: [
            SagaStep("reserve", action: { record($0.sagaID, "reserve") }, compensation: { record($0.sagaID, "release") }),
            SagaStep("pay", timeout: .milliseconds(100), maxAttempts: 3, backoff: Backoff(initial: .milliseconds(10)),
                     action: { context in record(context.sagaID, "pay#\(context.attempt)"); try await Task.sleep(for: .seconds(5)) }),
        ])
        try await LocalCluster().run(nodes: 1, register: { Self.register($0); $0.sagas.register(saga) }) { systems in
            _ = try await systems[0].reference(SagaActor.self, key: "s-slow").start(definition: "slow", input: [])
            let snapshot = try await waitForSaga(systems[0], "s-slow")
            #expect(snapshot.status == .compensated)
            #expect(snapshot.log.filter { $0.hasPrefix("pay#") }.count == 3)
            #expect(snapshot.log.contains("pay#1 timed out after 0.1 seconds"))
            let entries = journal.withLock { $0["SagaActor/\("s-slow")"] ?? [] }
            #expect(entries == ["reserve", "pay#1", "pay#2", "pay#3", "release"])
        }
    }

    @Test("a step's timeout set while the system runs applies to the next attempts; unknown sagas and steps are refused")
    func liveTimeout() async throws {
        let saga = SagaDefinition("tunable", steps: [
            SagaStep("wait", timeout: .seconds(30), maxAttempts: 1,
                     action: { context in record(context.sagaID, "wait"); try await Task.sleep(for: .seconds(5)) }),
        ])
        try await LocalCluster().run(nodes: 1, register: { Self.register($0); $0.sagas.register(saga) }) { systems in
            let sagas = systems[0].sagas
            #expect(throws: SagaConfigurationError.self) { try sagas.setTimeout(.seconds(1), saga: "tunable", step: "nap") }
            #expect(throws: SagaConfigurationError.self) { try sagas.setTimeout(.seconds(1), saga: "nothing", step: "wait") }
            #expect(throws: SagaConfigurationError.self) { try sagas.setTimeout(.zero, saga: "tunable", step: "wait") }
            try sagas.setTimeout(.milliseconds(150), saga: "tunable", step: "wait")
            #expect(sagas.timeout(of: saga.steps[0], saga: "tunable") == .milliseconds(150))
            let started = ContinuousClock.now
            _ = try await systems[0].reference(SagaActor.self, key: "s-tunable").start(definition: "tunable", input: [])
            let snapshot = try await waitForSaga(systems[0], "s-tunable")
            #expect(snapshot.status == .compensated)
            #expect(snapshot.log.contains("wait#1 timed out after 0.15 seconds"), "\(snapshot.log)")
            #expect(ContinuousClock.now - started < .seconds(4), "the attempt ended at the live timeout, not the step's 30 s")
            try sagas.setTimeout(nil, saga: "tunable", step: "wait")
            #expect(sagas.timeout(of: saga.steps[0], saga: "tunable") == .seconds(30))
        }
    }

    @Test("the node running a saga dies mid-step: the saga completes on another node")
    func failover() async throws {
        try await Self.failover(store: InMemoryActorStateStore(), definition: "order")
    }

    static func failover(store: any ActorStateStore, definition: String) async throws {
        let gate = Locked(true)
        let payStartedOnNode1 = Locked(false)
        let saga = SagaDefinition(definition, steps: [
            SagaStep("reserve", action: { record($0.sagaID, "reserve on \($0.actorSystem.node.name)") }),
            SagaStep("pay", timeout: .seconds(60), action: { context in
                record(context.sagaID, "pay on \(context.actorSystem.node.name)")
                if context.actorSystem.node.name == "node-1" {
                    payStartedOnNode1.withLock { $0 = true }
                    while gate.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }  // hangs until the node "dies"
                    throw StepFailure()
                }
            }),
            SagaStep("confirm", action: { record($0.sagaID, "confirm on \($0.actorSystem.node.name)") }),
        ])
        defer { gate.withLock { $0 = false } }
        let cluster = LocalCluster()
        let membership = InMemoryMembership()
        let node1 = try await cluster.start(node: "node-1", membership: membership, stateStore: store, register: { Self.register($0); $0.sagas.register(saga) })
        let node2 = try await cluster.start(node: "node-2", membership: membership, stateStore: store, register: { Self.register($0); $0.sagas.register(saga) })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await node1.run() }
            group.addTask { try await node2.run() }
            defer { node1.shutdown(); node2.shutdown() }
            try await LocalCluster.waitForMembers([node1, node2], count: 2)
            let key = node1.firstKeyOwned(type: "SagaActor", prefix: definition)
            _ = try await node2.reference(SagaActor.self, key: key).start(definition: definition, input: [])
            try await withDeadline(.seconds(10)) { while !payStartedOnNode1.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) } }
            // node-1 dies in the middle of "pay".
            node1.shutdown()
            membership.remove(nodeNamed: "node-1")
            try await LocalCluster.waitForMembers([node2], count: 1)
            let snapshot = try await waitForSaga(node2, key)
            #expect(snapshot.status == .completed)
            #expect(snapshot.completedSteps == ["reserve", "pay", "confirm"])
            let entries = journal.withLock { $0["SagaActor/\(key)"] ?? [] }
            #expect(entries == ["reserve on node-1", "pay on node-1", "pay on node-2", "confirm on node-2"])
            node2.shutdown()
            group.cancelAll()
        }
    }

    @Test("a graceful stop in the middle of a step records no failure: the saga's next activation runs the step again and completes")
    func gracefulStopMidStep() async throws {
        let store = InMemoryActorStateStore()
        let firstRun = Locked(true)
        let payStarted = Locked(false)
        let saga = SagaDefinition("restart", steps: [
            SagaStep("reserve", action: { record($0.sagaID, "reserve") }),
            SagaStep("pay", timeout: .seconds(60), maxAttempts: 1, action: { context in
                record(context.sagaID, "pay")
                if firstRun.withLock({ $0 }) {
                    payStarted.withLock { $0 = true }
                    // The node stops meanwhile; the step then fails, as a call out of a stopping node does.
                    while !context.actorSystem.isShuttingDown, !Task.isCancelled { try? await Task.sleep(for: .milliseconds(5)) }
                    throw StepFailure()
                }
            }, compensation: { record($0.sagaID, "undo pay") }),
            SagaStep("confirm", action: { record($0.sagaID, "confirm") }),
        ])
        let register: @Sendable (ClusterActorSystem) -> Void = { Self.register($0); $0.sagas.register(saga) }
        let started = ContinuousClock.now
        try await LocalCluster().run(nodes: 1, stateStore: store, register: register) { systems in
            _ = try await systems[0].reference(SagaActor.self, key: "restart").start(definition: "restart", input: [])
            try await withDeadline(.seconds(10)) { while !payStarted.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) } }
        }  // stops the node in the middle of "pay"
        #expect(ContinuousClock.now - started < .seconds(10), "the stop cancelled the step instead of waiting for it")
        firstRun.withLock { $0 = false }
        try await LocalCluster().run(nodes: 1, stateStore: store, register: register) { systems in
            let snapshot = try await waitForSaga(systems[0], "restart")
            #expect(snapshot.status == .completed, "not compensated: the interrupted step failed only because its node stopped")
            #expect(snapshot.completedSteps == ["reserve", "pay", "confirm"])
        }
        #expect(journal.withLock { $0["SagaActor/restart"] ?? [] } == ["reserve", "pay", "pay", "confirm"])
    }

    @Test("the saga FSM refuses illegal transitions")
    func lifecycle() throws {
        #expect(try SagaLifecycle.apply(.start, to: .created) == .running)
        #expect(throws: (any Error).self) { try SagaLifecycle.apply(.allSucceeded, to: .compensating) }
        #expect(throws: (any Error).self) { try SagaLifecycle.apply(.start, to: .completed) }
    }
}
