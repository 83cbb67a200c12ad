import Distributed
import Foundation
import Logging
import Metrics
import Tracing
public import TroupeActors
public import TroupeCore

/// One step of a saga: an action and the compensation that undoes it. Both must be idempotent — after a
/// crash a step may run again on another node.
public struct SagaStep: Sendable {
    /// The step's name (in progress, logs, metrics and the live setting `sagas/<saga>/<step>/timeoutMs`).
    public var name: String
    /// How long one attempt of the action or compensation may run before it is cancelled and counted as failed.
    public var timeout: Duration
    /// Attempts of the action before the saga gives up and compensates (compensations retry until they succeed
    /// or `maxCompensationAttempts` is reached).
    public var maxAttempts: Int
    /// The pause between attempts.
    public var backoff: Backoff
    /// What the step does (idempotent: it may run again after a crash).
    public var action: @Sendable (SagaContext) async throws -> Void
    /// What undoes the action (idempotent, and harmless when the action never took effect).
    public var compensation: @Sendable (SagaContext) async throws -> Void
    /// Whether the compensation also runs for this step when its action *failed*. A failed remote call may
    /// still have taken effect (the reply was lost, the caller timed out, the callee's node died after
    /// persisting), so by default it does: compensations must be idempotent and harmless when the action
    /// never happened. Turn it off only for actions whose failure is known to leave nothing behind.
    public var compensateOnFailure: Bool

    /// A step named `name`; `maxAttempts` below 1 counts as 1.
    public init(_ name: String, timeout: Duration = .seconds(10), maxAttempts: Int = 3, backoff: Backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5)),
                compensateOnFailure: Bool = true,
                action: @escaping @Sendable (SagaContext) async throws -> Void,
                compensation: @escaping @Sendable (SagaContext) async throws -> Void = { _ in }) {
        self.name = name
        self.timeout = timeout
        self.maxAttempts = max(1, maxAttempts)
        self.backoff = backoff
        self.action = action
        self.compensation = compensation
        self.compensateOnFailure = compensateOnFailure
    }
}

/// A named, ordered list of steps. Register definitions on every node with ``SagaRegistry/register(_:)`` (`system.sagas.register(…)`).
///
/// A saga never gives up on undoing what it did while that can still succeed: each compensation is retried
/// with its step's backoff (at most `compensationBackoffCap` apart) for as long as `compensationDeadline`
/// allows, counted from the moment the saga started compensating (persisted, so a saga that moves to another
/// node keeps its deadline). Only then does it end `failed` — logged as an error and counted in
/// `troupe_saga_compensation_exhausted_total` — and the owner of what is still held (a reservation's expiry,
/// a reconciler) must release it.
public struct SagaDefinition: Sendable {
    /// The saga's name, which ``SagaActor/start(definition:input:)`` names.
    public var name: String
    /// The steps, run in order and compensated in reverse.
    public var steps: [SagaStep]
    /// How long compensations are retried, counted from the moment the saga started compensating.
    public var compensationDeadline: Duration
    /// The longest pause between two attempts of a compensation.
    public var compensationBackoffCap: Duration

    /// A saga named `name` of `steps`.
    public init(_ name: String, steps: [SagaStep], compensationDeadline: Duration = .seconds(600), compensationBackoffCap: Duration = .seconds(10)) {
        self.name = name
        self.steps = steps
        self.compensationDeadline = compensationDeadline
        self.compensationBackoffCap = compensationBackoffCap
    }
}

/// What a step sees: the saga id, its input and the actor system to call other actors through.
public struct SagaContext: Sendable {
    /// The saga's actor id (`SagaActor/<key>`).
    public let sagaID: String
    /// The input the saga was started with.
    public let input: [UInt8]
    /// The system to call other actors through.
    public let actorSystem: ClusterActorSystem
    /// Attempt number of this action or compensation (1-based).
    public let attempt: Int

    /// The input decoded from JSON as `type`.
    public func decodeInput<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(input))
    }
}

