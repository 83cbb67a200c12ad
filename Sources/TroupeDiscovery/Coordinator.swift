import Foundation
import Logging
import TroupeCore
public import TroupeEtcd

/// A held etcd lock or leadership: the key that proves it, and a fencing token (the key's create
/// revision) that grows with every acquisition, so a resource can refuse a holder that lost it.
public struct EtcdLockLease: Sendable, Hashable {
    /// The lock's or election's name.
    public var name: String
    /// The contender's key in etcd.
    public var key: String
    /// The lease the key is attached to (kept alive while held).
    public var lease: EtcdLease
    /// The key's create revision: it grows with every acquisition of the name.
    public var fencingToken: Int64
}

/// Lease-backed mutual exclusion and leader election on etcd, after etcd's own recipes: each
/// contender writes a key under `{prefix}{name}/` attached to its lease; the key with the lowest
/// create revision holds the lock (or is the leader); the others wait for the deletion of the key
/// just before theirs, so waiters are served in order and nobody polls.
///
/// A holder must keep its lease alive (`withLock` does); if the lease expires
/// its key vanishes and the next contender takes over, so check the fencing token at the resource.
public struct EtcdCoordinator: Sendable {
    /// The etcd the contenders' keys live in.
    public let etcd: EtcdClient
    /// The key prefix of every lock and election.
    public let prefix: String

    /// A coordinator on `etcd` under `prefix`.
    public init(etcd: EtcdClient, prefix: String = "/coordination/") {
        self.etcd = etcd
        self.prefix = prefix
    }

    // MARK: - Mutex

    /// Acquires the lock `name`, waiting at most `timeout`. Keep `lease` alive
    /// (`EtcdClient/keepAlive(_:)`) for as long as you hold it, or use `withLock`.
    /// - Throws: `EtcdError/Code/timeout` when not acquired in time (the contender's key is removed).
    public func lock(_ name: String, ttl: Duration, timeout: Duration, value: String = "") async throws -> EtcdLockLease {
        let lease = try await etcd.grantLease(ttl: ttl)
        let key = "\(prefix)lock/\(name)/\(String(lease.id, radix: 16))"
        do {
            return try await contend(name: name, key: key, value: value, lease: lease, timeout: timeout, directory: "\(prefix)lock/\(name)/")
        } catch {
            try? await etcd.revokeLease(lease.id)
            throw error
        }
    }

    /// Releases the lock (deletes the key and revokes its lease).
    public func unlock(_ lock: EtcdLockLease) async throws {
        try await etcd.revokeLease(lock.lease.id)
    }

