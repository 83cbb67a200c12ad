/// Server selection (the algorithm of the MongoDB server-selection specification), pure:
/// suitable servers for a read preference or a write, then the latency window.
public enum MongoServerSelector {
    /// Idle write period of replica set primaries, used in the staleness bound (10 s).
    static let idleWritePeriodMS = 10_000

    /// What a server is selected for: a read with its preference, or a write.
    public enum Operation: Sendable, CustomStringConvertible {
        case read(MongoReadPreference)
        case write

        /// "a write", "a read (primary)": for errors an operator reads.
        public var description: String {
            switch self {
            case .write: "a write"
            case .read(let preference): "a read (\(preference.mode.rawValue))"
            }
        }
    }

    /// Servers suitable for `operation`, before the latency window.
    public static func suitable(_ topology: MongoTopologyDescription, for operation: Operation) throws(MongoError) -> [MongoServerDescription] {
        switch topology.type {
        case .unknown:
            return []
        case .single, .loadBalanced:
            return topology.servers.filter { $0.type != .unknown }
        case .sharded:
            return topology.servers.filter { $0.type == .mongos }
        case .replicaSetNoPrimary, .replicaSetWithPrimary:
            guard case .read(let preference) = operation else {
                return topology.servers.filter { $0.type == .rsPrimary }
            }
            try validateStaleness(preference, topology)
            let primary = topology.servers.filter { $0.type == .rsPrimary }
            let secondaries = filterStaleness(topology.servers.filter { $0.type == .rsSecondary }, preference, topology)
            switch preference.mode {
            case .primary:
                return primary
            case .secondary:
                return filterTags(secondaries, preference.tagSets)
            case .primaryPreferred:
                return primary.isEmpty ? filterTags(secondaries, preference.tagSets) : primary
            case .secondaryPreferred:
                let matched = filterTags(secondaries, preference.tagSets)
                return matched.isEmpty ? primary : matched
            case .nearest:
                return filterTags(primary + secondaries, preference.tagSets)
            }
        }
    }

    /// The servers within `localThresholdMS` of the fastest suitable one.
    public static func inLatencyWindow(_ servers: [MongoServerDescription], localThresholdMS: Double) -> [MongoServerDescription] {
        let rtts = servers.compactMap(\.roundTripTimeMS)
        guard let fastest = rtts.min() else { return servers }
        return servers.filter { ($0.roundTripTimeMS ?? fastest) <= fastest + localThresholdMS }
    }

    /// Suitable servers in the latency window. Servers in `deprioritized` (the mongos of a failed attempt)
    /// are avoided when a sharded cluster has others.
    public static func select(_ topology: MongoTopologyDescription, for operation: Operation, localThresholdMS: Double = 15,
                              deprioritized: [MongoServerAddress] = []) throws(MongoError) -> [MongoServerDescription] {
        inLatencyWindow(try suitable(topology, for: operation, deprioritized: deprioritized), localThresholdMS: localThresholdMS)
    }

    /// Suitable servers, selected first among the servers not deprioritized (those of a failed attempt),
    /// and among all of them only when that finds none.
    public static func suitable(_ topology: MongoTopologyDescription, for operation: Operation,
                                deprioritized: [MongoServerAddress]) throws(MongoError) -> [MongoServerDescription] {
        if !deprioritized.isEmpty {
            var preferred = topology
            preferred.servers.removeAll { deprioritized.contains($0.address) }
            let candidates = try suitable(preferred, for: operation)
            if !candidates.isEmpty { return candidates }
        }
        return try suitable(topology, for: operation)
    }

    /// The round-trip-time average after a new sample (exponentially weighted, α = 0.2; the first sample is taken as is).
    public static func averageRTT(previous: Double?, sample: Double) -> Double {
        guard let previous else { return sample }
        return 0.2 * sample + 0.8 * previous
    }

    static func validateStaleness(_ preference: MongoReadPreference, _ topology: MongoTopologyDescription) throws(MongoError) {
        guard let maxStaleness = preference.maxStalenessSeconds else { return }
        guard preference.mode != .primary else {
            throw MongoError(.invalidConfiguration, "maxStalenessSeconds is not allowed with readPreference primary")
        }
        let minimum = max(90, (topology.heartbeatFrequencyMS + idleWritePeriodMS + 999) / 1000)
        guard maxStaleness >= minimum else {
            throw MongoError(.invalidConfiguration, "maxStalenessSeconds \(maxStaleness) is below the minimum \(minimum) for this heartbeat frequency")
        }
    }

    static func filterStaleness(_ secondaries: [MongoServerDescription], _ preference: MongoReadPreference, _ topology: MongoTopologyDescription) -> [MongoServerDescription] {
        guard let maxStaleness = preference.maxStalenessSeconds else { return secondaries }
        let limitMS = Int64(maxStaleness) * 1000
        let heartbeat = Int64(topology.heartbeatFrequencyMS)
        if let primary = topology.primary {
            let primaryLag = primary.lastUpdateTimeMS - (primary.lastWriteDateMS ?? 0)
            return secondaries.filter { s in
                let staleness = (s.lastUpdateTimeMS - (s.lastWriteDateMS ?? 0)) - primaryLag + heartbeat
                return staleness <= limitMS
            }
        }
        guard let freshest = secondaries.compactMap(\.lastWriteDateMS).max() else { return secondaries }
        return secondaries.filter { s in
            freshest - (s.lastWriteDateMS ?? 0) + heartbeat <= limitMS
        }
    }

    static func filterTags(_ servers: [MongoServerDescription], _ tagSets: [[String: String]]) -> [MongoServerDescription] {
        guard !tagSets.isEmpty else { return servers }
        for set in tagSets {
            let matching = servers.filter { server in set.allSatisfy { server.tags[$0.key] == $0.value } }
            if !matching.isEmpty { return matching }
        }
        return []
    }
}