/// The saga definitions of one actor system, by name: register the same definitions on every node
/// (`system.sagas.register(…)`) before it runs.
public final class SagaRegistry: Sendable {
    private let definitions = Guarded<[String: SagaDefinition]>([:])
    /// Step timeouts set while the process runs (live configuration), by "saga/step".
    private let timeouts = Guarded<[String: Duration]>([:])

    init() {}

    /// Makes `definition` runnable by this system's ``SagaActor``s (register it on every node).
    public func register(_ definition: SagaDefinition) {
        definitions.withLock { $0[definition.name] = definition }
    }

    /// The registered definition named `name`.
    public func definition(_ name: String) -> SagaDefinition? { definitions.withLock { $0[name] } }

    /// Overrides the timeout of step `step` of saga `saga` for attempts that start from now on (`nil`: back to
    /// the definition's). Throws when no registered saga has that step.
    public func setTimeout(_ timeout: Duration?, saga: String, step: String) throws(SagaConfigurationError) {
        guard let definition = definition(saga) else { throw SagaConfigurationError("no saga \(saga) is registered") }
        guard definition.steps.contains(where: { $0.name == step }) else {
            throw SagaConfigurationError("saga \(saga) has no step \(step) (its steps: \(definition.steps.map(\.name).joined(separator: ", ")))")
        }
        if let timeout { guard timeout > .zero else { throw SagaConfigurationError("a step timeout must be positive") } }
        timeouts.withLock { $0["\(saga)/\(step)"] = timeout }
    }

    /// The timeout an attempt of `step` of saga `saga` runs with: the live override, or the step's own.
    public func timeout(of step: SagaStep, saga: String) -> Duration {
        timeouts.withLock { $0["\(saga)/\(step.name)"] } ?? step.timeout
    }
}

/// A saga setting that names no registered saga or step, or an invalid value.
public struct SagaConfigurationError: Error, Sendable, CustomStringConvertible {
    /// What is wrong, in words.
    public var description: String
    init(_ description: String) { self.description = description }
}

extension ClusterActorSystem {
    /// The saga definitions this system's ``SagaActor``s run.
    public var sagas: SagaRegistry { extensions.instance(SagaRegistry.self) { SagaRegistry() } }
}

/// The lifecycle of a saga — a pure FSM: illegal transitions throw.
public enum SagaStatus: String, Codable, Sendable, Hashable {
    case created, running, compensating, completed, compensated, failed

    /// Whether the saga is over: completed, compensated or failed.
    public var isFinal: Bool { self == .completed || self == .compensated || self == .failed }
}

/// What moves a saga from one status to the next.
public enum SagaEvent: String, Codable, Sendable, Hashable {
    case start, stepSucceeded, allSucceeded, stepFailed, compensated, allCompensated, compensationFailed
}

/// The saga's lifecycle as a finite-state machine over ``SagaStatus`` and ``SagaEvent`` (illegal transitions throw).
public enum SagaLifecycle {
    /// The transitions: a saga starts, runs its steps, and on a failure compensates the steps that succeeded.
    public static let definition = FSMDefinition<SagaStatus, SagaEvent, Never>(transitions: [
        .init(from: .created, on: .start, to: .running),
        .init(from: .running, on: .stepSucceeded, to: .running),
        .init(from: .running, on: .allSucceeded, to: .completed),
        .init(from: .running, on: .stepFailed, to: .compensating),
        .init(from: .compensating, on: .compensated, to: .compensating),
        .init(from: .compensating, on: .allCompensated, to: .compensated),
        .init(from: .compensating, on: .compensationFailed, to: .failed),
    ])

    static func apply(_ event: SagaEvent, to status: SagaStatus) throws -> SagaStatus {
        var machine = StateMachine(definition, initial: status)
        _ = try machine.fire(event)
        return machine.state
    }
}

