import Distributed
import Testing
import TroupeActors

@Suite("Rendezvous placement")
struct PlacementTests {
    static func members(_ names: [String], types: Set<String>? = nil) -> [ClusterMember] {
        names.enumerated().map { index, name in
            ClusterMember(node: NodeID(name: name, host: "127.0.0.1", port: 7000 + index, incarnation: 1), actorTypes: types)
        }
    }

    let keys = (0..<20_000).map { "key-\($0)" }

    @Test("keys spread evenly over the members")
    func balance() {
        let members = Self.members(["a", "b", "c", "d"])
        var counts: [String: Int] = [:]
        for key in keys { counts[Placement.owner(type: "T", key: key, members: members)!.node.name, default: 0] += 1 }
        for (_, count) in counts { #expect(abs(count - keys.count / 4) < keys.count / 20, "\(counts)") }
    }

    @Test("adding a member moves only the keys it wins, about 1/N")
    func join() {
        let before = Self.members(["a", "b", "c"])
        let after = Self.members(["a", "b", "c", "d"])
        var moved = 0
        for key in keys {
            let old = Placement.owner(type: "T", key: key, members: before)!.node.name
            let new = Placement.owner(type: "T", key: key, members: after)!.node.name
            if old != new {
                moved += 1
                #expect(new == "d")
            }
        }
        let fraction = Double(moved) / Double(keys.count)
        #expect(abs(fraction - 0.25) < 0.03, "moved \(fraction)")
    }

    @Test("removing a member moves only its keys")
    func leave() {
        let before = Self.members(["a", "b", "c", "d"])
        let after = Array(before.dropLast())
        for key in keys {
            let old = Placement.owner(type: "T", key: key, members: before)!.node.name
            let new = Placement.owner(type: "T", key: key, members: after)!.node.name
            if old != "d" { #expect(old == new) }
        }
    }

    @Test("only members hosting the type are candidates; order and incarnation do not matter")
    func hostingAndOrder() {
        var members = Self.members(["a", "b"], types: ["Order"]) + Self.members(["c"], types: ["Inventory"])
        for key in keys.prefix(1_000) {
            #expect(Placement.owner(type: "Inventory", key: key, members: members)?.node.name == "c")
            #expect(Placement.owner(type: "Order", key: key, members: members)?.node.name != "c")
        }
        #expect(Placement.owner(type: "Payment", key: "x", members: members) == nil)
        let owner = Placement.owner(type: "Order", key: "k", members: members)
        members.reverse()
        members[0].node.incarnation = 99
        #expect(Placement.owner(type: "Order", key: "k", members: members)?.node.name == owner?.node.name)
    }

    @Test("types sharing a placement group place the same key on the same node; other types place independently")
    func groups() {
        let members = Self.members(["a", "b", "c", "d", "e"])
        var together = 0, ungroupedTogether = 0
        for key in keys.prefix(2_000) {
            let order = Placement.owner(type: GroupedOrder.virtualTypeName, group: GroupedOrder.placementGroup, key: key, members: members)
            let payment = Placement.owner(type: GroupedPayment.virtualTypeName, group: GroupedPayment.placementGroup, key: key, members: members)
            if order?.node.name == payment?.node.name { together += 1 }
            if Placement.owner(type: "Order", key: key, members: members)?.node.name == Placement.owner(type: "Payment", key: key, members: members)?.node.name {
                ungroupedTogether += 1
            }
        }
        #expect(together == 2_000)
        #expect(ungroupedTogether < 600, "ungrouped types should agree about 1/5 of the time: \(ungroupedTogether)")
        // Grouped keys still spread over every member.
        let owners = Set(keys.prefix(2_000).compactMap { Placement.owner(type: GroupedOrder.virtualTypeName, group: GroupedOrder.placementGroup, key: $0, members: members)?.node.name })
        #expect(owners.count == 5)
    }
}

distributed actor GroupedOrder: VirtualActor {
    typealias ActorSystem = ClusterActorSystem
    static var placementGroup: String? { "placement-test" }
    init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }
}

distributed actor GroupedPayment: VirtualActor {
    typealias ActorSystem = ClusterActorSystem
    static var placementGroup: String? { "placement-test" }
    init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }
}
