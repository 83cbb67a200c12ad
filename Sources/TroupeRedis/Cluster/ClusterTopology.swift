public import TroupeRESP

/// Which node serves which slots, from `CLUSTER SLOTS`.
public struct ClusterTopology: Sendable, Hashable {
    /// A node of a Redis Cluster: its address.
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        /// Host name or address.
        public var host: String
        /// Port.
        public var port: Int

        /// The node at `host:port`.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }
    }

    /// The primary of each slot (`nil`: not covered).
    private var owners: [Node?]

    /// A topology with no slot covered yet.
    public init() {
        owners = Array(repeating: nil, count: HashSlot.count)
    }

    /// The primary serving `slot`, or nil when no node covers it.
    public func primary(forSlot slot: Int) -> Node? {
        guard (0..<HashSlot.count).contains(slot) else { return nil }
        return owners[slot]
    }

    /// Every node owning a slot (walks all 16,384 slots: not for the per-command path).
    public var primaries: Set<Node> { Set(owners.compactMap { $0 }) }

    /// Whether no slot has an owner yet (cheap: stops at the first owned slot).
    public var isEmpty: Bool { !owners.contains { $0 != nil } }

    /// Whether every one of the 16,384 slots has an owner.
    public var coversAllSlots: Bool { !owners.contains(nil) }

    mutating func assign(_ range: ClosedRange<Int>, to node: Node) {
        let lower = max(range.lowerBound, 0)
        let upper = min(range.upperBound, HashSlot.count - 1)
        guard lower <= upper else { return }
        for slot in lower...upper { owners[slot] = node }
    }

    /// Moves one slot (after a `MOVED` redirect).
    mutating func move(slot: Int, to node: Node) {
        guard (0..<HashSlot.count).contains(slot) else { return }
        owners[slot] = node
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, …], replicas…], …]`.
    public static func parse(slots reply: RESPValue, defaultHost: String) throws -> ClusterTopology {
        guard let ranges = reply.array else { throw RedisError(.unexpectedReply, "CLUSTER SLOTS returned no array") }
        var topology = ClusterTopology()
        for range in ranges {
            guard let parts = range.array, parts.count >= 3, let start = parts[0].int, let end = parts[1].int,
                  let primary = parts[2].array, primary.count >= 2, let port = primary[1].int
            else { throw RedisError(.unexpectedReply, "CLUSTER SLOTS returned a malformed range") }
            var host = primary[0].string ?? ""
            if host.isEmpty || host == "?" { host = defaultHost }
            topology.assign(Int(start)...Int(end), to: Node(host: host, port: Int(port)))
        }
        return topology
    }

    /// Parses a `MOVED 3999 127.0.0.1:6381` / `ASK …` error text into (slot, node).
    public static func parseRedirect(_ message: String) -> (slot: Int, node: Node)? {
        let parts = message.split(separator: " ")
        guard parts.count == 3, let slot = Int(parts[1]), let colon = parts[2].lastIndex(of: ":"),
              let port = Int(parts[2][parts[2].index(after: colon)...]) else { return nil }
        return (slot, Node(host: String(parts[2][..<colon]), port: port))
    }
}
