import TroupeBSON

/// The SDAM update rules: how one new server description changes the topology description. Pure.
public enum MongoTopologyUpdater {
    /// The topology after `description` of one of its servers arrived (the SDAM specification's rules).
    public static func update(_ topology: MongoTopologyDescription, with description: MongoServerDescription) -> MongoTopologyDescription {
        var t = topology
        guard let index = t.servers.firstIndex(where: { $0.address == description.address }) else { return t }
        // A reply older than what we know (same process, lower counter) is stale: ignore it.
        if let known = t.servers[index].topologyVersion, let new = description.topologyVersion,
            known["processId"] == new["processId"], let k = known["counter"]?.intValue, let n = new["counter"]?.intValue, n < k {
            return t
        }
        var server = description
        if server.roundTripTimeMS == nil, server.type != .unknown { server.roundTripTimeMS = t.servers[index].roundTripTimeMS }
        t.servers[index] = server

        switch t.type {
        case .single:
            if let setName = t.setName, server.type != .unknown, server.setName != setName {
                var unknown = MongoServerDescription(address: server.address, lastUpdateTimeMS: server.lastUpdateTimeMS)
                unknown.error = "replica set name \(server.setName ?? "none") does not match \(setName)"
                t.servers[index] = unknown
            }
        case .loadBalanced:
            break
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
        case .replicaSetNoPrimary:
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
        case .replicaSetWithPrimary:
            switch server.type {
            case .standalone, .mongos:
                t.servers.remove(at: index)
            case .rsPrimary:
                updateFromPrimary(&t, server)
            case .rsSecondary, .rsArbiter, .rsOther:
                updateWithPrimaryFromMember(&t, server)
            default:
                break
            }
        }
        if t.type == .replicaSetNoPrimary || t.type == .replicaSetWithPrimary {
            t.type = t.servers.contains { $0.type == .rsPrimary } ? .replicaSetWithPrimary : .replicaSetNoPrimary
        }
        return t
    }

    private static func addMembers(_ t: inout MongoTopologyDescription, _ server: MongoServerDescription) {
        for member in server.allMembers where !t.servers.contains(where: { $0.address == member }) {
            t.servers.append(MongoServerDescription(address: member))
        }
    }

    private static func updateWithoutPrimary(_ t: inout MongoTopologyDescription, _ server: MongoServerDescription) {
        if t.setName == nil { t.setName = server.setName }
        guard server.setName == t.setName else {
            t.servers.removeAll { $0.address == server.address }
            return
        }
        addMembers(&t, server)
        markPossiblePrimary(&t, server)
        if let me = server.me, me != server.address {
            t.servers.removeAll { $0.address == server.address }
        }
    }

    private static func updateWithPrimaryFromMember(_ t: inout MongoTopologyDescription, _ server: MongoServerDescription) {
        guard server.setName == t.setName else {
            t.servers.removeAll { $0.address == server.address }
            return
        }
        if let me = server.me, me != server.address {
            t.servers.removeAll { $0.address == server.address }
            return
        }
        if !t.servers.contains(where: { $0.type == .rsPrimary }) {
            t.type = .replicaSetNoPrimary
            markPossiblePrimary(&t, server)
        }
    }

    private static func markPossiblePrimary(_ t: inout MongoTopologyDescription, _ server: MongoServerDescription) {
        if let claimed = server.primary, let i = t.servers.firstIndex(where: { $0.address == claimed }), t.servers[i].type == .unknown {
            t.servers[i].type = .possiblePrimary
        }
    }

    /// (electionId, setVersion) ordering with nil below any value.
    private static func isStale(_ server: MongoServerDescription, _ t: MongoTopologyDescription) -> Bool {
        func less<T: Comparable>(_ a: T?, _ b: T?) -> Bool {
            switch (a, b) {
            case (nil, nil): false
            case (nil, _): true
            case (_, nil): false
            case (let x?, let y?): x < y
            }
        }
        if server.maxWireVersion >= 17 {
            if less(server.electionID, t.maxElectionID) { return true }
            if server.electionID == t.maxElectionID, less(server.setVersion, t.maxSetVersion) { return true }
            return false
        }
        guard let setVersion = server.setVersion, let electionID = server.electionID,
            let maxSetVersion = t.maxSetVersion, let maxElectionID = t.maxElectionID else { return false }
        return maxSetVersion > setVersion || (maxSetVersion == setVersion && maxElectionID > electionID)
    }

    private static func updateFromPrimary(_ t: inout MongoTopologyDescription, _ primary: MongoServerDescription) {
        if t.setName == nil { t.setName = primary.setName }
        guard primary.setName == t.setName else {
            t.servers.removeAll { $0.address == primary.address }
            return
        }
        if isStale(primary, t) {
            if let i = t.servers.firstIndex(where: { $0.address == primary.address }) {
                var unknown = MongoServerDescription(address: primary.address, lastUpdateTimeMS: primary.lastUpdateTimeMS)
                unknown.error = "primary marked stale due to electionId/setVersion mismatch"
                t.servers[i] = unknown
            }
            return
        }
        if primary.maxWireVersion >= 17 {
            t.maxElectionID = primary.electionID
            t.maxSetVersion = primary.setVersion
        } else {
            if primary.electionID != nil, primary.setVersion != nil { t.maxElectionID = primary.electionID }
            if let setVersion = primary.setVersion, setVersion > (t.maxSetVersion ?? .min) { t.maxSetVersion = setVersion }
        }
        // Any other server that claimed to be primary is demoted until its own monitor reports.
        for i in t.servers.indices where t.servers[i].type == .rsPrimary && t.servers[i].address != primary.address {
            var unknown = MongoServerDescription(address: t.servers[i].address, lastUpdateTimeMS: primary.lastUpdateTimeMS)
            unknown.error = "another server is primary"
            t.servers[i] = unknown
        }
        addMembers(&t, primary)
        let members = Set(primary.allMembers)
        t.servers.removeAll { !members.contains($0.address) }
    }
}
