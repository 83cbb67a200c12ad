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
    }

    /// A live connection: the least busy, or a new one when all are busy and there is room.
    func connection() async throws(MongoError) -> MongoConnection {
        enum Choice { case use(MongoConnection), open(generation: Int), fail }
        let choice: Choice = state.withLock { state in
            if state.closed { return .fail }
            state.connections.removeAll { !$0.isActive }
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
        switch choice {
        case .use(let connection):
            return connection
        case .fail:
            throw MongoError(.invalidUse, "the client is shut down")
        case .open(let generation):
            do {
                let connection = try await MongoConnection.connect(to: address, settings: settings, group: group)
                let keep = state.withLock { state -> Bool in
                    state.connecting -= 1
                    guard !state.closed, state.generation == generation else { return false }
                    state.connections.append(connection)
                    return true
                }
                if !keep { await connection.close() }
                return connection
            } catch {
                state.withLock { $0.connecting -= 1 }
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
    }

    func close() async {
        let old = state.withLock { state -> [MongoConnection] in
            state.closed = true
            defer { state.connections.removeAll() }
            return state.connections
        }
        for connection in old { await connection.close() }
    }

    var openCount: Int { state.withLock { $0.connections.count } }
}
