import Logging
import ServiceLifecycle
import Synchronization
public import TroupeRESP
import TroupeCore
import NIOCore

/// A Redis Cluster client: routes each command to the primary of its key's hash slot, follows
/// `MOVED` (updating the slot map and refreshing the topology) and `ASK` (one `ASKING` + command on
/// the importing node), and rejects multi-key commands whose keys span slots.
public final class RedisClusterClient: Sendable {
    /// How a cluster client connects: its seed nodes and the settings of each node's connections.
    public struct Configuration: Sendable {
        /// Nodes to learn the topology from (any subset of the cluster).
        public var seeds: [ClusterTopology.Node]
        /// Settings of the per-node connection pools (host and port are replaced per node).
        public var node: RedisConfiguration
        /// Redirects followed for one command before it fails.
        public var maxRedirects: Int

        /// A cluster reached first through `seeds`, with per-node pools of `node`'s settings.
        public init(seeds: [ClusterTopology.Node], node: RedisConfiguration = RedisConfiguration(), maxRedirects: Int = 16) {
            self.seeds = seeds
            self.node = node
            self.maxRedirects = maxRedirects
        }
    }

    /// The settings the client was made with.
    public let configuration: Configuration
    private let state: Guarded<State>
    private let shutdownSignal: AsyncStream<Void>
    private let shutdownContinuation: AsyncStream<Void>.Continuation

    private struct State {
        var topology = ClusterTopology()
        var clients: [ClusterTopology.Node: RedisClient] = [:]
        var refreshes = 0
        var moved = 0
        var asked = 0
        var shutDown = false
    }

    /// - Throws: ``RedisError/Code/invalidConfiguration`` when there is no seed or a setting is invalid.
    public init(configuration: Configuration) throws {
        guard !configuration.seeds.isEmpty else { throw RedisError(.invalidConfiguration, "a cluster client needs at least one seed node") }
        guard configuration.maxRedirects >= 1 else { throw RedisError(.invalidConfiguration, "maxRedirects must be at least 1") }
        try configuration.node.validate()
        self.configuration = configuration
        self.state = Guarded(State())
        (self.shutdownSignal, self.shutdownContinuation) = AsyncStream.makeStream(of: Void.self)
    }

    /// The current slot map.
    public var topology: ClusterTopology { state.withLock { $0.topology } }

    /// How many times the topology was loaded.
    public var topologyRefreshes: Int { state.withLock { $0.refreshes } }

    /// Redirects followed since start: (`MOVED`, `ASK`).
    public var redirectsFollowed: (moved: Int, ask: Int) { state.withLock { ($0.moved, $0.asked) } }

    /// Loads the slot map from the first seed or known node that answers `CLUSTER SLOTS`.
    public func refreshTopology() async throws {
        let known = state.withLock { Array($0.topology.primaries) }
        var lastError: (any Error)?
        for node in known + configuration.seeds {
            do {
                let reply = try await client(for: node).send(["CLUSTER", "SLOTS"])
                let topology = try ClusterTopology.parse(slots: reply, defaultHost: node.host)
                state.withLock { state in
                    state.topology = topology
                    state.refreshes += 1
                }
                configuration.node.logger.debug("redis cluster topology loaded", metadata: [
                    "redis.cluster.primaries": "\(topology.primaries.map(\.description).sorted())",
                ])
                return
            } catch {
                lastError = error
            }
        }
        throw RedisError(.connectFailed, "no cluster node answered CLUSTER SLOTS", underlying: lastError)
    }

    /// Sends one command to the primary owning its keys; an error reply throws ``RedisError/Code/server``.
    @discardableResult
    public func send(_ arguments: [any RESPArgument], timeout: Duration? = nil) async throws -> RESPValue {
        let reply = try await sendRaw(arguments, timeout: timeout)
        if reply.isError { throw RedisError.server(reply, command: RedisConnection.commandName(arguments)) }
        return reply
    }

    /// Sends one command, following redirects; returns the final reply as is.
    public func sendRaw(_ arguments: [any RESPArgument], timeout: Duration? = nil) async throws -> RESPValue {
        let slot = try Self.slot(of: arguments)
        return try await route(slot: slot) { client, asking in
            if asking {
                let replies = try await client.pipeline([["ASKING"], arguments], timeout: timeout)
                return replies[1]
            }
            return try await client.sendRaw(arguments, timeout: timeout)
        }
    }

