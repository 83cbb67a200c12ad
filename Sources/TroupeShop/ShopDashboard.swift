import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
public import TroupeActors
import TroupeBus
public import TroupeGateway
import TroupeCore
import TroupeCache

/// A small operations page: `GET /dashboard` (HTML, refreshes itself every second) over
/// `GET /dashboard.json` — the members and what they host, activations and calls of the nodes this
/// process runs, the bus backlog of the shop's consumer groups, the catalog cache, and the orders
/// placed through this gateway.
extension Shop {
    public struct DashboardSnapshot: Codable, Sendable {
        public struct Member: Codable, Sendable {
            public var node: String
            public var address: String
            public var hosts: [String]?
        }

        /// A node's counters, flat in JSON: `{"node": …, "activations": …, "activated": …, …}`.
        public struct Node: Codable, Sendable {
            public var node: String
            public var statistics: ClusterActorSystem.Statistics

            private enum CodingKeys: String, CodingKey { case node }

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

        public struct Backlog: Codable, Sendable {
            public var group: String
            public var topic: String
            public var lag: Int
        }

        public var members: [Member]
        public var nodes: [Node]
        public var backlog: [Backlog]
        public var cacheHits: Int
        public var cacheMisses: Int
        public var cacheHitRate: Double
        public var bloomRejections: Int
        public var ordersPlaced: Int
    }

    /// The dashboard's data. `systems` are the actor systems of this process (all nodes of the demo; the
    /// gateway's client system in a gateway process).
    public func dashboard(systems: [ClusterActorSystem]) async -> DashboardSnapshot {
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
            ordersPlaced: placedOrders.withLock { $0 })
    }

    /// `GET /dashboard` and `GET /dashboard.json` (no token: serve them on a private address).
    public func dashboardRoutes(systems: @escaping @Sendable () -> [ClusterActorSystem]) -> [GatewayRoute] {
        [
            GatewayRoute(.get, "/dashboard.json", summary: "Operations data: members, nodes, bus backlog, cache", requiresAuth: false,
                         responses: [APIResponse(200, "The snapshot", schema: .object([:]))]) { _, _ in
                Gateway.json(await dashboard(systems: systems()))
            },
            GatewayRoute(.get, "/dashboard", summary: "Operations page (HTML)", requiresAuth: false,
                         responses: [APIResponse(200, "The page", schema: .string, contentType: "text/html")]) { _, _ in
                Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                         body: .init(byteBuffer: ByteBuffer(string: Self.dashboardPage)))
            },
        ]
    }

    static let dashboardPage = """
        <!doctype html>
        <html><head><meta charset="utf-8"><title>Troupe shop</title>
        <style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:0 0 1.5em}
        td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f3f3f3}h2{font-size:16px;margin:1em 0 .4em}</style>
        </head><body><h1>Troupe shop</h1><p id="status">loading…</p>
        <h2>Members</h2><table id="members"></table><h2>Nodes in this process</h2><table id="nodes"></table>
        <h2>Bus backlog</h2><table id="backlog"></table><h2>Catalog cache and orders</h2><table id="cache"></table>
        <script>
        function table(id, rows, columns) {
          const t = document.getElementById(id); t.textContent = "";
          const head = t.insertRow(); for (const c of columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
          for (const r of rows) { const tr = t.insertRow(); for (const c of columns) { tr.insertCell().textContent = r[c] ?? ""; } }
        }
        async function refresh() {
          try {
            const d = await (await fetch("dashboard.json")).json();
            table("members", d.members.map(m => ({...m, hosts: m.hosts ? m.hosts.join(", ") : "all"})), ["node", "address", "hosts"]);
            table("nodes", d.nodes, ["node", "activations", "activated", "passivated", "fenced", "callsInFlight", "connections"]);
            table("backlog", d.backlog, ["group", "topic", "lag"]);
            table("cache", [{hits: d.cacheHits, misses: d.cacheMisses, "hit rate": (100 * d.cacheHitRate).toFixed(1) + " %",
                             "bloom rejections": d.bloomRejections, "orders placed here": d.ordersPlaced}],
                  ["hits", "misses", "hit rate", "bloom rejections", "orders placed here"]);
            document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
          } catch (e) { document.getElementById("status").textContent = "unavailable: " + e; }
        }
        refresh(); setInterval(refresh, 1000);
        </script></body></html>
        """
}
