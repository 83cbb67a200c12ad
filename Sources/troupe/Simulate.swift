import ArgumentParser
import Foundation

/// `troupe simulate`: the deterministic simulation. It runs in its own binary, `troupe-simulate`, built beside
/// this one, because it replaces the process's executors (every job on one seeded queue) — something no
/// other command of this process may have.
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run seeds of the deterministic simulation of a cluster under faults; replay one with --seed.",
        discussion: """
        troupe simulate --seeds 500                      # 500 seeds, each in its own process
        troupe simulate --seed 17 --trace                # replay seed 17 and print its events
        troupe simulate --seeds 2000 --mutation no-fencing --json
        Every option: troupe simulate --help-simulation. The simulation is documented in docs/simulation.md.
        """
    )

    @Flag(help: "Show the simulation's own options.")
    var helpSimulation = false
    @Argument(parsing: .captureForPassthrough, help: "Options of the simulation (see --help-simulation).")
    var arguments: [String] = []

    func run() throws {
        let directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let simulator = directory.appendingPathComponent("troupe-simulate").path
        guard FileManager.default.isExecutableFile(atPath: simulator) else {
            throw ValidationError("\(simulator) is missing: build it with `swift build --product troupe-simulate` (same configuration as troupe)")
        }
        let forwarded = helpSimulation ? ["--help"] : arguments
        let argv = ([simulator] + forwarded).map { strdup($0) } + [nil]
        execv(simulator, argv)
        throw ValidationError("cannot run \(simulator): errno \(errno)")
    }
}