    /// Runs `body` holding the lock `name`, keeping its lease alive meanwhile; releases it afterwards.
    /// If the lease is lost while `body` runs, `body` is cancelled and `EtcdError/Code/leaseExpired` thrown.
    public func withLock<T: Sendable>(
        _ name: String, ttl: Duration, timeout: Duration, _ body: @escaping @Sendable (EtcdLockLease) async throws -> T
    ) async throws -> T {
        let held = try await lock(name, ttl: ttl, timeout: timeout)
        let etcd = self.etcd
        let result: Result<T, any Error> = await withTaskGroup(of: Result<T, any Error>?.self) { group in
            group.addTask {
                do {
                    try await etcd.keepAlive(held.lease)
                    return nil  // cancelled because body finished
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                do { return .success(try await body(held)) } catch { return .failure(error) }
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(EtcdError(.leaseExpired, "lock \(name) was lost"))
        }
        try? await unlock(held)
        return try result.get()
    }

    /// Whether `lock` still holds its lock (its key exists with its create revision).
    public func isHeld(_ lock: EtcdLockLease) async throws -> Bool {
        try await etcd.get(lock.key)?.createRevision == lock.fencingToken
    }

    // MARK: - Election

    /// Campaigns for leadership of `election` with `value`; returns once elected. Keep the returned
    /// lease alive (`EtcdClient/keepAlive(_:)`) for as long as you lead: when it expires (the
    /// process died or hung) the next candidate is elected.
    public func campaign(_ election: String, value: String, ttl: Duration, timeout: Duration) async throws -> EtcdLockLease {
        let lease = try await etcd.grantLease(ttl: ttl)
        let key = "\(prefix)election/\(election)/\(String(lease.id, radix: 16))"
        do {
            return try await contend(name: election, key: key, value: value, lease: lease, timeout: timeout, directory: "\(prefix)election/\(election)/")
        } catch {
            try? await etcd.revokeLease(lease.id)
            throw error
        }
    }

    /// Gives up leadership (or a pending campaign).
    public func resign(_ leadership: EtcdLockLease) async throws {
        try await etcd.revokeLease(leadership.lease.id)
    }

    /// The current leader's value, or `nil` when there is none.
    public func leader(_ election: String) async throws -> String? {
        try await etcd.range("\(prefix)election/\(election)/", prefix: true).kvs.min { $0.createRevision < $1.createRevision }?.stringValue
    }

    /// Calls `onChange` with the leader's value (or `nil`) whenever leadership changes, until cancelled.
    public func observe(_ election: String, onChange: @escaping @Sendable (String?) async -> Void) async throws {
        let directory = "\(prefix)election/\(election)/"
        let initial = try await etcd.range(directory, prefix: true)
        let candidates = Locked(Dictionary(initial.kvs.map { ($0.key, $0) }, uniquingKeysWith: { $1 }))
        let last = Locked<String??>(.none)
        @Sendable func report() async {
            let leader = candidates.value.values.min { $0.createRevision < $1.createRevision }?.stringValue
            let changed = last.withLock { last -> Bool in
                if case .some(let previous) = last, previous == leader { return false }
                last = .some(leader)
                return true
            }
            if changed { await onChange(leader) }
        }
        await report()
        try await etcd.watch(directory, prefix: true, fromRevision: initial.revision + 1) { update in
            candidates.withLock { candidates in
                switch update {
                case .events(let events, _):
                    for event in events {
                        switch event {
                        case .put(let kv): candidates[kv.key] = kv
                        case .delete(let key, _): candidates[key] = nil
                        }
                    }
                case .resynced(let snapshot, _, _):
                    candidates = Dictionary(snapshot.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
                }
            }
            await report()
        }
    }

    // MARK: - The recipe

    private func contend(
        name: String, key: String, value: String, lease: EtcdLease, timeout: Duration, directory: String
    ) async throws -> EtcdLockLease {
        let deadline = ContinuousClock.now + timeout
        // Keep the lease alive while waiting, or a long queue would lose its place.
        return try await withThrowingTaskGroup(of: EtcdLockLease?.self) { group in
            group.addTask {
                try await etcd.keepAlive(lease)
                return nil
            }
            group.addTask {
                _ = try await etcd.transaction(
                    if: [.absent(key)], then: [.put(key, Array(value.utf8), lease: lease.id)], else: [.get(key)]
                )
                guard let own = try await etcd.get(key) else { throw EtcdError(.leaseExpired, "the contender key vanished") }
                while true {
                    let contenders = try await etcd.range(directory, prefix: true, keysOnly: true).kvs
                        .sorted { $0.createRevision < $1.createRevision }
                    guard let position = contenders.firstIndex(where: { $0.key == key }) else {
                        throw EtcdError(.leaseExpired, "the contender key of \(name) vanished (lease lost)")
                    }
                    if position == 0 {
                        return EtcdLockLease(name: name, key: key, lease: lease, fencingToken: own.createRevision)
                    }
                    let predecessor = contenders[position - 1]
                    let remaining = deadline - ContinuousClock.now
                    guard remaining > .zero else { throw EtcdError(.timeout, "\(name) not acquired within \(timeout)") }
                    // Wait for the predecessor's deletion (or the deadline), then look again.
                    try await self.waitForDeletion(of: predecessor.key, after: predecessor.modRevision, within: remaining)
                }
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            throw EtcdError(.leaseExpired, "the lease of \(name) ended while waiting")
        }
    }

    private func waitForDeletion(of key: String, after revision: Int64, within timeout: Duration) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                struct Deleted: Error {}
                do {
                    try await self.etcd.watch(key, fromRevision: revision + 1) { update in
                        if case .events(let events, _) = update, events.contains(where: { if case .delete = $0 { return true }; return false }) {
                            throw Deleted()
                        }
                        if case .resynced(let snapshot, _, _) = update, snapshot.isEmpty { throw Deleted() }
                    }
                } catch is Deleted {
                    return true
                }
                return false
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return false
            }
            _ = try await group.next()
            group.cancelAll()
        }
    }
}
