public import TroupeBSON

/// What a monitor knows about one server, from its last `hello`.
public struct MongoServerDescription: Sendable, Equatable {
    /// What a server is in its deployment (SDAM server type).
    public enum ServerType: String, Sendable, Hashable {
        case unknown = "Unknown", standalone = "Standalone", mongos = "Mongos"
        case rsPrimary = "RSPrimary", rsSecondary = "RSSecondary", rsArbiter = "RSArbiter", rsOther = "RSOther", rsGhost = "RSGhost"
        case loadBalancer = "LoadBalancer", possiblePrimary = "PossiblePrimary"

        /// Whether the server holds data (not an arbiter, a ghost or unknown).
        public var isDataBearing: Bool { [.standalone, .mongos, .rsPrimary, .rsSecondary, .loadBalancer].contains(self) }
    }

    /// The server.
    public var address: MongoServerAddress
    /// What it is.
    public var type: ServerType
    /// Smoothed round-trip time in milliseconds (exponentially weighted, α = 0.2).
    public var roundTripTimeMS: Double?
    /// Client clock, milliseconds, when the description was made.
    public var lastUpdateTimeMS: Int64
    /// The server's `lastWrite.lastWriteDate`, milliseconds.
    public var lastWriteDateMS: Int64?
    /// The replica set member's tags.
    public var tags: [String: String]
    /// The replica set it belongs to.
    public var setName: String?
    /// The replica set configuration's version.
    public var setVersion: Int?
    /// The primary's election id.
    public var electionID: BSONObjectID?
    /// The primary this server names.
    public var primary: MongoServerAddress?
    /// The replica set's electable members, as this server lists them.
    public var hosts: [MongoServerAddress]
    /// Its passive members (priority 0).
    public var passives: [MongoServerAddress]
    /// Its arbiters.
    public var arbiters: [MongoServerAddress]
    /// The address this server knows itself by.
    public var me: MongoServerAddress?
    /// The oldest wire version it speaks.
    public var minWireVersion: Int
    /// The newest wire version it speaks.
    public var maxWireVersion: Int
    /// How long the server keeps an idle session.
    public var logicalSessionTimeoutMinutes: Int?
    /// Why the server is unknown (the last check's error).
    public var error: String?
    /// The server's topology version (for streaming `hello`).
    public var topologyVersion: BSONDocument?

    /// A description of `address` before anything is known.
    public init(address: MongoServerAddress, type: ServerType = .unknown, lastUpdateTimeMS: Int64 = 0) {
        self.address = address
        self.type = type
        self.lastUpdateTimeMS = lastUpdateTimeMS
        tags = [:]
        hosts = []
        passives = []
        arbiters = []
        minWireVersion = 0
        maxWireVersion = 0
    }

    /// A description from a `hello` reply.
    public init(address: MongoServerAddress, hello: BSONDocument, roundTripTimeMS: Double?, nowMS: Int64) {
        self.init(address: address, lastUpdateTimeMS: nowMS)
        self.roundTripTimeMS = roundTripTimeMS
        guard hello["ok"]?.doubleValue == 1 else {
            type = .unknown
            error = hello["errmsg"]?.stringValue ?? "hello failed"
            return
        }
        let isWritablePrimary = hello["isWritablePrimary"]?.boolValue ?? hello["ismaster"]?.boolValue ?? false
        setName = hello["setName"]?.stringValue
        if hello["isreplicaset"]?.boolValue == true {
            type = .rsGhost
        } else if hello["msg"]?.stringValue == "isdbgrid" {
            type = .mongos
        } else if let _ = setName {
            if hello["hidden"]?.boolValue == true { type = .rsOther }
            else if isWritablePrimary { type = .rsPrimary }
            else if hello["secondary"]?.boolValue == true { type = .rsSecondary }
            else if hello["arbiterOnly"]?.boolValue == true { type = .rsArbiter }
            else { type = .rsOther }
        } else {
            type = .standalone
        }
        func addresses(_ key: String) -> [MongoServerAddress] {
            (hello[key]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(MongoServerAddress.init(parsing:)) }
        }
        hosts = addresses("hosts")
        passives = addresses("passives")
        arbiters = addresses("arbiters")
        primary = hello["primary"]?.stringValue.flatMap(MongoServerAddress.init(parsing:))
        me = hello["me"]?.stringValue.flatMap(MongoServerAddress.init(parsing:))
        setVersion = hello["setVersion"]?.intValue
        electionID = hello["electionId"]?.objectIDValue
        minWireVersion = hello["minWireVersion"]?.intValue ?? 0
        maxWireVersion = hello["maxWireVersion"]?.intValue ?? 0
        logicalSessionTimeoutMinutes = hello["logicalSessionTimeoutMinutes"]?.intValue
        topologyVersion = hello["topologyVersion"]?.documentValue
        if case .document(let t)? = hello["tags"] {
            for (k, v) in t.elements { if let s = v.stringValue { tags[k] = s } }
        }
        if case .document(let lastWrite)? = hello["lastWrite"], case .datetime(let ms)? = lastWrite["lastWriteDate"] {
            lastWriteDateMS = ms
        }
    }

