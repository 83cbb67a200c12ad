import Foundation
import Testing
import TroupeCore
import TroupeDiscovery
import TroupeEtcd
import TroupeTestSupport

@Suite("Snowflake worker ids under leases")
struct InProcessWorkerIDTests {
    @Test("in-process ids are never shared and are reused after release")
    func inProcess() throws {
        let registry = InProcessWorkerIDRegistry()
        let a = try registry.acquire(node: "a")
        let b = try registry.acquire(node: "b")
        #expect(try a.workerID() != b.workerID())
        a.release()
        #expect(throws: SnowflakeError.self) { try a.workerID() }
        let c = try registry.acquire(node: "c")
        #expect(try c.workerID() == 0)
        let ids = LeasedSnowflake(lease: c)
        #expect(SnowflakeGenerator.decompose(try ids.next()).workerID == 0)
    }
}

@Suite("Snowflake worker ids in etcd", .enabled(if: etcdAvailable, "etcd is not installed (scripts/test installs it)"), .serialized)
struct EtcdWorkerIDTests {
    @Test("two live nodes never hold the same worker id, including after one's lease expires and it comes back")
    func leases() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                let a = EtcdWorkerIDLease(etcd: etcd, cluster: "shop", node: "a", ttl: .seconds(2))
                let b = EtcdWorkerIDLease(etcd: etcd, cluster: "shop", node: "b", ttl: .seconds(2))
                var runA = Task { try await a.run() }
                let runB = Task { try await b.run() }
                defer { runB.cancel() }
                try await withDeadline(.seconds(30)) {
                    while (try? a.workerID()) == nil || (try? b.workerID()) == nil { try await Task.sleep(for: .milliseconds(20)) }
                }
                let idA = try a.workerID()
                #expect(idA != (try b.workerID()))
                // Node a stalls: its keep-alive stops without revoking the lease, which expires.
                runA.cancel()
                _ = try? await runA.value
                try await withDeadline(.seconds(30)) {
                    while try await etcd.get(a.key(idA)) != nil { try await Task.sleep(for: .milliseconds(100)) }
                }
                // Without renewals the stalled node cannot prove the id is still its own, and refuses it, before
                // the server has expired the lease.
                #expect(throws: SnowflakeError.self) { try a.workerID() }
                // Node c takes the freed id.
                let c = EtcdWorkerIDLease(etcd: etcd, cluster: "shop", node: "c", ttl: .seconds(2))
                let runC = Task { try await c.run() }
                defer { runC.cancel() }
                try await withDeadline(.seconds(30)) { while (try? c.workerID()) == nil { try await Task.sleep(for: .milliseconds(20)) } }
                #expect(try c.workerID() == idA, "the expired id is free again")
                // Node a comes back: it must not keep its old id, and gets a different free one.
                runA = Task { try await a.run() }
                defer { runA.cancel() }
                try await withDeadline(.seconds(30)) {
                    while (try? a.workerID()) == nil || (try? a.workerID()) == idA { try await Task.sleep(for: .milliseconds(20)) }
                }
                let held = [try a.workerID(), try b.workerID(), try c.workerID()]
                #expect(Set(held).count == 3, "no id is shared: \(held)")
                for (node, id) in zip(["a", "b", "c"], held) {
                    #expect(try await etcd.get("/troupe/snowflake/shop/\(id)")?.value == Array(node.utf8))
                }
            }
        }
    }

    @Test("through an etcd outage the id stays usable while the lease is provably alive, is refused after, and comes back unchanged with etcd")
    func outage() async throws {
        try await withEtcdServer { server in
            try await withEtcdClient(try configuration(server)) { etcd in
                let lease = EtcdWorkerIDLease(etcd: etcd, cluster: "shop", node: "a", ttl: .seconds(4))
                let run = Task { try await lease.run() }
                defer { run.cancel() }
                try await withDeadline(.seconds(30)) { while (try? lease.workerID()) == nil { try await Task.sleep(for: .milliseconds(20)) } }
                let id = try lease.workerID()
                try await Task.sleep(for: .seconds(1))  // a renewal or two
                await server.stop()
                let stopped = ContinuousClock.now
                // Usable for a while (at least 1.5 s: the last renewal was at most TTL / 3 before the stop)...
                var usableFor: Duration = .zero
                while (try? lease.workerID()) == id, ContinuousClock.now - stopped < .seconds(10) {
                    usableFor = ContinuousClock.now - stopped
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(usableFor >= .milliseconds(1_500), "the id was refused \(usableFor) into the outage")
                // ...then refused: nothing proves the lease alive any more (TTL 4 s minus the margin).
                #expect(usableFor < .seconds(4), "the id was still used \(usableFor) into the outage, past the lease's TTL")
                #expect(throws: SnowflakeError.self) { try lease.workerID() }
                // etcd returns (it extends its leases on restart): the same id, without a new acquisition.
                try await server.start()
                try await withDeadline(.seconds(15)) { while (try? lease.workerID()) == nil { try await Task.sleep(for: .milliseconds(20)) } }
                #expect(try lease.workerID() == id)
                #expect(try await etcd.get(lease.key(id))?.value == Array("a".utf8))
            }
        }
    }
}
