import Metrics
import NIOCore
import Synchronization
import TroupeCore

/// Connections to one server. Commands multiplex over them (the server answers each connection in
/// order); a new connection opens when every open one is busy and the pool is below its maximum.
final class MongoConnectionPool: Sendable {
    let address: MongoServerAddress
    private let settings: MongoClientSettings
    private let group: any EventLoopGroup
    private let state = Guarded(State())
    private let metrics: ConnectionPoolMetrics

    private struct State {
        var connections: [MongoConnection] = []
        var connecting = 0
        var generation = 0
        var closed = false
    }

    init(address: MongoServerAddress, settings: MongoClientSettings, group: any EventLoopGroup) {
        self.address = address
        self.settings = settings
        self.group = group
        self.metrics = ConnectionPoolMetrics(client: "mongo", server: "\(address)")
    }

    /// A live connection: the least busy, or a new one when all are busy and there is room.
    func connection() async throws(MongoError) -> MongoConnection {
        enum Choice { case use(MongoConnection), open(generation: Int), fail }
        var dropped: Int?
        let choice: Choice = state.withLock { state in
            if state.closed { return .fail }
            let before = state.connections.count
            state.connections.removeAll { !$0.isActive }
            if state.connections.count != before { dropped = state.connections.count }
            let best = state.connections.min { $0.inFlightCount.load(ordering: .relaxed) < $1.inFlightCount.load(ordering: .relaxed) }
            if let best, best.inFlightCount.load(ordering: .relaxed) == 0 { return .use(best) }
            if state.connections.count + state.connecting < settings.maxPoolSize {
                state.connecting += 1
                return .open(generation: state.generation)
            }
            if let best { return .use(best) }
            // Every slot is connecting: open another anyway rather than wait with no deadline.
            state.connecting += 1
            return .open(generation: state.generation)
        }
        if let dropped { metrics.open.record(dropped) }
        switch choice {
        case .use(let connection):
            return connection
        case .fail:
            throw MongoError(.invalidUse, "the client is shut down")
        case .open(let generation):
            do {
                let connection = try await MongoConnection.connect(to: address, settings: settings, group: group)
                let keep = state.withLock { state -> Int? in
                    state.connecting -= 1
                    guard !state.closed, state.generation == generation else { return nil }
                    state.connections.append(connection)
                    return state.connections.count
                }
                metrics.opened.increment()
                if let open = keep { metrics.open.record(open) } else { await connection.close() }
                return connection
            } catch {
                state.withLock { $0.connecting -= 1 }
                metrics.failed.increment()
                throw error
            }
        }
    }

    /// Drops every connection (after a network error or when the server went unknown).
    func clear() {
        let old = state.withLock { state -> [MongoConnection] in
            state.generation += 1
            defer { state.connections.removeAll() }
            return state.connections
        }
        for connection in old { connection.channel.close(promise: nil) }
        metrics.open.record(0)
    }

    func close() async {
        let old = state.withLock { state -> [MongoConnection] in
            state.closed = true
            defer { state.connections.removeAll() }
            return state.connections
        }
        for connection in old { await connection.close() }
        metrics.open.record(0)
    }

    var openCount: Int { state.withLock { $0.connections.count } }
}
