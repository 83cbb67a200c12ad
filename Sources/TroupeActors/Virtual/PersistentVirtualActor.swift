import Distributed
import TroupeCore

/// A virtual actor whose state is loaded on activation and written with compare-and-set.
///
/// ```swift
/// distributed actor Account: PersistentVirtualActor {
///     typealias ActorSystem = ClusterActorSystem
///     struct State: Codable, Sendable { var balance = 0 }
///     var persisted = Persisted(State())
///     init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }
///
///     distributed func deposit(_ amount: Int) async throws -> Int {
///         try await update { $0.balance += amount; return $0.balance }
///     }
/// }
/// ```
///
/// **Fencing.** Every write is conditional on the version this activation loaded or last wrote.
/// If another activation of the same key wrote in between (two nodes briefly both believed they
/// owned it), the write is refused, nothing is stored, this activation is deactivated and
/// ``ActorSystemError/Code/fenced`` is thrown; a call that arrived through the cluster is then
/// retried on the current owner, which loads the newer state.
public protocol PersistentVirtualActor: VirtualActor {
    associatedtype State: Codable & Sendable
    /// The state and the version it was loaded or written at; declare it `var persisted = Persisted(initial)`.
    var persisted: Persisted<State> { get set }
}

/// The state of a ``PersistentVirtualActor`` and its storage version.
public struct Persisted<State: Codable & Sendable>: Sendable {
    /// The last state loaded or successfully written.
    public internal(set) var value: State
    /// The store version of ``value``; 0 until the first write.
    public internal(set) var version: Int64 = 0
    /// The encoded form of ``value`` as stored (nil until loaded or written): an update that encodes to the
    /// same bytes changed nothing and is not written.
    var bytes: [UInt8]?
    /// The in-memory state holds changes made by ``PersistentVirtualActor/updateDeferred(_:)`` that are not stored yet.
    var deferred = false
    var fenced = false
    var writing = false
    var waiters: [CheckedContinuation<Void, Never>] = []

    /// The state an activation starts from when nothing is stored.
    public init(_ initial: State) {
        self.value = initial
    }
}

extension PersistentVirtualActor {
    /// The current state.
    public var state: State { persisted.value }

    public func _activate() async throws {
        if let stored = try await actorSystem.loadState(of: id) {
            do {
                persisted.value = try actorSystem.stateStore.codec.decode(State.self, from: stored)
            } catch {
                throw ActorSystemError(.stateStore, "stored state of \(id) cannot be decoded as \(State.self)", underlying: error)
            }
            persisted.version = stored.version
            persisted.bytes = stored.bytes
        }
        try await didActivate()
    }

    public func _passivate(storeDeferred store: Bool) async throws {
        try await willPassivate()
        if store { try await storeDeferred() }
    }

    /// Compares the stored version with this activation's, between writes (a write in flight is waited for).
    public func _isCurrent() async throws -> Bool {
        await beginWrite()
        defer { endWrite() }
        guard !persisted.fenced else { return false }
        return try await actorSystem.loadState(of: id)?.version ?? 0 == persisted.version
    }

    /// Changes the state in memory now and stores the change with this activation's next write (or when it is
    /// passivated), saving a write of its own. Only for changes that may be lost: if the process dies first,
    /// the next activation loads the state without it. The outbox forgets relayed events this way (relaying
    /// them again after a crash is harmless: their ids are fixed). Waits for a write in progress.
    public func updateDeferred(_ body: (inout State) -> Void) async {
        await beginWrite()
        defer { endWrite() }
        body(&persisted.value)
        persisted.deferred = true
    }

    /// Waits for this activation's write in progress and those queued before (writes are serialised).
    private func beginWrite() async {
        while persisted.writing {
            await withCheckedContinuation { continuation in persisted.waiters.append(continuation) }
        }
        persisted.writing = true
    }

    /// Lets the next queued write go.
    private func endWrite() {
        persisted.writing = false
        if !persisted.waiters.isEmpty { persisted.waiters.removeFirst().resume() }
    }

    /// Stores what ``updateDeferred(_:)`` changed, if a write has not stored it already.
    public func storeDeferred() async throws {
        guard persisted.deferred, !persisted.fenced else { return }
        try await update { _ in }
    }

