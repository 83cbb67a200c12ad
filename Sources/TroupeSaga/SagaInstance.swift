import TroupeCore

/// The decisions of one saga, without I/O: from its persisted progress, what to do next; from an outcome,
/// how the progress changes. ``SagaActor`` is the shell that performs what it decides (runs actions and
/// compensations with their timeouts and retries, writes the progress, sleeps) — the split of SWIM's
/// `Instance` and `Shell` in swift-cluster-membership, so that every decision can be tested, and replayed,
/// without an actor system, a store or a clock.
///
/// Every outcome is applied to the progress as *stored* (inside the actor's serialised write), so a decision
/// made from an older copy cannot undo a newer one: an outcome that no longer fits (the step is no longer the
/// one to run, the saga is no longer in that phase) throws ``SagaInstance/Stale``.
public struct SagaInstance: Sendable, Hashable {
    /// What the instance needs of a step: its name and how its failure is handled.
    public struct Step: Sendable, Hashable {
        /// The step's name.
        public var name: String
        /// Attempts of the action before the saga compensates (at least 1).
        public var maxAttempts: Int
        /// Whether the step's own compensation runs when its action failed.
        public var compensateOnFailure: Bool

        /// A step; `maxAttempts` below 1 counts as 1.
        public init(name: String, maxAttempts: Int, compensateOnFailure: Bool) {
            self.name = name
            self.maxAttempts = max(1, maxAttempts)
            self.compensateOnFailure = compensateOnFailure
        }
    }

    /// What the shell does next.
    public enum Directive: Sendable, Hashable {
        /// Not started: nothing to do until ``SagaInstance/start(definition:input:)``.
        case awaitStart
        /// Run the action of `step` (up to its `maxAttempts`), then report ``SagaInstance/actionSucceeded(_:log:)``
        /// or ``SagaInstance/actionFailed(_:failure:log:nowMS:)``.
        case runAction(Step)
        /// Run the compensation of `step` until it succeeds or `deadlineMS` (milliseconds since 1970) passes,
        /// then report ``SagaInstance/compensated(_:log:)`` or ``SagaInstance/compensationGaveUp(_:failure:log:)``.
        case runCompensation(Step, deadlineMS: Int64)
        /// Write the transition with nothing to run first (every step done, or nothing left to undo).
        case record(SagaEvent)
        /// The saga is final.
        case finished(SagaStatus)
    }

    /// An outcome that no longer fits the stored progress (it was decided from an older copy).
    public struct Stale: Error, Sendable, CustomStringConvertible {
        /// What did not fit.
        public var description: String
    }

    /// The definition's steps, in order.
    public let steps: [Step]
    /// How long compensations are retried once the saga compensates.
    public let compensationDeadline: Duration
    public private(set) var progress: SagaSnapshot

    /// An instance of `steps` at `progress` (stored progress, or a new snapshot).
    public init(steps: [Step], compensationDeadline: Duration, progress: SagaSnapshot) {
        self.steps = steps
        self.compensationDeadline = compensationDeadline
        self.progress = progress
    }

    /// The next thing to do, from the progress alone (`nowMS` stands in for the start of compensating in
    /// progress written before that was recorded).
    public func next(nowMS: Int64) -> Directive {
        switch progress.status {
        case .created:
            return .awaitStart
        case .running:
            let index = progress.completedSteps.count
            return index < steps.count ? .runAction(steps[index]) : .record(.allSucceeded)
        case .compensating:
            guard let step = nextToUndo else { return .record(.allCompensated) }
            let since = progress.compensatingSince ?? nowMS
            return .runCompensation(step, deadlineMS: since + Int64(compensationDeadline.seconds * 1000))
        case .completed, .compensated, .failed:
            return .finished(progress.status)
        }
    }

    /// The step to compensate next: the last of the steps done (and the failed one, when it is compensated on
    /// failure) that is not compensated yet — reverse order.
    var nextToUndo: Step? {
        var undo = progress.completedSteps
        if let failed = progress.failedStep, step(named: failed)?.compensateOnFailure == true { undo.append(failed) }
        return undo.last { !progress.compensatedSteps.contains($0) }.flatMap(step(named:))
    }

    func step(named name: String) -> Step? { steps.first { $0.name == name } }

    /// Starts the saga; `false` when it had already started (a second start changes nothing).
    public mutating func start(definition: String, input: [UInt8]) throws -> Bool {
        guard progress.status == .created else { return false }
        progress.definition = definition
        progress.input = input
        progress.status = try SagaLifecycle.apply(.start, to: progress.status)
        return true
    }

    /// The action of `step` succeeded: the next step, or — after the last — completed, in one write.
    public mutating func actionSucceeded(_ step: Step, log: [String]) throws {
        try expectAction(step)
        progress.log += log
        progress.completedSteps.append(step.name)
        progress.status = try SagaLifecycle.apply(.stepSucceeded, to: progress.status)
        if progress.completedSteps.count == steps.count { progress.status = try SagaLifecycle.apply(.allSucceeded, to: progress.status) }
    }

    /// The action of `step` failed for good: the saga compensates from now on (`nowMS` starts its deadline).
    public mutating func actionFailed(_ step: Step, failure: String, log: [String], nowMS: Int64) throws {
        try expectAction(step)
        progress.log += log
        progress.failure = "\(step.name): \(failure)"
        progress.failedStep = step.name
        progress.compensatingSince = nowMS
        progress.status = try SagaLifecycle.apply(.stepFailed, to: progress.status)
    }

    /// The compensation of `step` succeeded.
    public mutating func compensated(_ step: Step, log: [String]) throws {
        guard progress.status == .compensating, nextToUndo == step else { throw stale("compensated \(step.name)") }
        progress.log += log
        progress.compensatedSteps.append(step.name)
        progress.status = try SagaLifecycle.apply(.compensated, to: progress.status)
    }

    /// The compensation of `step` kept failing until its deadline: the saga ends `failed`.
    public mutating func compensationGaveUp(_ step: Step, failure: String, log: [String]) throws {
        guard progress.status == .compensating, nextToUndo == step else { throw stale("gave up compensating \(step.name)") }
        progress.log += log
        progress.failure = (progress.failure.map { $0 + "; " } ?? "") + "compensation of \(step.name): \(failure)"
        progress.status = try SagaLifecycle.apply(.compensationFailed, to: progress.status)
    }

    /// Writes a transition ``next(nowMS:)`` asked to ``Directive/record(_:)``.
    public mutating func record(_ event: SagaEvent) throws {
        guard next(nowMS: 0) == .record(event) else { throw stale("\(event) while the saga is \(progress.status)") }
        progress.status = try SagaLifecycle.apply(event, to: progress.status)
    }

    private func expectAction(_ step: Step) throws {
        let index = progress.completedSteps.count
        guard progress.status == .running, index < steps.count, steps[index] == step else {
            throw stale("the action of \(step.name) while the saga is \(progress.status) after \(progress.completedSteps)")
        }
    }

    private func stale(_ what: String) -> Stale { Stale(description: "saga outcome no longer fits its stored progress: \(what)") }
}

extension SagaDefinition {
    /// The instance of this definition over `progress`.
    public func instance(_ progress: SagaSnapshot) -> SagaInstance {
        SagaInstance(steps: steps.map { SagaInstance.Step(name: $0.name, maxAttempts: $0.maxAttempts, compensateOnFailure: $0.compensateOnFailure) },
                     compensationDeadline: compensationDeadline, progress: progress)
    }
}
