import Synchronization
import TroupeCore
import TroupeEtcd

/// Leader election by name; engines: ``EtcdCoordinator`` and ``InProcessCoordinator``.
public protocol ElectionCoordinator: Sendable {
    /// Campaigns for `election` with `value`; once elected runs `body` (with the fencing token of this
    /// leadership) and resigns when it returns. Candidates are elected in campaign order.
    func lead<T: Sendable>(
        _ election: String, value: String, ttl: Duration, timeout: Duration,
        _ body: @escaping @Sendable (_ fencingToken: Int64) async throws -> T
    ) async throws -> T

    /// Calls `onChange` with the leader's value (`nil`: none) whenever it changes, until cancelled.
    func observe(_ election: String, onChange: @escaping @Sendable (String?) async -> Void) async throws
}

extension EtcdCoordinator: ElectionCoordinator {
    public func lead<T: Sendable>(
        _ election: String, value: String, ttl: Duration, timeout: Duration,
        _ body: @escaping @Sendable (_ fencingToken: Int64) async throws -> T
    ) async throws -> T {
        let leadership = try await campaign(election, value: value, ttl: ttl, timeout: timeout)
        let etcd = self.etcd
        let result: Result<T, any Error> = await withTaskGroup(of: Result<T, any Error>?.self) { group in
            group.addTask {
                do {
                    try await etcd.keepAlive(leadership.lease)
                    return nil
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                do { return .success(try await body(leadership.fencingToken)) } catch { return .failure(error) }
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(EtcdError(.leaseExpired, "leadership of \(election) was lost"))
        }
        try? await resign(leadership)
        return try result.get()
    }
}

extension InProcessCoordinator: ElectionCoordinator {
    public func lead<T: Sendable>(
        _ election: String, value: String, ttl: Duration, timeout: Duration,
        _ body: @escaping @Sendable (_ fencingToken: Int64) async throws -> T
    ) async throws -> T {
        // Leadership is the election's lock; the leader's value is published while it is held.
        try await withLock("election:" + election, ttl: .seconds(365 * 24 * 3600), timeout: timeout) { token in
            self.leaders.update { $0[election] = value }
            defer { self.leaders.update { $0[election] = nil } }
            return try await body(token)
        }
    }

    public func observe(_ election: String, onChange: @escaping @Sendable (String?) async -> Void) async throws {
        var last: String??
        for await leaders in self.leaders.subscribe() {
            let leader = leaders[election]
            if case .some(let previous) = last, previous == leader { continue }
            last = .some(leader)
            await onChange(leader)
        }
    }
}
