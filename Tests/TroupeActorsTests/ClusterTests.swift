import Testing
import TroupeActors
import TroupeTestSupport

/// Runs `body` for every element with at most `width` running at once.
func forEachConcurrently<T: Sendable>(
    _ items: [T], width: Int = 64, _ body: @escaping @Sendable (T) async throws -> Void
) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var iterator = items.makeIterator()
        for _ in 0..<width {
            guard let item = iterator.next() else { break }
            group.addTask { try await body(item) }
        }
        while try await group.next() != nil {
            if let item = iterator.next() { group.addTask { try await body(item) } }
        }
    }
}

func registerTestActors(_ system: ClusterActorSystem) {
    system.register(Counter.self)
    system.register(Greeter.self)
    system.registerRemoteError(TestRefusal.self)
}

/// Waits until `condition` holds, polling; fails the test after `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(5), _ condition: @Sendable () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting for: \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

@Suite("Virtual actors on a 3-node cluster")
struct ClusterTests {
    @Test("10,000 keys called from every node: each is active on exactly one node, its owner, and state is consistent")
    func tenThousandKeys() async throws {
        let keys = (0..<10_000).map { "key-\($0)" }
        try await LocalCluster().run(nodes: 3, register: registerTestActors) { systems in
            for system in systems {
                try await forEachConcurrently(keys) { key in
                    _ = try await system.actor(Counter.self, key: key).increment(by: 1)
                }
            }
            var activeOn: [String: [String]] = [:]
            for system in systems {
                for id in system.activeActorIDs where id.type == "Counter" {
                    activeOn[id.key, default: []].append(system.node.name)
                }
            }
            #expect(activeOn.count == keys.count)
            let duplicated = activeOn.filter { $0.value.count != 1 }
            #expect(duplicated.isEmpty, "keys active on several nodes: \(duplicated.prefix(5))")
            let misplaced = activeOn.filter { key, nodes in
                systems[0].owner(of: .virtual(type: "Counter", key: key))?.node.name != nodes.first
            }
            #expect(misplaced.isEmpty, "keys active away from their owner: \(misplaced.prefix(5))")
            // Every node sees the same count for every key.
            for system in systems {
                try await forEachConcurrently(Array(keys.prefix(2_000))) { key in
                    let count = try await system.actor(Counter.self, key: key).count()
                    #expect(count == 3, "\(key) counted \(count) via \(system.node.name)")
                }
            }
            let perNode = systems.map { $0.statistics.activations }
            #expect(perNode.reduce(0, +) == keys.count)
            #expect(perNode.allSatisfy { $0 > 2_500 }, "placement is badly skewed: \(perNode)")
        }
    }

    @Test("a joining node takes about 1/N of the keys; the old owners passivate what moved; state survives")
    func nodeJoins() async throws {
        let keys = (0..<3_000).map { "join-\($0)" }
        let membership = InMemoryMembership()
        let store = InMemoryActorStateStore()
        let cluster = LocalCluster()
        try await cluster.run(nodes: 3, membership: membership, stateStore: store, register: registerTestActors) { systems in
            try await forEachConcurrently(keys) { key in
                _ = try await systems[0].actor(Counter.self, key: key).increment(by: 7)
            }
            let before = Dictionary(uniqueKeysWithValues: keys.map { ($0, systems[0].owner(of: .virtual(type: "Counter", key: $0))!.node.name) })

            let newcomer = try await cluster.start(node: "node-4", membership: membership, stateStore: store, register: registerTestActors)
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await newcomer.run() }
                let all = systems + [newcomer]
                try await LocalCluster.waitForMembers(all, count: 4)
                let moved = keys.filter { systems[0].owner(of: .virtual(type: "Counter", key: $0))!.node.name != before[$0] }
                let fraction = Double(moved.count) / Double(keys.count)
                #expect(fraction > 0.15 && fraction < 0.35, "\(moved.count) of \(keys.count) keys moved")
                #expect(moved.allSatisfy { systems[0].owner(of: .virtual(type: "Counter", key: $0))!.node.name == "node-4" },
                        "only keys won by the newcomer may move")
                // The old owners hand the moved keys off.
                try await eventually("moved keys passivated on their old owners") {
                    let stillActive = Set(systems.flatMap(\.activeActorIDs).map(\.key))
                    return moved.allSatisfy { !stillActive.contains($0) }
                }
                // Keys that did not move stay where they were, still active.
                let stayed = Set(keys).subtracting(moved)
                let activeOld = Set(systems.flatMap(\.activeActorIDs).map(\.key))
                #expect(stayed.isSubset(of: activeOld))
                // Moved keys reactivate on the newcomer with their persisted state.
                try await forEachConcurrently(moved) { key in
                    let counter = try await systems[1].actor(Counter.self, key: key)
                    #expect(try await counter.host() == "node-4")
                    #expect(try await counter.increment(by: 1) == 8)
                }
                newcomer.shutdown()
            }
        }
    }

    @Test("a node that leaves or dies: its keys reactivate elsewhere with their persisted state")
    func nodeLeaves() async throws {
        let keys = (0..<1_000).map { "leave-\($0)" }
        let membership = InMemoryMembership()
        try await LocalCluster().run(nodes: 3, membership: membership, register: registerTestActors) { systems in
            try await forEachConcurrently(keys) { key in
                _ = try await systems[0].actor(Counter.self, key: key).increment(by: 5)
            }
            let victim = systems[2]
            let orphaned = keys.filter { systems[0].owner(of: .virtual(type: "Counter", key: $0))?.node.name == victim.node.name }
            #expect(!orphaned.isEmpty)
            victim.shutdown()  // its run() leaves the membership after passivating
            membership.remove(nodeNamed: victim.node.name)  // as a failure detector would
            try await LocalCluster.waitForMembers(Array(systems.prefix(2)), count: 2)
            try await forEachConcurrently(orphaned) { key in
                let counter = try await systems[1].actor(Counter.self, key: key)
                #expect(try await counter.increment(by: 1) == 6)
                #expect(try await counter.host() != victim.node.name)
            }
        }
    }
}
