import Synchronization
import TroupeCore

/// Collapses concurrent loads of one key into a single call (breakdown protection in-process):
/// the first caller runs the work, the others wait for its result.
public final class SingleFlight<Value: Sendable>: Sendable {
    private let flights = Guarded<[String: [CheckedContinuation<Value, any Error>]]>([:])

    /// No flights in progress.
    public init() {}

    /// Runs `work` for `key` unless a run for `key` is already in flight, whose result is then shared.
    public func run(_ key: String, _ work: () async throws -> Value) async throws -> Value {
        let leader = flights.withLock { flights -> Bool in
            if flights[key] != nil { return false }
            flights[key] = []
            return true
        }
        guard leader else {
            return try await withCheckedThrowingContinuation { continuation in
                let joined = flights.withLock { flights -> Bool in
                    guard flights[key] != nil else { return false }
                    flights[key]?.append(continuation)
                    return true
                }
                // The leader finished between our two looks; run again rather than wait for nothing.
                if !joined { continuation.resume(throwing: SingleFlightRetry()) }
            }
        }
        let result: Result<Value, any Error>
        do {
            result = .success(try await work())
        } catch {
            result = .failure(error)
        }
        let waiters = flights.withLock { $0.removeValue(forKey: key) ?? [] }
        for waiter in waiters { waiter.resume(with: result) }
        return try result.get()
    }

    /// How many keys are being loaded right now.
    public var inFlight: Int { flights.withLock { $0.count } }
}

/// Internal: a follower arrived just as the leader finished.
struct SingleFlightRetry: Error {}

extension SingleFlight {
    /// ``run(_:_:)`` that transparently retries the rare follower that missed its leader.
    public func share(_ key: String, _ work: () async throws -> Value) async throws -> Value {
        while true {
            do {
                return try await run(key, work)
            } catch is SingleFlightRetry {
                continue
            }
        }
    }
}
