import Foundation
import TroupeBSON
import TroupeMongo
import TroupeTestSupport
import TroupeCore

/// `troupe bench mongo`: our driver and pymongo against the same SecantusDB in the same run —
/// sequential `insert_one`, `find_one` by `_id`, and `insert_many` in batches of 1,000 — with each
/// client's own CPU time per operation (the server, written in Python, bounds the throughput of both).
public struct MongoBenchmark: Sendable {
    public var insertOneCount = 20_000
    public var findOneCount = 20_000
    public var insertManyCount = 100_000
    public var batchSize = 1_000

    public init() {}

    static func document(_ i: Int) -> BSONDocument {
        ["_id": .int32(Int32(i)), "name": .string("item-\(i)"), "qty": .int32(Int32(i % 100)), "tags": ["a", "b"]]
    }

    public func run(progress: @Sendable (String) -> Void) async throws -> BenchmarkReport {
        var report = BenchmarkReport(suite: "mongo")
        // Each client gets a fresh server: the server slows down as its oplog and collections grow, so a
        // shared server would favour whichever client ran first (measured: about 2× on insert_one).
        var peer: [String: Double] = [:]
        do {
            let server = try await ServerProcess.mongo()
            defer { server.terminate() }
            for phase in ["insert_one", "find_one", "insert_many"] {
                progress("\(phase): pymongo")
                peer.merge(try measurePeer(url: server.mongoURL, phase: phase)) { $1 }
            }
        }
        let ours: Figures
        do {
            let server = try await ServerProcess.mongo()
            defer { server.terminate() }
            ours = try await withMongoClient(try MongoClientSettings(server.mongoURL)) { client in
                var figures = Figures()
                for phase in ["insert_one", "find_one", "insert_many"] {
                    progress("\(phase): troupe")
                    try await measureOurs(client, phase: phase, into: &figures)
                }
                return figures
            }
        }
        do {
            let figures = ours
            for (name, ourValue) in [("insert_one_per_s", figures.insertOne), ("find_one_per_s", figures.findOne),
                                     ("insert_many_docs_per_s", figures.insertMany)] {
                report["troupe_\(name)"] = ourValue
                report["peer_\(name)"] = peer[name]
                report["ratio_\(name)"] = peer[name].map { ourValue / $0 }
            }
            let operations = Double(insertOneCount + findOneCount + insertManyCount / batchSize)
            let peerCPU = ((peer["insert_one_cpu_us"] ?? .nan) * Double(insertOneCount) + (peer["find_one_cpu_us"] ?? .nan) * Double(findOneCount)
                + (peer["insert_many_cpu_us_per_doc"] ?? .nan) * Double(insertManyCount)) / operations
            let ourCPU = (figures.cpuInsertOne * Double(insertOneCount) + figures.cpuFindOne * Double(findOneCount)
                + figures.cpuInsertMany * Double(insertManyCount)) / operations
            report["troupe_client_cpu_us_per_op"] = ourCPU
            report["peer_client_cpu_us_per_op"] = peerCPU
            report["cpu_ratio_peer_over_troupe"] = peerCPU / ourCPU
            report["troupe_insert_one_cpu_us"] = figures.cpuInsertOne
            report["peer_insert_one_cpu_us"] = peer["insert_one_cpu_us"]
            report["troupe_find_one_cpu_us"] = figures.cpuFindOne
            report["peer_find_one_cpu_us"] = peer["find_one_cpu_us"]
            report["troupe_insert_many_cpu_us_per_doc"] = figures.cpuInsertMany
            report["peer_insert_many_cpu_us_per_doc"] = peer["insert_many_cpu_us_per_doc"]
        }
        return report
    }

    struct Figures {
        var insertOne = 0.0, findOne = 0.0, insertMany = 0.0
        var cpuInsertOne = 0.0, cpuFindOne = 0.0, cpuInsertMany = 0.0
        var cpuMicrosecondsPerOp = 0.0
    }

