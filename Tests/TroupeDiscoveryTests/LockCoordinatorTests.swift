import Testing
import TroupeCore
import TroupeDiscovery
import TroupeEtcd
import TroupeTestSupport

/// 8 contenders × 10 read-modify-writes under the lock must lose nothing, with unique growing tokens.
func checkMutualExclusion(_ coordinator: any LockCoordinator) async throws {
    let counter = Locked(0)
    let tokens = Locked<[Int64]>([])
    try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<8 {
            group.addTask {
                for _ in 0..<10 {
                    try await coordinator.withLock("shared", ttl: .seconds(5), timeout: .seconds(30)) { token in
                        tokens.withLock { $0.append(token) }
                        let read = counter.value
                        try await Task.sleep(for: .milliseconds(1))
                        counter.withLock { $0 = read + 1 }
                    }
                }
            }
        }
        try await group.waitForAll()
    }
    #expect(counter.value == 80)
    #expect(Set(tokens.value).count == 80)
}

@Suite("Lock coordinator engines")
struct LockCoordinatorTests {
    @Test("in-process: mutual exclusion under contention")
    func inProcess() async throws {
        try await checkMutualExclusion(InProcessCoordinator())
    }

    @Test("in-process: a waiter gives up at its timeout")
    func timeout() async throws {
        let coordinator = InProcessCoordinator()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await coordinator.withLock("busy", ttl: .seconds(5), timeout: .seconds(1)) { _ in try await Task.sleep(for: .milliseconds(500)) }
            }
            try await Task.sleep(for: .milliseconds(50))
            await #expect(throws: CoordinationError.self) {
                try await coordinator.withLock("busy", ttl: .seconds(5), timeout: .milliseconds(100)) { _ in }
            }
            try await group.waitForAll()
        }
    }

    @Test("etcd: the same contract through the protocol", .enabled(if: etcdAvailable, "etcd is not installed"))
    func etcd() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                try await checkMutualExclusion(EtcdCoordinator(etcd: etcd))
            }
        }
    }
}

/// Two candidates: the first leads until it resigns, then the second is elected; observers see both.
func checkElection(_ coordinator: any ElectionCoordinator) async throws {
    let observed = Locked<[String?]>([])
    let firstElected = Locked(false)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await coordinator.observe("scheduler") { leader in observed.withLock { $0.append(leader) } } }
        group.addTask {
            try await coordinator.lead("scheduler", value: "node-a", ttl: .seconds(5), timeout: .seconds(10)) { _ in
                firstElected.withLock { $0 = true }
                try await Task.sleep(for: .milliseconds(300))
            }
        }
        try await waitUntil { firstElected.value }
        try await coordinator.lead("scheduler", value: "node-b", ttl: .seconds(5), timeout: .seconds(10)) { _ in
            try await waitUntil { observed.value.contains("node-b") }
        }
        try await waitUntil { observed.value.last == .some(nil) }
        group.cancelAll()
    }
    #expect(observed.value.compactMap { $0 } == ["node-a", "node-b"])
}

@Suite("Election engines")
struct ElectionTests {
    @Test("in-process: the next candidate leads after the leader resigns")
    func inProcess() async throws {
        try await checkElection(InProcessCoordinator())
    }

    @Test("etcd: the same contract through the protocol", .enabled(if: etcdAvailable, "etcd is not installed"))
    func etcd() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                try await checkElection(EtcdCoordinator(etcd: etcd))
            }
        }
    }
}
