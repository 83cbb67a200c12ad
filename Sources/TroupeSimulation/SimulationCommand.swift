public import ArgumentParser
import Foundation
import TroupeCore

/// `troupe simulate` (the `troupe-simulate` binary): runs seeds of the deterministic simulation, each in a
/// process of its own (nothing of one seed can leak into the next), and reports failures with the command
/// that replays them.
public struct SimulationCommand: ParsableArguments {
    @Option(help: "How many seeds to run.")
    var seeds = 100
    @Option(help: "Run this one seed in this process and print its trace (a replay).")
    var seed: UInt64?
    @Option(help: "The first seed of the run.")
    var firstSeed: UInt64 = 1
    @Option(help: "Simulated nodes.")
    var nodes = 3
    @Option(help: "Faults to inject: all, none, or a list of crash, partition, etcd, store.")
    var faults = "all"
    @Option(help: "What the clients do: shop (orders through the real shop actors and saga) or transfers.")
    var workload = "shop"
    @Option(help: "Put a known bug back to show that the simulation finds it: \(Mutation.allCases.map(\.rawValue).joined(separator: ", ")). The run stops at the first seed that finds it.")
    var mutation: String?
    @Option(help: "Simulated seconds of workload with faults (then up to 20 s for what is open to settle).")
    var duration = 60
    @Option(help: "Seeds run at once (default: the number of cores).")
    var jobs: Int?
    @Flag(help: "Print one JSON object on the last line.")
    var json = false
    @Flag(help: "With --seed: print every event of the trace as it happens.")
    var trace = false
    @Flag(help: .hidden)
    var child = false

    /// Nodes crash without a goodbye and restart 1–7 s later with a new incarnation.
    public init() {}

    /// Parses `arguments` and runs; exits the process.
    public static func main(arguments: [String]) async -> Never {
        do {
            let command = try SimulationCommand.parse(arguments)
            Foundation.exit(try await command.run())
        } catch {
            SimulationCommand.exit(withError: error)
        }
    }

