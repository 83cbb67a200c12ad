import Distributed
import Troupe
import TroupeActors
import TroupeBus
import TroupeGateway
import TroupeSaga

/// One greeter per name (the actor's key): it counts the greetings it gave and announces each one on the
/// bus. The new count and the event are one write (the event waits in the actor's own outbox until the bus
/// has it), so a greeting is never counted without its event, nor announced without being counted.
public distributed actor GreeterActor: PersistentVirtualActor {
    public typealias ActorSystem = ClusterActorSystem

    public struct State: Codable, Sendable, OutboxCarrying {
        public var greetings = 0
        public var outbox = Outbox()
    }

    public var persisted = Persisted(State())

    public init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }

    /// Events an earlier activation stored but did not relay (it died first) go out now.
    public func didActivate() async throws {
        if !state.outbox.pending.isEmpty { _ = try? await relayOutbox() }
    }

    public distributed func greet() async throws -> Greeting {
        let name = key
        return try await updateAndEmit { state, events in
            state.greetings += 1
            let greeting = Greeting(message: "Hello, \(name)!", greetings: state.greetings)
            events.emit(try OutgoingMessage(topic: Hello.greetedTopic, keys: [name], json: Greeted(name: name), shardingKey: Hello.leaderboard))
            return greeting
        }
    }
}

/// The greetings counted by name, from the "greeted" events (one leaderboard, key "all").
public distributed actor LeaderboardActor: PersistentVirtualActor {
    public typealias ActorSystem = ClusterActorSystem

    public struct State: Codable, Sendable, InboxCarrying {
        public var counts: [String: Int] = [:]
        /// The events already counted: a redelivered event counts once.
        public var processed = ProcessedMessages(capacity: 1_000)
    }

    public var persisted = Persisted(State())

    public init(actorSystem: ClusterActorSystem) { self.actorSystem = actorSystem }

    public distributed func record(_ message: BusMessage) async throws {
        let event = try message.decode(Greeted.self)
        try await applyOnce(message) { $0.counts[event.name, default: 0] += 1 }
    }

    /// The names greeted most, most first (ties by name).
    public distributed func top(_ count: Int) -> [Entry] {
        state.counts.map { Entry(name: $0.key, greetings: $0.value) }
            .sorted { ($0.greetings, $1.name) > ($1.greetings, $0.name) }
            .prefix(max(0, count)).map { $0 }
    }
}

public struct Greeting: Codable, Sendable, Equatable {
    public var message: String
    public var greetings: Int

    public init(message: String, greetings: Int) {
        self.message = message
        self.greetings = greetings
    }
}

public struct Greeted: Codable, Sendable {
    public var name: String
}

public struct Entry: Codable, Sendable, Equatable {
    public var name: String
    public var greetings: Int

    public init(name: String, greetings: Int) {
        self.name = name
        self.greetings = greetings
    }
}

public enum Hello {
    public static let greetedTopic = "greeted"
    public static let leaderboard = "all"

    /// The whole service: its actors, the consumer that feeds the leaderboard, and its routes.
    public static func service() -> TroupeService {
        var service = TroupeService(name: "hello")
        service.host(GreeterActor.self)
        service.host(LeaderboardActor.self)
        service.route(topic: greetedTopic, group: "leaderboard", to: LeaderboardActor.self,
                      key: { _ in leaderboard }, deliver: { board, message in try await board.record(message) })
        service.routes { context in
            let system = context.system
            return [
                GatewayRoute(.post, "/hello/:name", summary: "Greets a name and counts it", requiresAuth: false) { _, request in
                    let name = try request.parameter("name")
                    return Gateway.json(try await system.reference(GreeterActor.self, key: name).greet())
                },
                GatewayRoute(.get, "/leaderboard", summary: "The ten names greeted most", requiresAuth: false) { _, _ in
                    Gateway.json(try await system.reference(LeaderboardActor.self, key: leaderboard).top(10))
                },
            ]
        }
        return service
    }
}
