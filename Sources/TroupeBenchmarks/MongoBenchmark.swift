import Foundation
import TroupeBSON
import TroupeMongo
import TroupeTestSupport

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
        let server = try await ServerProcess.mongo()
        do {
            let settings = try MongoClientSettings(server.mongoURL)
            let ours = try await withMongoClient(settings) { client in
                try await measureOurs(client, progress: progress)
            }
            progress("pymongo")
            let peer = try measurePeer(url: server.mongoURL)
            for (name, ourValue, peerValue) in [
                ("insert_one_per_s", ours.insertOne, peer["insert_one_per_s"]),
                ("find_one_per_s", ours.findOne, peer["find_one_per_s"]),
                ("insert_many_docs_per_s", ours.insertMany, peer["insert_many_docs_per_s"]),
            ] {
                report["troupe_\(name)"] = ourValue
                report["peer_\(name)"] = peerValue
                report["ratio_\(name)"] = peerValue.map { ourValue / $0 }
            }
            report["troupe_client_cpu_us_per_op"] = ours.cpuMicrosecondsPerOp
            report["peer_client_cpu_us_per_op"] = peer["cpu_us_per_op"]
            report["cpu_ratio_peer_over_troupe"] = peer["cpu_us_per_op"].map { $0 / ours.cpuMicrosecondsPerOp }
            report["troupe_insert_one_cpu_us"] = ours.cpuInsertOne
            report["peer_insert_one_cpu_us"] = peer["insert_one_cpu_us"]
            report["troupe_find_one_cpu_us"] = ours.cpuFindOne
            report["peer_find_one_cpu_us"] = peer["find_one_cpu_us"]
            report["troupe_insert_many_cpu_us_per_doc"] = ours.cpuInsertMany
            report["peer_insert_many_cpu_us_per_doc"] = peer["insert_many_cpu_us_per_doc"]
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
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

    private func measureOurs(_ client: MongoClient, progress: @Sendable (String) -> Void) async throws -> Figures {
        let collection = client.database("bench_troupe").collection("items")
        try await collection.drop()
        try await collection.insertOne(["_id": -1])  // warm up: connection, collection
        var figures = Figures()
        var totalCPU = 0.0

        progress("insert_one × \(insertOneCount)")
        var cpu = Self.cpuSeconds()
        var start = ContinuousClock.now
        for i in 0..<insertOneCount { try await collection.insertOne(Self.document(i)) }
        figures.insertOne = Double(insertOneCount) / (ContinuousClock.now - start).seconds
        var used = Self.cpuSeconds() - cpu
        totalCPU += used
        figures.cpuInsertOne = used / Double(insertOneCount) * 1e6

        progress("find_one × \(findOneCount)")
        cpu = Self.cpuSeconds()
        start = ContinuousClock.now
        for i in 0..<findOneCount {
            guard try await collection.findOne(["_id": .int32(Int32(i % insertOneCount))]) != nil else {
                throw MongoError(.invalidUse, "benchmark document \(i) missing")
            }
        }
        figures.findOne = Double(findOneCount) / (ContinuousClock.now - start).seconds
        used = Self.cpuSeconds() - cpu
        totalCPU += used
        figures.cpuFindOne = used / Double(findOneCount) * 1e6

        progress("insert_many \(insertManyCount) in batches of \(batchSize)")
        let many = client.database("bench_troupe").collection("many")
        try await many.drop()
        cpu = Self.cpuSeconds()
        start = ContinuousClock.now
        var next = 0
        while next < insertManyCount {
            let batch = (next..<min(next + batchSize, insertManyCount)).map(Self.document)
            try await many.insertMany(batch)
            next += batchSize
        }
        figures.insertMany = Double(insertManyCount) / (ContinuousClock.now - start).seconds
        used = Self.cpuSeconds() - cpu
        totalCPU += used
        figures.cpuInsertMany = used / Double(insertManyCount) * 1e6
        figures.cpuMicrosecondsPerOp = totalCPU / Double(insertOneCount + findOneCount + insertManyCount / batchSize) * 1e6
        guard try await many.countDocuments() == insertManyCount else { throw MongoError(.invalidUse, "insert_many lost documents") }
        return figures
    }

    /// Runs the same workload with pymongo (from the project's venv) and parses its figures.
    private func measurePeer(url: String) throws -> [String: Double] {
        guard let executable = ServerProcess.secantusExecutable() else {
            throw MongoError(.invalidUse, "pymongo's venv not found: run scripts/test once (it installs .venv-mongo)")
        }
        let python = URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("python").path
        let script = """
            import sys, time, pymongo
            url, n_one, n_find, n_many, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
            client = pymongo.MongoClient(url)
            db = client["bench_pymongo"]
            items = db["items"]; items.drop(); items.insert_one({"_id": -1})
            def doc(i): return {"_id": i, "name": "item-%d" % i, "qty": i % 100, "tags": ["a", "b"]}
            out = {}; total_cpu = 0.0
            c, t = time.process_time(), time.perf_counter()
            for i in range(n_one): items.insert_one(doc(i))
            out["insert_one_per_s"] = n_one / (time.perf_counter() - t); used = time.process_time() - c; total_cpu += used
            out["insert_one_cpu_us"] = used / n_one * 1e6
            c, t = time.process_time(), time.perf_counter()
            for i in range(n_find):
                if items.find_one({"_id": i % n_one}) is None: raise SystemExit("missing %d" % i)
            out["find_one_per_s"] = n_find / (time.perf_counter() - t); used = time.process_time() - c; total_cpu += used
            out["find_one_cpu_us"] = used / n_find * 1e6
            many = db["many"]; many.drop()
            c, t = time.process_time(), time.perf_counter()
            for start in range(0, n_many, batch): many.insert_many([doc(i) for i in range(start, min(start + batch, n_many))])
            out["insert_many_docs_per_s"] = n_many / (time.perf_counter() - t); used = time.process_time() - c; total_cpu += used
            out["insert_many_cpu_us_per_doc"] = used / n_many * 1e6
            out["cpu_us_per_op"] = total_cpu / (n_one + n_find + n_many // batch) * 1e6
            for k, v in out.items(): print(k, v)
            """
        let scriptPath = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-bench-pymongo-\(UUID().uuidString).py").path
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: scriptPath) }
        let output = try Command.run([python, scriptPath, url, String(insertOneCount), String(findOneCount), String(insertManyCount), String(batchSize)])
        var figures = [String: Double]()
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { figures[String(parts[0])] = value }
        }
        guard figures["insert_one_per_s"] != nil else { throw MongoError(.invalidUse, "pymongo run printed no figures: \(output)") }
        return figures
    }
}
