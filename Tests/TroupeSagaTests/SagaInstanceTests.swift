import Testing
import TroupeCore
@testable import TroupeSaga

/// The saga's decisions without an actor system: every test drives ``SagaInstance`` by hand.
@Suite("Saga instance (pure decisions)")
struct SagaInstanceTests {
    typealias Step = SagaInstance.Step
    static let reserve = Step(name: "reserve", maxAttempts: 3, compensateOnFailure: true)
    static let charge = Step(name: "charge", maxAttempts: 2, compensateOnFailure: true)
    static let ship = Step(name: "ship", maxAttempts: 1, compensateOnFailure: false)

    static func started() throws -> SagaInstance {
        var instance = SagaInstance(steps: [reserve, charge, ship], compensationDeadline: .seconds(600), progress: SagaSnapshot())
        #expect(instance.next(nowMS: 0) == .awaitStart)
        #expect(try instance.start(definition: "order", input: [1]))
        #expect(try !instance.start(definition: "order", input: [2]), "a second start changes nothing")
        #expect(instance.progress.input == [1])
        return instance
    }

    @Test("every step in order, the last success and the completion in one outcome")
    func happyPath() throws {
        var instance = try Self.started()
        for step in [Self.reserve, Self.charge, Self.ship] {
            #expect(instance.next(nowMS: 0) == .runAction(step))
            try instance.actionSucceeded(step, log: ["\(step.name)#1 ok"])
        }
        #expect(instance.next(nowMS: 0) == .finished(.completed))
        #expect(instance.progress.completedSteps == ["reserve", "charge", "ship"])
        #expect(instance.progress.log == ["reserve#1 ok", "charge#1 ok", "ship#1 ok"])
    }

    @Test("a failed step is compensated first when it may have taken effect, then the done steps in reverse; the deadline counts from the failure")
    func compensation() throws {
        var instance = try Self.started()
        try instance.actionSucceeded(Self.reserve, log: [])
        try instance.actionFailed(Self.charge, failure: "declined", log: ["charge#1 declined"], nowMS: 1_000)
        #expect(instance.progress.status == .compensating)
        #expect(instance.progress.failure == "charge: declined")
        #expect(instance.next(nowMS: 99_999) == .runCompensation(Self.charge, deadlineMS: 601_000))
        try instance.compensated(Self.charge, log: [])
        #expect(instance.next(nowMS: 0) == .runCompensation(Self.reserve, deadlineMS: 601_000))
        try instance.compensated(Self.reserve, log: [])
        #expect(instance.next(nowMS: 0) == .record(.allCompensated))
        try instance.record(.allCompensated)
        #expect(instance.next(nowMS: 0) == .finished(.compensated))
        #expect(instance.progress.compensatedSteps == ["charge", "reserve"])
    }

    @Test("a failed step that leaves nothing behind is not compensated; a failure on the first step with nothing to undo ends compensated")
    func compensateOnFailureOff() throws {
        var instance = try Self.started()
        try instance.actionSucceeded(Self.reserve, log: [])
        try instance.actionSucceeded(Self.charge, log: [])
        try instance.actionFailed(Self.ship, failure: "no courier", log: [], nowMS: 0)
        #expect(instance.next(nowMS: 0) == .runCompensation(Self.charge, deadlineMS: 600_000))

        var first = SagaInstance(steps: [Step(name: "only", maxAttempts: 1, compensateOnFailure: false)], compensationDeadline: .seconds(1),
                                 progress: SagaSnapshot())
        _ = try first.start(definition: "d", input: [])
        try first.actionFailed(first.steps[0], failure: "no", log: [], nowMS: 0)
        #expect(first.next(nowMS: 0) == .record(.allCompensated))
    }

    @Test("a compensation that gives up ends the saga failed, with both failures kept")
    func givesUp() throws {
        var instance = try Self.started()
        try instance.actionFailed(Self.reserve, failure: "timeout", log: [], nowMS: 5)
        try instance.compensationGaveUp(Self.reserve, failure: "store down", log: ["undo reserve#40 store down"])
        #expect(instance.next(nowMS: 0) == .finished(.failed))
        #expect(instance.progress.failure == "reserve: timeout; compensation of reserve: store down")
    }

    @Test("resumed from stored progress (another node), it goes on where the progress says; progress from before compensatingSince existed counts from now")
    func resumes() {
        var progress = SagaSnapshot()
        progress.definition = "order"
        progress.status = .compensating
        progress.completedSteps = ["reserve", "charge"]
        progress.failedStep = "ship"
        progress.compensatedSteps = ["charge"]
        let instance = SagaInstance(steps: [Self.reserve, Self.charge, Self.ship], compensationDeadline: .seconds(10), progress: progress)
        #expect(instance.next(nowMS: 7_000) == .runCompensation(Self.reserve, deadlineMS: 17_000))
    }

    @Test("an outcome decided from an older copy is refused and changes nothing")
    func staleOutcomes() throws {
        var instance = try Self.started()
        try instance.actionSucceeded(Self.reserve, log: [])
        let before = instance
        #expect(throws: SagaInstance.Stale.self) { try instance.actionSucceeded(Self.reserve, log: []) }
        #expect(throws: SagaInstance.Stale.self) { try instance.actionFailed(Self.ship, failure: "x", log: [], nowMS: 0) }
        #expect(throws: SagaInstance.Stale.self) { try instance.compensated(Self.reserve, log: []) }
        #expect(throws: SagaInstance.Stale.self) { try instance.record(.allSucceeded) }
        #expect(instance == before)
        try instance.actionFailed(Self.charge, failure: "x", log: [], nowMS: 0)
        #expect(throws: SagaInstance.Stale.self, "reserve is undone after charge") { try instance.compensated(Self.reserve, log: []) }
    }
}
