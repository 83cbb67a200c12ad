import Foundation

/// A private network for a fault-injection run, so that a partition is a real one: each node runs in a Linux
/// network namespace of its own, joined by a veth pair to a bridge in the host's namespace. The servers
/// (etcd, Redis, SecantusDB) and the gateways stay in the host's namespace and listen on the bridge's
/// address (the hub). Partitioning a node takes its veth down: its packets, and everyone's packets to it,
/// vanish — established connections go silent rather than being reset, as across a failed switch.
///
/// Needs root and iproute2 (`ip`). Addresses are private (10.201.x.0/24, x from the process id) and the
/// names carry the process id, so two runs do not collide; ``remove()`` deletes everything, and a run
/// removes what a killed run of the same process id left behind.
struct ChaosNetwork: Sendable {
    let tag: String
    let subnet: Int
    let nodes: Int

    /// The bridge's address, where the servers and gateways listen.
    var hub: String { "10.201.\(subnet).1" }
    var bridge: String { "\(tag)br" }

    /// The address of node `index` (1-based) inside its namespace.
    func address(ofNode index: Int) -> String { "10.201.\(subnet).\(10 + index)" }
    func namespace(ofNode index: Int) -> String { "\(tag)n\(index)" }
    private func hostEnd(ofNode index: Int) -> String { "\(tag)h\(index)" }
    private func nodeEnd(ofNode index: Int) -> String { "\(tag)v\(index)" }

    /// Why a network cannot be built here (nil when it can): not root, or no `ip`.
    static var unavailableReason: String? {
        if geteuid() != 0 { return "a network partition needs network namespaces, which need root (run as root, or leave out the partition fault)" }
        if ipPath == nil { return "a network partition needs iproute2's `ip` (apt-get install iproute2)" }
        return nil
    }

    static var ipPath: String? {
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func create(nodes: Int) throws -> ChaosNetwork {
        if let reason = unavailableReason { throw ChaosError(reason) }
        let pid = Int(getpid())
        let network = ChaosNetwork(tag: "trc\(pid % 10_000)", subnet: 1 + pid % 250, nodes: nodes)
        network.remove()
        do {
            try network.ip("link", "add", network.bridge, "type", "bridge")
            try network.ip("addr", "add", "\(network.hub)/24", "dev", network.bridge)
            try network.ip("link", "set", network.bridge, "up")
            for index in 1...nodes {
                let namespace = network.namespace(ofNode: index)
                let inside = network.nodeEnd(ofNode: index)
                try network.ip("netns", "add", namespace)
                try network.ip("link", "add", network.hostEnd(ofNode: index), "type", "veth", "peer", "name", inside)
                try network.ip("link", "set", inside, "netns", namespace)
                try network.ip("link", "set", network.hostEnd(ofNode: index), "master", network.bridge)
                try network.ip("link", "set", network.hostEnd(ofNode: index), "up")
                try network.ip("-n", namespace, "addr", "add", "\(network.address(ofNode: index))/24", "dev", inside)
                try network.ip("-n", namespace, "link", "set", inside, "up")
                try network.ip("-n", namespace, "link", "set", "lo", "up")
            }
        } catch {
            network.remove()
            throw error
        }
        return network
    }

    /// The command line that runs `arguments` inside node `index`'s namespace (the same process: `ip netns
    /// exec` execs it, so signals reach the program itself).
    func prefix(forNode index: Int) -> [String] {
        [Self.ipPath ?? "ip", "netns", "exec", namespace(ofNode: index)]
    }

    /// Cuts node `index` off from everything (servers, gateways, the other nodes).
    func partition(node index: Int) throws { try ip("link", "set", hostEnd(ofNode: index), "down") }

    func heal(node index: Int) throws { try ip("link", "set", hostEnd(ofNode: index), "up") }

    /// Deletes the namespaces, the veth pairs and the bridge (errors ignored: parts may not exist).
    func remove() {
        for index in 1...max(nodes, 1) {
            try? ip("netns", "del", namespace(ofNode: index))
            try? ip("link", "del", hostEnd(ofNode: index))
        }
        try? ip("link", "del", bridge)
    }

    private func ip(_ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.ipPath ?? "/usr/sbin/ip")
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw ChaosError("ip \(arguments.joined(separator: " ")) failed: \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}
