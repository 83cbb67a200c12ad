import Foundation
import Testing
import TroupeTestSupport

/// `troupe simulate`: seeds of the real actor runtime on the deterministic executor, replayed to the same
/// trace, and able to find the known bugs a mutation puts back.
@Suite("Deterministic simulation (troupe simulate)", .serialized)
struct SimulationTests {
    static var simulator: String {
        URL(fileURLWithPath: ShopClusterTests.troupeExecutable).deletingLastPathComponent().appendingPathComponent("troupe-simulate").path
    }

    static func json(_ output: String) throws -> [String: Any] {
        let line = output.split(separator: "\n").last.map(String.init) ?? ""
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "no JSON line in: \(output.suffix(2000))")
    }

    @Test("one seed replays to the same trace, in-process and twice; eight seeds of each workload under every fault keep every promise")
    func seedsHoldAndReplay() throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.simulator), "build troupe-simulate first (swift build)")
        let first = try Command.run([Self.simulator, "--seed", "5", "--duration", "20"], timeout: .seconds(300))
        let second = try Command.run([Self.simulator, "--seed", "5", "--duration", "20"], timeout: .seconds(300))
        let trace = { (output: String) -> String? in
            guard let line = output.split(separator: "\n").last, let range = line.range(of: "trace ") else { return nil }
            return String(line[range.upperBound...].prefix { $0.isHexDigit })
        }
        #expect(trace(first) != nil && trace(first) == trace(second), "\(first.suffix(300)) vs \(second.suffix(300))")
        for workload in ["shop", "transfers"] {
            let run = try Self.json(Command.run([Self.simulator, "--seeds", "8", "--duration", "20", "--workload", workload, "--json"],
                                                timeout: .seconds(600)))
            #expect(run["seeds"] as? Int == 8, "\(workload)")
            #expect(run["failures"] as? Int == 0, "\(workload)")
            #expect(run["deterministic"] as? Bool == true, "\(workload)")
            #expect(run["first_failing_seed"] is NSNull, "\(workload)")
            #expect((run["simulated_s_per_wall_s"] as? Double ?? 0) > 10, "\(workload)")
        }
    }

    @Test("every mutation (no fencing, an idempotency key released, a compensation skipped) is found", arguments: [
        ("no-fencing", "shop"), ("no-fencing", "transfers"), ("release-idempotency-key", "transfers"), ("skip-compensation", "transfers"),
    ])
    func mutationFound(_ mutation: String, _ workload: String) throws {
        // The command fails (exit 1) when the mutation is not found in the seeds given.
        let run = try Self.json(Command.run([Self.simulator, "--seeds", "200", "--mutation", mutation, "--workload", workload, "--json"],
                                            timeout: .seconds(900)))
        #expect(run["mutation"] as? String == mutation)
        #expect(run["first_failing_seed"] is NSNumber)
        #expect(run["deterministic"] as? Bool == true)
    }
}