    /// Sends commands back to back to the node owning their (single) slot.
    /// - Throws: ``RedisError/Code/crossSlot`` when their keys span slots.
    public func pipeline(_ commands: [[any RESPArgument]], timeout: Duration? = nil) async throws -> [RESPValue] {
        let slots = Set(try commands.compactMap { try Self.slot(of: $0) })
        guard slots.count <= 1 else { throw RedisError(.crossSlot, "the pipeline's keys span \(slots.count) hash slots") }
        var result: [RESPValue] = []
        _ = try await route(slot: slots.first) { client, asking in
            let replies = try await client.pipeline(asking ? [["ASKING"]] + commands : commands, timeout: timeout)
            result = asking ? Array(replies.dropFirst()) : replies
            // Route on the first redirect found; a redirect means the whole pipeline went to the wrong node.
            return result.first { Self.redirect(in: $0) != nil } ?? .simpleString(.init(string: "OK"))
        }
        return result
    }

    /// The slot of a command's keys, `nil` when it has none.
    static func slot(of arguments: [any RESPArgument]) throws -> Int? {
        guard let keys = CommandKeys.keys(arguments), !keys.isEmpty else { return nil }
        let slots = Set(keys.map { HashSlot.of($0) })
        guard slots.count == 1, let slot = slots.first else {
            throw RedisError(.crossSlot, "\(RedisConnection.commandName(arguments)) names keys in \(slots.count) different hash slots")
        }
        return slot
    }

    private enum Redirect { case moved(Int, ClusterTopology.Node), ask(Int, ClusterTopology.Node), tryAgain, clusterDown }

    private static func redirect(in reply: RESPValue) -> Redirect? {
        guard reply.isError, let message = reply.string else { return nil }
        if message.hasPrefix("MOVED "), let target = ClusterTopology.parseRedirect(message) { return .moved(target.slot, target.node) }
        if message.hasPrefix("ASK "), let target = ClusterTopology.parseRedirect(message) { return .ask(target.slot, target.node) }
        if message.hasPrefix("TRYAGAIN") { return .tryAgain }
        if message.hasPrefix("CLUSTERDOWN") { return .clusterDown }
        return nil
    }

    private func route(
        slot: Int?, _ attempt: (RedisClient, _ asking: Bool) async throws -> RESPValue
    ) async throws -> RESPValue {
        // Per command: a cheap emptiness check (building the set of primaries walks every slot).
        if state.withLock({ $0.topology.isEmpty }) { try await refreshTopology() }
        var node = try self.node(for: slot)
        var asking = false
        for redirects in 0...configuration.maxRedirects {
            let reply = try await attempt(try client(for: node), asking)
            asking = false
            switch Self.redirect(in: reply) {
            case nil:
                return reply
            case .moved(let movedSlot, let target)?:
                state.withLock { state in
                    state.topology.move(slot: movedSlot, to: target)
                    state.moved += 1
                }
                node = target
                if redirects > 0 { try await refreshTopology() }  // repeated MOVED: the map is stale
            case .ask(_, let target)?:
                state.withLock { $0.asked += 1 }
                node = target
                asking = true
            case .tryAgain?:
                try await Task.sleep(for: .milliseconds(5 * (redirects + 1)))
            case .clusterDown?:
                try await Task.sleep(for: .milliseconds(50))
                try await refreshTopology()
                node = try self.node(for: slot)
            }
        }
        throw RedisError(.server, "gave up after \(configuration.maxRedirects) redirects")
    }

    private func node(for slot: Int?) throws -> ClusterTopology.Node {
        try state.withLock { state in
            if let slot, let owner = state.topology.primary(forSlot: slot) { return owner }
            guard let any = state.topology.primaries.randomElement() ?? configuration.seeds.first else {
                throw RedisError(.connectFailed, "the cluster topology is empty")
            }
            return any
        }
    }

    /// The pool of one node, created on first use.
    public func client(for node: ClusterTopology.Node) throws -> RedisClient {
        try state.withLock { state in
            guard !state.shutDown else { throw RedisError(.clientShutdown, "the cluster client was shut down") }
            if let client = state.clients[node] { return client }
            var configuration = self.configuration.node
            configuration.host = node.host
            configuration.port = node.port
            let client = try RedisClient(configuration: configuration)
            state.clients[node] = client
            return client
        }
    }

    /// Runs until graceful shutdown, cancellation or ``shutdown()``; then closes every node's pool.
    public func run() async throws {
        await waitForShutdown(shutdownSignal) { self.shutdown() }
    }

    /// Closes every node's connections; commands in flight fail.
    public func shutdown() {
        let clients = state.withLock { state -> [RedisClient] in
            state.shutDown = true
            return Array(state.clients.values)
        }
        for client in clients { client.shutdown() }
        shutdownContinuation.finish()
    }
}

extension RedisClusterClient: RedisCommandSender {}