    /// Every member address this server reports.
    var allMembers: [MongoServerAddress] { hosts + passives + arbiters }
}

/// The client's view of the deployment.
public struct MongoTopologyDescription: Sendable, Equatable {
    /// What the deployment is (SDAM topology type).
    public enum TopologyType: String, Sendable, Hashable {
        case single = "Single", replicaSetNoPrimary = "ReplicaSetNoPrimary", replicaSetWithPrimary = "ReplicaSetWithPrimary"
        case sharded = "Sharded", unknown = "Unknown", loadBalanced = "LoadBalanced"
    }

    /// What the deployment is.
    public var type: TopologyType
    /// Every server known.
    public var servers: [MongoServerDescription]
    /// The replica set name.
    public var setName: String?
    /// How often servers are checked.
    public var heartbeatFrequencyMS: Int
    /// The largest replica set configuration version seen.
    public var maxSetVersion: Int?
    /// The largest election id seen.
    public var maxElectionID: BSONObjectID?

    /// The wire versions this driver speaks (MongoDB 4.2 and later).
    public static let supportedWireVersions = 8...27

    /// False when a server's wire-version range does not overlap the driver's.
    public var compatible: Bool {
        servers.allSatisfy { server in
            guard server.type != .unknown else { return true }
            return server.minWireVersion <= Self.supportedWireVersions.upperBound && server.maxWireVersion >= Self.supportedWireVersions.lowerBound
        }
    }

    /// The smallest session timeout of the data-bearing servers; nil if one of them reports none.
    public var logicalSessionTimeoutMinutes: Int? {
        var result: Int?
        for server in servers where server.type.isDataBearing {
            guard let minutes = server.logicalSessionTimeoutMinutes else { return nil }
            result = min(result ?? minutes, minutes)
        }
        return result
    }

    /// A topology of `type` with `servers`.
    public init(type: TopologyType, servers: [MongoServerDescription], setName: String? = nil, heartbeatFrequencyMS: Int = 10_000) {
        self.type = type
        self.servers = servers
        self.setName = setName
        self.heartbeatFrequencyMS = heartbeatFrequencyMS
    }

    /// The replica set's primary, if one is known.
    public var primary: MongoServerDescription? { servers.first { $0.type == .rsPrimary } }

    /// The topology before any server has answered: Single with `directConnection=true`, a replica set
    /// without primary when `replicaSet` is named, LoadBalanced for `loadBalanced=true`, else Unknown.
    public static func initial(hosts: [MongoServerAddress], directConnection: Bool?, replicaSet: String?, loadBalanced: Bool = false,
                               heartbeatFrequencyMS: Int = 10_000) -> MongoTopologyDescription {
        let type: TopologyType = loadBalanced ? .loadBalanced
            : directConnection == true ? .single : (replicaSet != nil ? .replicaSetNoPrimary : .unknown)
        return MongoTopologyDescription(type: type, servers: hosts.map { MongoServerDescription(address: $0) }, setName: replicaSet,
                                        heartbeatFrequencyMS: heartbeatFrequencyMS)
    }
}
