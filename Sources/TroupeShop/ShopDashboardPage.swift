/// The dashboard's page: one HTML document with its style and script inline (no CDN, no library). Charts are
/// SVG polylines drawn by the script from the samples `GET /dashboard/stream` pushes; the tables come from
/// `GET /dashboard.json` every two seconds. Each chart's `<svg>` carries `data-points` (points drawn) and
/// `data-last` (the newest value of each line, JSON) for tests and scripts.
enum ShopDashboardPage {
    static let html = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Troupe shop — operations</title>
        <style>
        :root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--card:#fff}
        *{box-sizing:border-box}body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:var(--bg);color:var(--fg)}
        header{display:flex;align-items:baseline;gap:1em;padding:14px 22px;background:#111827;color:#fff}
        header h1{font-size:17px;margin:0;font-weight:600}header span{color:#9ca3af}
        main{padding:16px 22px}
        .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:14px;margin-bottom:18px}
        .card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px;overflow-x:auto}
        .card h2{font-size:13px;font-weight:600;margin:0 0 6px}
        svg.chart{width:100%;height:150px;display:block}
        svg text{font-size:10px;fill:var(--muted)}
        .legend{display:flex;flex-wrap:wrap;gap:4px 12px;margin-top:4px;color:var(--muted)}
        .legend b{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
        .legend em{font-style:normal;color:var(--fg)}
        table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
        th{color:var(--muted);font-weight:600}
        .empty{color:var(--muted);padding:30px 0;text-align:center}
        .warning{color:#b54708}.error,.critical{color:#b42318}
        </style></head><body>
        <header><h1>Troupe shop — operations</h1><span id="status">connecting…</span></header>
        <main>
        <div class="grid" id="charts"></div>
        <div class="grid">
        <div class="card"><h2>Members</h2><table id="members"></table></div>
        <div class="card"><h2>Nodes in this process</h2><table id="nodes"></table></div>
        <div class="card"><h2>Bus backlog</h2><table id="backlog"></table></div>
        <div class="card"><h2>Catalog cache and orders</h2><table id="cache"></table></div>
        </div>
        <div class="card"><h2>Recent warnings and errors</h2><table id="errors"></table></div>
        </main>
        <script>
        "use strict";
        const WINDOW = 300;  // seconds shown
        const COLORS = ["#2563eb","#16a34a","#dc2626","#9333ea","#ea580c","#0891b2","#ca8a04","#db2777","#4b5563","#65a30d"];
        const CHARTS = [
          {id: "orders", title: "Orders finished per second, by final state", lines: [["orders"]], unit: "/s"},
          {id: "latency", title: "Order latency, start to final state", lines: [["orderP50", "p50"], ["orderP99", "p99"]], unit: "s"},
          {id: "http", title: "HTTP responses per second, by status class", lines: [["http"]], unit: "/s"},
          {id: "httpLatency", title: "HTTP latency p99", lines: [["httpP99", "p99"]], unit: "s"},
          {id: "calls", title: "Actor calls per second, by calling node", lines: [["calls"]], unit: "/s"},
          {id: "callLatency", title: "Actor call latency p50 / p99, by calling node", lines: [["callP50", "p50"], ["callP99", "p99"]], unit: "s"},
          {id: "activations", title: "Activations, by node and actor type", lines: [["activations"]], unit: ""},
          {id: "sagas", title: "Order saga steps per second, by phase and outcome", lines: [["sagaSteps"]], unit: "/s"},
          {id: "sagasActive", title: "Order sagas in progress (running or compensating)", lines: [["sagasActive", "in progress"]], unit: ""},
          {id: "bus", title: "Bus lag, by consumer group (as its consumers report it, every 10 s)", lines: [["busLag"]], unit: " msgs"},
          {id: "outbox", title: "Outbox relay lag p99 (event written → on the bus)", lines: [["outboxP99", "p99"]], unit: "s"},
          {id: "cache", title: "Cache hit ratio", lines: [["cacheHits", "hits"]], unit: "%", scale: 100},
        ];
        let samples = [];
        function el(tag, attrs, text) {
          const e = document.createElementNS(tag === "div" || tag === "span" || tag === "h2" || tag === "b" || tag === "em" ? "http://www.w3.org/1999/xhtml" : "http://www.w3.org/2000/svg", tag);
          for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
          if (text !== undefined) e.textContent = text;
          return e;
        }
        function format(v, unit) {
          if (unit === "s") return v >= 1 ? v.toFixed(2) + " s" : v >= 0.001 ? (v * 1e3).toFixed(1) + " ms" : (v * 1e6).toFixed(0) + " µs";
          if (unit === "%") return v.toFixed(1) + " %";
          return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + unit;
        }
        function setup() {
          const grid = document.getElementById("charts");
          for (const c of CHARTS) {
            const card = el("div", {class: "card"});
            card.appendChild(el("h2", {}, c.title));
            const svg = el("svg", {class: "chart", id: "chart-" + c.id, viewBox: "0 0 600 150", "data-points": "0", "data-last": "{}"});
            card.appendChild(svg);
            card.appendChild(el("div", {class: "legend", id: "legend-" + c.id}));
            grid.appendChild(card);
          }
        }
        function lines(chart) {
          const out = new Map();
          for (const s of samples) {
            for (const [series, label] of chart.lines) {
              for (const [group, value] of Object.entries((s.values || {})[series] || {})) {
                const name = label ? (group === "all" ? label : label + " " + group) : group;
                if (!out.has(name)) out.set(name, []);
                out.get(name).push([s.time, value * (chart.scale || 1)]);
              }
            }
          }
          return out;
        }
        function render() {
          const now = samples.length ? samples[samples.length - 1].time : Date.now() / 1000;
          for (const c of CHARTS) {
            const svg = document.getElementById("chart-" + c.id), legend = document.getElementById("legend-" + c.id);
            // Drawn in the chart's own pixels, so that text is never stretched.
            const W = Math.max(200, Math.round(svg.clientWidth || 600)), H = 150, L = 60, R = 8, T = 8, B = 16;
            svg.setAttribute("viewBox", "0 0 " + W + " " + H);
            svg.textContent = ""; legend.textContent = "";
            const data = lines(c);
            let max = 0, points = 0;
            for (const pts of data.values()) for (const [, v] of pts) max = Math.max(max, v);
            max = c.unit === "%" ? 100 : max > 0 ? max * 1.1 : 1;
            for (let i = 0; i <= 2; i++) {
              const y = T + (H - T - B) * i / 2;
              svg.appendChild(el("line", {x1: L, x2: W - R, y1: y, y2: y, stroke: "#eef0f3"}));
              svg.appendChild(el("text", {x: L - 4, y: y + 3, "text-anchor": "end"}, format(max * (2 - i) / 2, c.unit)));
            }
            svg.appendChild(el("text", {x: L, y: H - 3}, "−" + WINDOW / 60 + " min"));
            svg.appendChild(el("text", {x: W - R, y: H - 3, "text-anchor": "end"}, "now"));
            const last = {};
            let i = 0;
            for (const [name, pts] of [...data.entries()].sort()) {
              const color = COLORS[i++ % COLORS.length];
              const shown = pts.filter(([t]) => t >= now - WINDOW);
              if (!shown.length) continue;
              const path = shown.map(([t, v]) => (L + (W - L - R) * (1 - (now - t) / WINDOW)).toFixed(1) + "," + (T + (H - T - B) * (1 - v / max)).toFixed(1)).join(" ");
              svg.appendChild(el("polyline", {points: path, fill: "none", stroke: color, "stroke-width": 1.6}));
              points += shown.length;
              last[name] = shown[shown.length - 1][1];
              const item = el("span");
              item.appendChild(el("b", {style: "background:" + color}));
              item.appendChild(document.createTextNode(name + " "));
              item.appendChild(el("em", {}, format(last[name], c.unit)));
              legend.appendChild(item);
            }
            if (!points) svg.appendChild(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no data yet"));
            svg.setAttribute("data-points", String(points));
            svg.setAttribute("data-last", JSON.stringify(last));
          }
        }
        function table(id, rows, columns) {
          const t = document.getElementById(id); t.textContent = "";
          const head = t.insertRow(); for (const c of columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
          if (!rows.length) { const td = t.insertRow().insertCell(); td.colSpan = columns.length; td.className = "empty"; td.textContent = "none"; }
          for (const r of rows) { const tr = t.insertRow(); if (r.level) tr.className = r.level; for (const c of columns) tr.insertCell().textContent = r[c] ?? ""; }
        }
        async function refreshTables() {
          try {
            const d = await (await fetch("dashboard.json", {cache: "no-store"})).json();
            table("members", d.members.map(m => ({...m, hosts: m.hosts ? m.hosts.join(", ") : "all"})), ["node", "address", "hosts"]);
            table("nodes", d.nodes, ["node", "activations", "activated", "passivated", "fenced", "callsInFlight", "connections"]);
            table("backlog", d.backlog, ["group", "topic", "lag"]);
            table("cache", [{hits: d.cacheHits, misses: d.cacheMisses, "hit rate": (100 * d.cacheHitRate).toFixed(1) + " %",
                             "bloom rejections": d.bloomRejections, "orders placed here": d.ordersPlaced}],
                  ["hits", "misses", "hit rate", "bloom rejections", "orders placed here"]);
            table("errors", (d.recentErrors || []).slice().reverse().map(r => ({...r, time: new Date(r.time * 1000).toLocaleTimeString()})),
                  ["time", "level", "label", "message"]);
          } catch (e) { document.getElementById("status").textContent = "tables unavailable: " + e; }
        }
        setup(); render(); refreshTables(); setInterval(refreshTables, 2000);
        const source = new EventSource("dashboard/stream");
        source.addEventListener("history", e => { samples = JSON.parse(e.data); render(); });
        source.addEventListener("sample", e => {
          samples.push(JSON.parse(e.data));
          while (samples.length && samples[0].time < samples[samples.length - 1].time - WINDOW) samples.shift();
          render();
          document.getElementById("status").textContent = "live · " + new Date().toLocaleTimeString();
        });
        source.onerror = () => { document.getElementById("status").textContent = "reconnecting…"; };
        </script></body></html>
        """
}