    /// Applies `body` to a copy of the state and writes it; the in-memory state changes only if the
    /// write succeeds. Writes of one activation are serialised (one at a time, in call order).
    ///
    /// When `body` throws — a refusal decided from state ("insufficient funds", "the order is created; cannot
    /// complete") — the stored version is read before the error reaches the caller, after this activation's
    /// write has been let go (its other callers do not wait for the read): a stale activation, one that loaded
    /// before a newer activation elsewhere wrote, must not refuse from old state. If the stored version moved
    /// on, this activation is fenced and the caller re-routes to the current one.
    /// - Throws: ``ActorSystemError/Code/fenced`` when a newer activation wrote first; errors of `body`;
    ///   ``ActorSystemError/Code/stateStore`` when the version behind a refusal cannot be read.
    @discardableResult
    public func update<Result>(_ body: (inout State) throws -> Result) async throws -> Result {
        let refusal: any Error
        let decidedAt: Int64
        do {
            return try await updateSerialised(body)
        } catch let refused as Refusal {
            (refusal, decidedAt) = (refused.error, refused.version)
        }
        let stored = try await actorSystem.loadState(of: id)?.version ?? 0
        // Current when the refusal was decided; or this activation wrote since (its compare-and-set on the
        // version the refusal saw succeeded, so nothing else had written then).
        guard !persisted.fenced, stored == decidedAt || stored == persisted.version else {
            persisted.fenced = true
            actorSystem.deactivateFenced(id, instance: ObjectIdentifier(self))
            throw ActorSystemError(.fenced, "\(id) refused from state a newer activation has changed; it was deactivated")
        }
        throw refusal
    }

    private func updateSerialised<Result>(_ body: (inout State) throws -> Result) async throws -> Result {
        await beginWrite()
        defer { endWrite() }
        guard !persisted.fenced else {
            // Still registered (it should not be): take it out, so the caller's re-route reaches a fresh activation.
            actorSystem.deactivateFenced(id, instance: ObjectIdentifier(self))
            throw ActorSystemError(.fenced, "\(id) was deactivated after losing a write to a newer activation")
        }
        // A remote caller that already gave up (its deadline passed while this call waited for the writes queued
        // before it) gets nothing from the write: skip it. Under overload, callers retry, and a hot actor that
        // still performed every abandoned call fell further behind with each retry.
        if let deadline = ClusterActorSystem.servedCallDeadline, actorSystem.clock.now >= deadline {
            throw ActorSystemError(.timeout, "the caller of \(id) gave up before this write; it was not made")
        }
        var next = persisted.value
        let result: Result
        do {
            result = try body(&next)
        } catch {
            throw Refusal(error: error, version: persisted.version)
        }
        let bytes: [UInt8]
        do {
            bytes = try actorSystem.stateStore.codec.encode(next)
        } catch {
            throw ActorSystemError(.serialization, "cannot encode the state of \(id)", underlying: error)
        }
        // Nothing changed (an idempotent call repeated: a redelivered event, a reminder for a settled order):
        // no write — only a read of the stored version, which is what fencing needs (a stale activation must not
        // answer "nothing to do" from old state). A read costs far less than a journaled write.
        let written: Bool
        if persisted.version > 0, let stored = persisted.bytes, stored == bytes {
            written = try await actorSystem.loadState(of: id)?.version == persisted.version
            if written {
                persisted.deferred = false
                return result
            }
        } else {
            written = try await actorSystem.writeState(of: id, expectedVersion: persisted.version, bytes: bytes)
        }
        guard written else {
            persisted.fenced = true
            actorSystem.deactivateFenced(id, instance: ObjectIdentifier(self))
            throw ActorSystemError(.fenced, "\(id) lost a write to a newer activation and was deactivated")
        }
        persisted.value = next
        persisted.version += 1
        persisted.bytes = bytes
        persisted.deferred = false
        return result
    }
}

/// An error thrown by an update's body, and the state version it was decided from (see
/// ``PersistentVirtualActor/update(_:)``).
private struct Refusal: Error {
    let error: any Error
    let version: Int64
}
