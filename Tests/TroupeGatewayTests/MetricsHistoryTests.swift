import Foundation
import Testing
import Synchronization
import TroupeGateway

@Suite("The dashboard's metrics history")
struct MetricsHistoryTests {
    @Test("Prometheus text parses: labels with escapes, infinities, comments and malformed lines skipped")
    func parse() {
        let text = """
            # HELP a_total A counter.
            # TYPE a_total counter
            a_total{route="/orders",status="2xx"} 12
            a_total{quote="say \\"hi\\"",slash="a\\\\b"} 3.5
            b_bucket{le="+Inf"} 7
            c 1e3 1700000000000
            d +Inf
            broken{le="1" 4
            novalue
            """
        let samples = PrometheusSample.parse(text)
        #expect(samples == [
            PrometheusSample(name: "a_total", labels: ["route": "/orders", "status": "2xx"], value: 12),
            PrometheusSample(name: "a_total", labels: ["quote": "say \"hi\"", "slash": "a\\b"], value: 3.5),
            PrometheusSample(name: "b_bucket", labels: ["le": "+Inf"], value: 7),
            PrometheusSample(name: "c", value: 1000),
            PrometheusSample(name: "d", value: .infinity),
        ])
    }

    @Test("rates per group, a counter that restarted, gauges, a ratio and histogram quantiles over one interval")
    func derive() {
        let before = PrometheusSample.parse("""
            req_total{status="2xx",route="/a"} 100
            req_total{status="2xx",route="/b"} 50
            req_total{status="5xx",route="/a"} 10
            reads_total{result="hit"} 90
            reads_total{result="miss"} 10
            lat_bucket{node="n1",le="0.1"} 10
            lat_bucket{node="n1",le="0.2"} 10
            lat_bucket{node="n1",le="+Inf"} 10
            """)
        let after = PrometheusSample.parse("""
            req_total{status="2xx",route="/a"} 120
            req_total{status="2xx",route="/b"} 70
            req_total{status="5xx",route="/a"} 4
            lag{group="g"} 3
            lag{group="g"} 4
            reads_total{result="hit"} 120
            reads_total{result="miss"} 20
            lat_bucket{node="n1",le="0.1"} 60
            lat_bucket{node="n1",le="0.2"} 110
            lat_bucket{node="n1",le="+Inf"} 110
            """)
        let values = MetricsHistory.derive([
            .init("http", family: "req_total", by: ["status"], kind: .rate),
            .init("onlyA", family: "req_total", matching: ["route": "/a"], kind: .rate),
            .init("lag", family: "lag", by: ["group"], kind: .gauge),
            .init("hits", family: "reads_total", kind: .ratio(label: "result", values: ["hit"])),
            .init("p50", family: "lat", by: ["node"], kind: .quantile(0.5)),
            .init("p99", family: "lat", by: ["node"], kind: .quantile(0.99)),
            .init("absent", family: "nothing_total", kind: .rate),
        ], previous: before, current: after, seconds: 2)
        #expect(values["http"] == ["2xx": 20, "5xx": 2], "40 more 2xx in 2 s; the 5xx counter restarted: its 4 count")
        #expect(values["onlyA"] == ["all": 12], "each series' own increase: 20 and 4 (restarted)")
        #expect(values["lag"] == ["g": 7])
        #expect(values["hits"] == ["all": 0.75], "30 hits of 40 reads in the interval")
        // 100 observations: 50 at or under 0.1, 50 in (0.1, 0.2]. The median is the 50th: the top of the first bucket.
        #expect(values["p50"]?["n1"] == 0.1)
        #expect(abs((values["p99"]?["n1"] ?? 0) - 0.198) < 1e-9, "\(values["p99"] ?? [:])")
        #expect(values["absent"] == nil)
    }

    @Test("a subscriber gets the kept samples, then each new one; the stream ends when the history stops")
    func subscribe() async throws {
        let count = Count()
        let history = MetricsHistory(series: [.init("ticks", family: "ticks_total", kind: .rate)], interval: .milliseconds(20), keep: 3) {
            "ticks_total \(count.next() * 10)"
        }
        let running = Task { try await history.run() }
        let deadline = ContinuousClock.now + .seconds(10)
        while history.samples.count < 3 {
            #expect(ContinuousClock.now < deadline, "no samples within 10 s")
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        let (kept, next) = history.subscribe()
        #expect(kept.count == 3, "at most `keep` samples are kept")
        #expect(kept.allSatisfy { ($0.values["ticks"]?["all"] ?? 0) > 0 })
        var iterator = next.makeAsyncIterator()
        let newer = await iterator.next()
        #expect(newer != nil && newer!.time >= kept.last!.time)
        #expect(history.subscribers == 1)
        running.cancel()
        _ = try? await running.value
        var ended = false
        while let _ = await iterator.next() {}
        ended = true
        #expect(ended)
        #expect(history.subscribers == 0)
        let (_, late) = history.subscribe()
        var lateIterator = late.makeAsyncIterator()
        #expect(await lateIterator.next() == nil, "a stream asked for after the stop ends at once")
    }
}

private final class Count: Sendable {
    private let value = Mutex(0)
    func next() -> Int { value.withLock { $0 += 1; return $0 } }
}
