/// The SDAM update rules: how one new server description changes the topology description. Pure.
public enum MongoTopologyUpdater {
    public static func update(_ topology: MongoTopologyDescription, with description: MongoServerDescription) -> MongoTopologyDescription {
        var t = topology
        guard let index = t.servers.firstIndex(where: { $0.address == description.address }) else { return t }
        var server = description
        if server.roundTripTimeMS == nil, server.type != .unknown { server.roundTripTimeMS = t.servers[index].roundTripTimeMS }
        t.servers[index] = server

        switch t.type {
        case .single, .loadBalanced:
            if let setName = t.setName, server.type != .unknown, server.setName != setName {
                t.servers[index].type = .unknown
                t.servers[index].error = "replica set name \(server.setName ?? "none") does not match \(setName)"
            }
            return t
        case .unknown:
            switch server.type {
            case .standalone:
                if t.servers.count == 1 { t.type = .single } else { t.servers.remove(at: index) }
            case .mongos:
                t.type = .sharded
            case .rsPrimary:
                t.type = .replicaSetWithPrimary
                updateFromPrimary(&t, server)
            case .rsSecondary, .rsArbiter, .rsOther:
                t.type = .replicaSetNoPrimary
                updateWithoutPrimary(&t, server)
            default:
                break
            }
        case .sharded:
            if server.type != .unknown, server.type != .mongos { t.servers.remove(at: index) }
        case .replicaSetNoPrimary, .replicaSetWithPrimary:
            switch server.type {
            case .standalone, .mongos:
                t.servers.remove(at: index)
            case .rsPrimary:
                updateFromPrimary(&t, server)
            case .rsSecondary, .rsArbiter, .rsOther:
                updateWithoutPrimary(&t, server)
            default:
                break
            }
        }
        if t.type == .replicaSetNoPrimary || t.type == .replicaSetWithPrimary {
            t.type = t.servers.contains { $0.type == .rsPrimary } ? .replicaSetWithPrimary : .replicaSetNoPrimary
        }
        return t
    }

    private static func updateFromPrimary(_ t: inout MongoTopologyDescription, _ primary: MongoServerDescription) {
        if t.setName == nil { t.setName = primary.setName }
        guard primary.setName == t.setName else {
            t.servers.removeAll { $0.address == primary.address }
            return
        }
        // Any other server that claimed to be primary is demoted until its own monitor reports.
        for i in t.servers.indices where t.servers[i].type == .rsPrimary && t.servers[i].address != primary.address {
            t.servers[i] = MongoServerDescription(address: t.servers[i].address, lastUpdateTimeMS: primary.lastUpdateTimeMS)
        }
        let members = Set(primary.allMembers)
        for member in primary.allMembers where !t.servers.contains(where: { $0.address == member }) {
            t.servers.append(MongoServerDescription(address: member))
        }
        t.servers.removeAll { !members.contains($0.address) }
    }

    private static func updateWithoutPrimary(_ t: inout MongoTopologyDescription, _ server: MongoServerDescription) {
        if t.setName == nil { t.setName = server.setName }
        guard server.setName == t.setName else {
            t.servers.removeAll { $0.address == server.address }
            return
        }
        for member in server.allMembers where !t.servers.contains(where: { $0.address == member }) {
            t.servers.append(MongoServerDescription(address: member))
        }
        if let me = server.me, me != server.address, t.type == .replicaSetNoPrimary {
            t.servers.removeAll { $0.address == server.address }
            return
        }
        if let claimed = server.primary, let i = t.servers.firstIndex(where: { $0.address == claimed }), t.servers[i].type == .unknown {
            t.servers[i].type = .possiblePrimary
        }
    }
}