/// A saga's progress, persisted after every transition (and what `status()` returns).
public struct SagaSnapshot: Codable, Sendable, Hashable {
    /// The name of the saga's definition.
    public var definition: String = ""
    /// The input the saga was started with.
    public var input: [UInt8] = []
    /// Where the saga is in its lifecycle.
    public var status: SagaStatus = .created
    /// Steps whose action succeeded, in order.
    public var completedSteps: [String] = []
    /// The step whose action failed (compensated first when its ``SagaStep/compensateOnFailure`` is set).
    public var failedStep: String?
    /// Steps compensated so far, in the order they were compensated.
    public var compensatedSteps: [String] = []
    /// Why the failed step failed (and, when compensation gave up, why that failed too).
    public var failure: String?
    /// When the saga started compensating (milliseconds since 1970): its compensations retry until
    /// ``SagaDefinition/compensationDeadline`` after this.
    public var compensatingSince: Int64?
    /// When the saga started (milliseconds since 1970, the system's wall clock); nil in progress stored before
    /// this field existed. `troupe_saga_duration_seconds` measures from here to the final status.
    public var startedAt: Int64?
    /// Every action and compensation attempt, for the dashboard: "reserve#1 ok", "pay#2 timeout", ...
    public var log: [String] = []
}

/// The saga orchestrator: a virtual actor (key = saga id) that drives its definition's steps, persisting
/// progress after every transition, so that a saga whose node dies resumes on the next activation —
/// any call (`status()` from the gateway, say) reactivates it on a live node.
public distributed actor SagaActor: PersistentVirtualActor {
    public typealias ActorSystem = ClusterActorSystem
    static let logger = Logger(label: "troupe.saga")

    /// Sagas are placed by their id alone: an actor type declaring the same group (the saga's subject, an
    /// order say, keyed by the saga's id) lives on the saga's node, so the saga's calls to it stay in process.
    public static var placementGroup: String? { "saga" }

    /// The saga's progress, stored after every transition.
    public var persisted = Persisted(SagaSnapshot())
    var driving = false
    /// Attempt log lines not yet persisted: written with the next transition (one write per transition).
    var pendingLog: [String] = []

    private func takeLog() -> [String] {
        defer { pendingLog.removeAll() }
        return pendingLog
    }

    /// An activation (made by the runtime).
    public init(actorSystem: ClusterActorSystem) {
        self.actorSystem = actorSystem
    }

    /// Resumes driving a saga that was running or compensating when its last activation ended.
    public func didActivate() async throws {
        if state.status == .running || state.status == .compensating { startDriving() }
    }

    /// Starts the saga (idempotent: a second start of the same id returns the current status).
    public distributed func start(definition: String, input: [UInt8]) async throws -> SagaStatus {
        guard state.status == .created else { return state.status }
        guard let saga = actorSystem.sagas.definition(definition) else {
            throw ActorSystemError(.invalidConfiguration, "saga definition \(definition) is not registered on \(actorSystem.node.name)")
        }
        let startedAt = actorSystem.clock.wallClockMilliseconds
        try await update { snapshot in
            // Writes are serialised: a concurrent start (a retried request) may have written while this one waited,
            // and then this start changes nothing.
            var instance = saga.instance(snapshot)
            if try instance.start(definition: definition, input: input) {
                snapshot = instance.progress
                snapshot.startedAt = startedAt
            }
        }
        startDriving()
        return state.status
    }

    /// The saga's state. Reading an unfinished saga also makes sure it is being driven: an activation that
    /// holds a running or compensating saga without driving it (its drive ended on an error, or it was
    /// activated in a way that skipped the start) resumes on the next read, so the reconciler's and the
    /// audit's reads repair a stalled saga instead of only reporting it.
    public distributed func status() -> SagaSnapshot {
        if state.status == .running || state.status == .compensating { startDriving() }
        return state
    }

    private func startDriving() {
        guard !driving else { return }
        // A stopped system drives nothing: the saga's next activation resumes from its stored progress.
        driving = actorSystem.background.spawn { await self.drive() }
    }

    private func drive() async {
        defer { driving = false }
        let active = Self.metrics.active(saga: state.definition)
        active.increment()
        defer { active.decrement() }
        guard let definition = actorSystem.sagas.definition(state.definition) else {
            Self.logger.error("saga definition missing; the saga waits", metadata: ["saga.id": "\(id)", "saga.definition": "\(state.definition)"])
            return
        }
        while true {
            do {
                try await driveSteps(definition)
                return
            } catch let stale as SagaInstance.Stale {
                // An outcome decided from an older copy of the progress: decide again from the stored one.
                Self.logger.debug("saga outcome refused as stale; deciding again", metadata: ["saga.id": "\(id)", "saga.error": "\(stale)"])
                // Not a hot loop should the decision keep being refused.
                await actorSystem.pause(.milliseconds(50))
                if Task.isCancelled || actorSystem.isShuttingDown { return }
            } catch let error as ActorSystemError where error.code == .fenced {
                // Another activation wrote first: this one is deactivated. Hand over — wake the current owner
                // (which loads the newer state and resumes driving if the saga is not finished) — instead of
                // leaving the saga to wait for the next call.
                Self.logger.info("saga fenced; handing over to the current activation", metadata: ["saga.id": "\(id)"])
                await handOver()
                return
            } catch {
                // The store failed: this activation still owns the saga; it resumes after a pause.
                // Every saga of the node pauses when the store is down: one line per 30 s for all of them.
                if let held = actorSystem.extensions.instance(SagaLogThrottles.self, orMake: SagaLogThrottles.init).storeFailures.admit(now: actorSystem.clock.now) {
                    Self.logger.warning("saga paused by a store failure; resuming", metadata: [
                        "saga.id": "\(id)", "saga.error": "\(error)", "log.suppressed": "\(held)",
                    ])
                }
                await actorSystem.pause(.seconds(1))
                if Task.isCancelled || actorSystem.isShuttingDown { return }
            }
        }
    }

    /// Performs what the saga's instance decides (``SagaInstance``), from where the persisted progress says,
    /// until the saga is final. Each outcome is applied to the stored progress inside the serialised write.
    private func driveSteps(_ definition: SagaDefinition) async throws {
        while true {
            switch definition.instance(state).next(nowMS: actorSystem.clock.wallClockMilliseconds) {
            case .awaitStart, .finished:
                return
            case .record(let event):
                try await advance(definition) { try $0.record(event) }
            case .runAction(let plan):
                let step = try Self.step(plan, of: definition)
                let started = ContinuousClock.now
                let failure = await attempt(step, compensation: false, maxAttempts: plan.maxAttempts)
                if failure != nil, stopping { return }
                Self.metrics.step(saga: definition.name, step: plan.name, phase: "action", failed: failure != nil, since: started)
                let log = takeLog()
                if let failure {
                    let now = actorSystem.clock.wallClockMilliseconds
                    try await advance(definition) { try $0.actionFailed(plan, failure: failure, log: log, nowMS: now) }
                } else {
                    try await advance(definition) { try $0.actionSucceeded(plan, log: log) }
                }
            case .runCompensation(let plan, let deadline):
                let step = try Self.step(plan, of: definition)
                let started = ContinuousClock.now
                let failure = await attempt(step, compensation: true, until: deadline, backoffCap: definition.compensationBackoffCap)
                if failure != nil, stopping { return }
                Self.metrics.step(saga: definition.name, step: plan.name, phase: "compensation", failed: failure != nil, since: started)
                let log = takeLog()
                if let failure {
                    Self.metrics.compensationExhausted.increment()
                    Self.logger.error("saga compensation gave up; what it holds must be released by its owner", metadata: [
                        "saga.id": "\(id)", "saga.step": "\(plan.name)", "saga.error": "\(failure)"])
                    try await advance(definition) { try $0.compensationGaveUp(plan, failure: failure, log: log) }
                } else {
                    try await advance(definition) { try $0.compensated(plan, log: log) }
                }
            }
        }
    }

    /// This drive was cancelled or the system is shutting down. A step that failed then is not recorded as
    /// failed — it failed because its node stopped, not on its merits, and recording it would compensate (or
    /// give up on) a saga that a graceful restart interrupted: the saga's next activation runs it again from
    /// the stored progress (steps are idempotent).
    private var stopping: Bool { Task.isCancelled || actorSystem.isShuttingDown }

    /// Applies an outcome to the stored progress (a fenced, serialised write).
    private func advance(_ definition: SagaDefinition, _ outcome: (inout SagaInstance) throws -> Void) async throws {
        let before = state.status
        try await update { snapshot in
            var instance = definition.instance(snapshot)
            try outcome(&instance)
            snapshot = instance.progress
        }
        // Counted once, by the write that made the saga final.
        if !before.isFinal, state.status.isFinal {
            let took = state.startedAt.map { Duration.milliseconds(max(0, actorSystem.clock.wallClockMilliseconds - $0)) }
            Self.metrics.finished(saga: definition.name, status: state.status, took: took)
        }
    }

    private static func step(_ plan: SagaInstance.Step, of definition: SagaDefinition) throws -> SagaStep {
        guard let step = definition.steps.first(where: { $0.name == plan.name }) else {
            throw ActorSystemError(.invalidConfiguration, "saga \(definition.name) has no step \(plan.name)")
        }
        return step
    }

    /// Wakes the saga's current activation (wherever it lives now) with a status call, retried until one
    /// answers or the system shuts down. Runs at the end of this activation's drive (its own task).
    private nonisolated func handOver() async {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        while !Task.isCancelled, !actorSystem.isShuttingDown {
            if (try? await actorSystem.reference(SagaActor.self, key: id.key).status()) != nil { return }
            await actorSystem.pause(&backoff)
        }
    }


    /// `troupe_saga_*`: steps by saga, step, phase and outcome with their durations, sagas finished by status with
    /// the time from their start.
    /// Series are made once each (sagas and steps come from the registered definitions: bounded).
    final class SagaMetrics: Sendable {
        let compensationExhausted = Counter(label: MetricFamilies.sagaCompensationExhausted.name)
        private let steps = Guarded<[String: (ok: Counter, failed: Counter, duration: Metrics.Timer)]>([:])
        private let outcomes = Guarded<[String: (count: Counter, duration: Metrics.Timer)]>([:])
        private let driven = SeriesCache<Meter>(limit: 256)

        /// Sagas being driven on this node now (running or compensating), by saga.
        func active(saga: String) -> Meter {
            driven(saga) { saga in Meter(label: MetricFamilies.sagasActive.name, dimensions: [("saga", saga)]) }
        }

        func step(saga: String, step: String, phase: String, failed: Bool, since start: ContinuousClock.Instant) {
            let series = steps.withLock { steps in
                let key = "\(saga)\u{0}\(step)\u{0}\(phase)"
                if let known = steps[key] { return known }
                let dimensions = [("saga", saga), ("step", step), ("phase", phase)]
                let made = (ok: Counter(label: MetricFamilies.sagaSteps.name, dimensions: dimensions + [("outcome", "ok")]),
                            failed: Counter(label: MetricFamilies.sagaSteps.name, dimensions: dimensions + [("outcome", "failed")]),
                            duration: Metrics.Timer(label: MetricFamilies.sagaStepDuration.name, dimensions: dimensions))
                steps[key] = made
                return made
            }
            (failed ? series.failed : series.ok).increment()
            series.duration.recordNanoseconds((ContinuousClock.now - start).nanoseconds)
        }

        func finished(saga: String, status: SagaStatus, took: Duration?) {
            let series = outcomes.withLock { outcomes in
                let key = "\(saga)\u{0}\(status.rawValue)"
                if let known = outcomes[key] { return known }
                let dimensions = [("saga", saga), ("status", status.rawValue)]
                let made = (count: Counter(label: MetricFamilies.sagasFinished.name, dimensions: dimensions),
                            duration: Metrics.Timer(label: MetricFamilies.sagaDuration.name, dimensions: dimensions))
                outcomes[key] = made
                return made
            }
            series.count.increment()
            if let took { series.duration.recordNanoseconds(took.nanoseconds) }
        }
    }

    static let metrics = SagaMetrics()

    /// Runs a compensation with its timeout until it succeeds or `deadline` (ms since 1970) passes; nil on success.
    private func attempt(_ step: SagaStep, compensation: Bool, until deadline: Int64, backoffCap: Duration) async -> String? {
        var step = step
        step.backoff.maximum = min(step.backoff.maximum, backoffCap)
        var attempts = 0
        while true {
            attempts += 1
            guard let failure = await attempt(step, compensation: compensation, maxAttempts: 1, firstAttempt: attempts) else { return nil }
            if actorSystem.clock.wallClockMilliseconds >= deadline || Task.isCancelled || actorSystem.isShuttingDown { return failure }
            await actorSystem.pause(&step.backoff)
        }
    }

    /// Runs an action or compensation with its timeout and retries; nil on success, else the last failure.
    private func attempt(_ step: SagaStep, compensation: Bool, maxAttempts: Int, firstAttempt: Int = 1) async -> String? {
        var backoff = step.backoff
        var lastFailure = "not attempted"
        let body = compensation ? step.compensation : step.action
        let label = compensation ? "undo \(step.name)" : step.name
        for attempt in firstAttempt..<(firstAttempt + maxAttempts) {
            let context = SagaContext(sagaID: "\(id)", input: state.input, actorSystem: actorSystem, attempt: attempt)
            // A span per attempt, under the span of the call that started (or resumed) the saga: the drive's task
            // inherits that context, and the step's actor calls are children of this span.
            let span = InstrumentationSystem.tracer.startSpan(compensation ? "saga.compensate \(step.name)" : "saga.step \(step.name)",
                                                              context: ServiceContext.current ?? .topLevel)
            if span.isRecording {
                span.attributes["saga.name"] = state.definition
                span.attributes["saga.id"] = "\(id.key)"
                span.attributes["saga.attempt"] = attempt
            }
            let outcome: String?
            let timeout = actorSystem.sagas.timeout(of: step, saga: state.definition)
            do {
                try await ServiceContext.withValue(span.context) {
                    try await Self.withTimeout(timeout, on: actorSystem.deadlines) { try await body(context) }
                }
                outcome = nil
            } catch is SagaTimeout {
                outcome = "timed out after \(timeout)"
            } catch {
                outcome = "\(error)"
            }
            if let outcome { span.setStatus(SpanStatus(code: .error, message: outcome)) }
            span.end()
            pendingLog.append("\(label)#\(attempt) \(outcome ?? "ok")")
            guard let outcome else { return nil }
            lastFailure = outcome
            if stopping { break }  // no more attempts from a stopping node: the next activation runs the step
            if attempt < firstAttempt + maxAttempts - 1 { await actorSystem.pause(&backoff) }
        }
        return lastFailure
    }

    struct SagaTimeout: Error {}

    /// The repeated messages of a system's sagas, written at most once per 30 s.
    final class SagaLogThrottles: Sendable {
        let storeFailures = SharedLogThrottle()
    }

    /// Runs `body` in its own task, cancelled when `timeout` passes first (then ``SagaTimeout`` is thrown
    /// once the body returned). The deadline is armed on the system's timer thread rather than raced by a
    /// sleeping task: a step costs two executor hops instead of seven.
    static func withTimeout(_ timeout: Duration, on deadlines: Deadlines, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let task = Task { try await body() }
        let timer = deadlines.arm(after: timeout) { task.cancel() }
        let outcome = await withTaskCancellationHandler {
            await task.result
        } onCancel: {
            task.cancel()
        }
        guard timer.disarm() else { throw SagaTimeout() }
        try outcome.get()
    }
}
