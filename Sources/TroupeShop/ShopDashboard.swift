import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
public import TroupeActors
import TroupeBus
public import TroupeGateway
import TroupeCore
import TroupeCache

/// The operations page: `GET /dashboard` (HTML, no external script or style) draws live charts of the last
/// minutes — orders finished per second by final state, order latency, HTTP statuses, actor calls and their
/// latency per node, activations per node and type, saga steps, bus lag per group, cache hit ratio — from
/// `GET /dashboard/stream` (Server-Sent Events of a ``MetricsHistory``), and tables of the members, the nodes
/// of this process, the bus backlog, the catalog cache and the recent warnings and errors from
/// `GET /dashboard.json`.
extension Shop {
    /// What the shop's dashboard shows at one moment: members, activations, the bus backlog, the catalog cache.
    public struct DashboardSnapshot: Codable, Sendable {
        /// A member of the cluster as the dashboard shows it.
        public struct Member: Codable, Sendable {
            /// The node's name.
            public var node: String
            /// Its cluster address.
            public var address: String
            /// The host names it answers to, when known.
            public var hosts: [String]?
        }

        /// A node's counters, flat in JSON: `{"node": …, "activations": …, "activated": …, …}`.
        public struct Node: Codable, Sendable {
            /// The node's name.
            public var node: String
            /// Its actor system's counters.
            public var statistics: ClusterActorSystem.Statistics

            private enum CodingKeys: String, CodingKey { case node }

            /// The counters of `node`.
            public init(node: String, statistics: ClusterActorSystem.Statistics) {
                self.node = node
                self.statistics = statistics
            }

            public init(from decoder: any Decoder) throws {
                node = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .node)
                statistics = try ClusterActorSystem.Statistics(from: decoder)
            }

            public func encode(to encoder: any Encoder) throws {
                try statistics.encode(to: encoder)
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(node, forKey: .node)
            }
        }

        /// A consumer group's backlog on one topic.
        public struct Backlog: Codable, Sendable {
            /// The consumer group.
            public var group: String
            /// The topic.
            public var topic: String
            /// Messages not yet handled by the group.
            public var lag: Int
        }

        /// The cluster's members.
        public var members: [Member]
        /// This process's nodes and their counters.
        public var nodes: [Node]
        /// The bus backlog per group and topic.
        public var backlog: [Backlog]
        /// Catalog reads answered by the cache.
        public var cacheHits: Int
        /// Catalog reads that missed.
        public var cacheMisses: Int
        /// Hits over reads (0 before any read).
        public var cacheHitRate: Double
        /// Reads refused by the Bloom filter (unknown SKUs).
        public var bloomRejections: Int
        /// Orders placed through this process.
        public var ordersPlaced: Int
        /// The process's last warnings and errors, newest last.
        public var recentErrors: [RecentLogRecords.Record]
    }

    /// The dashboard's data. `systems` are the actor systems of this process (all nodes of the demo; the
    /// gateway's client system in a gateway process).
    public func dashboard(systems: [ClusterActorSystem], recentErrors: RecentLogRecords? = nil) async -> DashboardSnapshot {
        let members = (systems.first?.members ?? []).map {
            DashboardSnapshot.Member(node: $0.node.name, address: "\($0.node.host):\($0.node.port)", hosts: $0.actorTypes.map { Array($0).sorted() })
        }
        let nodes = systems.map { system in
            DashboardSnapshot.Node(node: system.node.name, statistics: system.statistics)
        }
        var backlog: [DashboardSnapshot.Backlog] = []
        if let bus {
            for (group, topic) in [(Self.timeoutGroup, Self.timeoutTopic), (Self.salesGroup, OrderActor.eventsTopic)] {
                let lag = (try? await bus.lag(group: group, topic: topic))?.values.reduce(0, +) ?? -1
                backlog.append(.init(group: group, topic: topic, lag: lag))
            }
        }
        let cache = catalog.statistics
        return DashboardSnapshot(
            members: members, nodes: nodes, backlog: backlog, cacheHits: cache.hits + cache.l1Hits, cacheMisses: cache.misses,
            cacheHitRate: cache.hitRate, bloomRejections: cache.bloomRejections,
            ordersPlaced: placedOrders.withLock { $0 }, recentErrors: recentErrors?.all ?? [])
    }

    /// The series the dashboard charts, read from the process's own metrics (see ``MetricFamilies``).
    public static let dashboardSeries: [MetricsHistory.Series] = [
        .init("orders", family: MetricFamilies.sagasFinished.name, matching: ["saga": sagaName], by: ["status"], kind: .rate),
        .init("orderP50", family: MetricFamilies.sagaDuration.name, matching: ["saga": sagaName], kind: .quantile(0.5)),
        .init("orderP99", family: MetricFamilies.sagaDuration.name, matching: ["saga": sagaName], kind: .quantile(0.99)),
        .init("http", family: MetricFamilies.gatewayRequests.name, by: ["status"], kind: .rate),
        .init("httpP99", family: MetricFamilies.gatewayRequestDuration.name, kind: .quantile(0.99)),
        .init("calls", family: MetricFamilies.actorCalls.name, by: ["node"], kind: .rate),
        .init("callP50", family: MetricFamilies.actorCallDuration.name, by: ["node"], kind: .quantile(0.5)),
        .init("callP99", family: MetricFamilies.actorCallDuration.name, by: ["node"], kind: .quantile(0.99)),
        .init("activations", family: MetricFamilies.actorActivations.name, by: ["node", "type"], kind: .gauge),
        .init("sagasActive", family: MetricFamilies.sagasActive.name, matching: ["saga": sagaName], kind: .gauge),
        .init("sagaSteps", family: MetricFamilies.sagaSteps.name, matching: ["saga": sagaName], by: ["phase", "outcome"], kind: .rate),
        .init("busLag", family: MetricFamilies.busLag.name, by: ["group"], kind: .gauge),
        .init("outboxP99", family: MetricFamilies.outboxRelayLag.name, kind: .quantile(0.99)),
        .init("cacheHits", family: MetricFamilies.cacheReads.name, kind: .ratio(label: "result", values: ["hit", "l1_hit", "null_hit"])),
    ]

    /// `GET /dashboard`, `GET /dashboard.json` and, with a `history` (sampling ``dashboardSeries``),
    /// `GET /dashboard/stream`. No token: serve them on a private address.
    public func dashboardRoutes(systems: @escaping @Sendable () -> [ClusterActorSystem], history: MetricsHistory? = nil,
                                recentErrors: RecentLogRecords? = nil) -> [GatewayRoute] {
        var routes = [
            GatewayRoute(.get, "/dashboard.json", summary: "Operations data: members, nodes, bus backlog, cache, recent errors", requiresAuth: false,
                         responses: [APIResponse(200, "The snapshot", schema: .object([:]))]) { _, _ in
                Gateway.json(await dashboard(systems: systems(), recentErrors: recentErrors))
            },
            GatewayRoute(.get, "/dashboard", summary: "Operations page (HTML)", requiresAuth: false,
                         responses: [APIResponse(200, "The page", schema: .string, contentType: "text/html")]) { _, _ in
                Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                         body: .init(byteBuffer: ByteBuffer(string: ShopDashboardPage.html)))
            },
        ]
        if let history { routes.append(history.streamRoute("/dashboard/stream")) }
        return routes
    }
}