    /// This process's CPU time (user + system), seconds.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    private func measureOurs(_ client: MongoClient, phase: String, into figures: inout Figures) async throws {
        let items = client.database("bench_troupe").collection("items")
        let cpu = Self.cpuSeconds()
        let start = ContinuousClock.now
        switch phase {
        case "insert_one":
            try await items.drop()
            try await items.insertOne(["_id": -1])  // creates the collection outside the timing
            let cpu = Self.cpuSeconds()
            let start = ContinuousClock.now
            for i in 0..<insertOneCount { try await items.insertOne(Self.document(i)) }
            figures.insertOne = Double(insertOneCount) / (ContinuousClock.now - start).seconds
            figures.cpuInsertOne = (Self.cpuSeconds() - cpu) / Double(insertOneCount) * 1e6
        case "find_one":
            for i in 0..<findOneCount {
                guard try await items.findOne(["_id": .int32(Int32(i % insertOneCount))]) != nil else {
                    throw MongoError(.invalidUse, "benchmark document \(i) missing")
                }
            }
            figures.findOne = Double(findOneCount) / (ContinuousClock.now - start).seconds
            figures.cpuFindOne = (Self.cpuSeconds() - cpu) / Double(findOneCount) * 1e6
        default:
            let many = client.database("bench_troupe").collection("many")
            try await many.drop()
            try await many.insertOne(["_id": -1])
            let cpu = Self.cpuSeconds()
            let start = ContinuousClock.now
            var next = 0
            while next < insertManyCount {
                let batch = (next..<min(next + batchSize, insertManyCount)).map(Self.document)
                try await many.insertMany(batch)
                next += batchSize
            }
            figures.insertMany = Double(insertManyCount) / (ContinuousClock.now - start).seconds
            figures.cpuInsertMany = (Self.cpuSeconds() - cpu) / Double(insertManyCount) * 1e6
            guard try await many.countDocuments() == insertManyCount + 1 else { throw MongoError(.invalidUse, "insert_many lost documents") }
        }
    }

    /// Runs the same workload with pymongo (from the project's venv) and parses its figures.
    private func measurePeer(url: String, phase: String) throws -> [String: Double] {
        guard let executable = ServerProcess.secantusExecutable() else {
            throw MongoError(.invalidUse, "pymongo's venv not found: run scripts/test once (it installs .venv-mongo)")
        }
        let python = URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("python").path
        let script = """
            import sys, time, pymongo
            url, phase, n_one, n_find, n_many, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
            client = pymongo.MongoClient(url)
            db = client["bench_pymongo"]
            items = db["items"]
            def doc(i): return {"_id": i, "name": "item-%d" % i, "qty": i % 100, "tags": ["a", "b"]}
            if phase == "insert_one":
                items.drop(); items.insert_one({"_id": -1})
                c, t = time.process_time(), time.perf_counter()
                for i in range(n_one): items.insert_one(doc(i))
                print("insert_one_per_s", n_one / (time.perf_counter() - t)); print("insert_one_cpu_us", (time.process_time() - c) / n_one * 1e6)
            elif phase == "find_one":
                items.find_one({"_id": 0})
                c, t = time.process_time(), time.perf_counter()
                for i in range(n_find):
                    if items.find_one({"_id": i % n_one}) is None: raise SystemExit("missing %d" % i)
                print("find_one_per_s", n_find / (time.perf_counter() - t)); print("find_one_cpu_us", (time.process_time() - c) / n_find * 1e6)
            else:
                many = db["many"]; many.drop(); many.insert_one({"_id": -1})
                c, t = time.process_time(), time.perf_counter()
                for start in range(0, n_many, batch): many.insert_many([doc(i) for i in range(start, min(start + batch, n_many))])
                print("insert_many_docs_per_s", n_many / (time.perf_counter() - t)); print("insert_many_cpu_us_per_doc", (time.process_time() - c) / n_many * 1e6)
                if many.count_documents({}) != n_many + 1: raise SystemExit("insert_many lost documents")
            """
        let scriptPath = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-bench-pymongo-\(UUID().uuidString).py").path
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: scriptPath) }
        let output = try Command.run([python, scriptPath, url, phase, String(insertOneCount), String(findOneCount), String(insertManyCount), String(batchSize)])
        var figures = [String: Double]()
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { figures[String(parts[0])] = value }
        }
        guard !figures.isEmpty else { throw MongoError(.invalidUse, "pymongo run printed no figures: \(output)") }
        return figures
    }
}