    private func options(seed: UInt64) throws -> Simulation.Options {
        var options = Simulation.Options(seed: seed)
        guard (1...9).contains(nodes) else { throw ValidationError("--nodes must be 1…9") }
        guard (1...3600).contains(duration) else { throw ValidationError("--duration must be 1…3600 simulated seconds") }
        options.nodes = nodes
        guard let kind = WorkloadKind(rawValue: workload) else {
            throw ValidationError("--workload: unknown \"\(workload)\"; known: \(WorkloadKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        options.workload = kind
        options.duration = .seconds(duration)
        do { options.faults = try FaultSet(parsing: faults) } catch { throw ValidationError("--faults: \(error)") }
        if let mutation {
            guard let known = Mutation(rawValue: mutation) else {
                throw ValidationError("--mutation: unknown \"\(mutation)\"; known: \(Mutation.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            options.mutation = known
            if known != .noFencing, kind != .transfers {
                throw ValidationError("--mutation \(mutation) applies to --workload transfers (the shop's own code has no such switch)")
            }
        }
        return options
    }

    private func run() async throws -> Int32 {
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1") }
        if let seed {
            let options = try options(seed: seed)
            SimulationWorld.echo = trace && !child
            let started = ContinuousClock.now
            let outcome = await Simulation(options: options).run(on: SimulationExecutors.scheduler)
            let wall = (ContinuousClock.now - started).seconds
            if child {
                print(Self.json(seed: seed, outcome: outcome, wall: wall))
            } else {
                if !trace { for event in outcome.lastEvents { print("  \(event)") } }
                print("seed \(seed): \(outcome.violations.isEmpty ? "ok" : "\(outcome.violations.count) violation(s)"), trace \(String(outcome.traceHash, radix: 16)), \(outcome.events) events, \(outcome.steps) jobs, \(outcome.intents) intents, \(outcome.convertedSleeps) real-clock sleeps, \(String(format: "%.1f", outcome.simulatedSeconds)) simulated s in \(String(format: "%.2f", wall)) s")
                for violation in outcome.violations { print("  violation: \(violation)") }
            }
            return outcome.violations.isEmpty ? 0 : 1
        }
        return try runSeeds()
    }

    /// One JSON line per seed (what a child prints for its parent).
    static func json(seed: UInt64, outcome: Simulation.Outcome, wall: Double) -> String {
        let object: [String: Any] = [
            "seed": seed, "violations": outcome.violations, "trace": String(outcome.traceHash, radix: 16), "events": outcome.events,
            "steps": outcome.steps, "simulated_s": outcome.simulatedSeconds, "wall_s": wall, "intents": outcome.intents,
            "last_events": outcome.violations.isEmpty ? [] : outcome.lastEvents, "converted_sleeps": outcome.convertedSleeps,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    private struct SeedResult {
        var seed: UInt64
        var violations: [String]
        var trace: String
        var simulated: Double
        var lastEvents: [String]
    }

    private func replayCommand(_ seed: UInt64) -> String {
        "troupe simulate --seed \(seed) --nodes \(nodes) --faults \(faults) --duration \(duration) --workload \(workload)" + (mutation.map { " --mutation \($0)" } ?? "")
    }

    private func runSeeds() throws -> Int32 {
        _ = try options(seed: firstSeed)  // validates the options before any child runs
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let parallel = max(1, jobs ?? ProcessInfo.processInfo.activeProcessorCount)
        let started = ContinuousClock.now
        // The first seed twice: the same seed must replay to the same trace.
        let replay = try runChildren([firstSeed, firstSeed], executable: executable, parallel: parallel)
        let deterministic = replay.count == 2 && replay[0].trace == replay[1].trace
        if !deterministic {
            print("NOT DETERMINISTIC: seed \(firstSeed) gave traces \(replay.map(\.trace))")
        }
        var results: [SeedResult] = []
        var firstFailure: SeedResult?
        func record(_ result: SeedResult) {
            results.append(result)
            guard !result.violations.isEmpty else { return }
            if firstFailure == nil { firstFailure = result }
            guard mutation == nil || firstFailure?.seed == result.seed else { return }
            print("seed \(result.seed) FAILED: \(result.violations.count) violation(s); replay: \(replayCommand(result.seed))")
            for violation in result.violations.prefix(5) { print("  violation: \(violation)") }
            print("  last events:")
            for event in result.lastEvents.suffix(12) { print("    \(event)") }
        }
        record(replay[0])
        var next = firstSeed + 1
        let last = firstSeed + UInt64(seeds) - 1
        while next <= last, firstFailure == nil || mutation == nil {
            let batch = Array(next...min(last, next + UInt64(mutation == nil ? 64 : parallel) - 1))
            next += UInt64(batch.count)
            for result in try runChildren(batch, executable: executable, parallel: parallel) { record(result) }
        }
        let wall = (ContinuousClock.now - started).seconds
        let failures = results.filter { !$0.violations.isEmpty }.count
        let simulated = results.reduce(0) { $0 + $1.simulated } + replay.dropFirst().reduce(0) { $0 + $1.simulated }
        let seedsRun = results.count + 1
        let summary = "\(results.count) seeds (+1 replay), \(failures) failing, \(String(format: "%.1f", Double(seedsRun) / wall * 60)) seeds/min, \(String(format: "%.0f", simulated / wall))× real time, deterministic: \(deterministic)"
            + (mutation.map { "; mutation \($0): " + (firstFailure.map { "found by seed \($0.seed)" } ?? "NOT found") } ?? "")
        print(summary)
        if json {
            let object: [String: Any] = [
                "seeds": results.count, "failures": failures, "seeds_per_s": Double(seedsRun) / wall,
                "simulated_s_per_wall_s": simulated / wall, "deterministic": deterministic,
                "first_failing_seed": firstFailure.map { $0.seed as Any } ?? NSNull(), "mutation": mutation.map { $0 as Any } ?? NSNull(),
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
        guard deterministic else { return 1 }
        if mutation != nil { return firstFailure == nil ? 1 : 0 }
        return failures == 0 ? 0 : 1
    }

    /// Runs each seed in a child process, `parallel` at a time (a new one starts as soon as one ends);
    /// results in the order of `seeds`.
    private func runChildren(_ seeds: [UInt64], executable: String, parallel: Int) throws -> [SeedResult] {
        var results: [Int: SeedResult] = [:]
        var running: [(index: Int, process: Process, pipe: Pipe)] = []
        var next = 0
        while results.count < seeds.count {
            while running.count < parallel, next < seeds.count {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                var arguments = ["--child", "--seed", String(seeds[next]), "--nodes", String(nodes), "--faults", faults,
                                 "--duration", String(duration), "--workload", workload]
                if let mutation { arguments += ["--mutation", mutation] }
                process.arguments = arguments
                let pipe = Pipe()
                process.standardOutput = pipe
                try process.run()
                running.append((next, process, pipe))
                next += 1
            }
            guard let done = running.firstIndex(where: { !$0.process.isRunning }) else {
                usleep(2_000)
                continue
            }
            let (index, process, pipe) = running.remove(at: done)
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let seed = seeds[index]
            let line = String(decoding: output, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                results[index] = SeedResult(seed: seed, violations: ["the seed's process ended without a result (exit \(process.terminationStatus))"],
                                            trace: "-", simulated: 0, lastEvents: [])
                continue
            }
            results[index] = SeedResult(
                seed: seed, violations: object["violations"] as? [String] ?? [], trace: object["trace"] as? String ?? "-",
                simulated: object["simulated_s"] as? Double ?? 0, lastEvents: object["last_events"] as? [String] ?? []
            )
        }
        return (0..<seeds.count).map { results[$0]! }
    }
}
