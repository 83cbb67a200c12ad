@_spi(ExperimentalCustomExecutors) @_spi(ExperimentalScheduling) import _Concurrency
import Logging
@_spi(Simulation) import TroupeSimulation
#if canImport(Glibc)
import Glibc
#endif

/// Every job of this process runs on the simulation's one deterministic queue.
struct SimulationExecutorFactory: ExecutorFactory {
    static var mainExecutor: any MainExecutor { SimulationExecutors.main }
    static var defaultExecutor: any TaskExecutor { SimulationExecutors.task }
}

@main
struct TroupeSimulate {
    /// Installs the simulation's executors before the first task exists, then runs their one queue on this
    /// thread until the command exits the process.
    static func main() {
        // Dictionary and Set orders are seeded per process unless this is set: a replay needs the same order.
        if getenv("SWIFT_DETERMINISTIC_HASHING") == nil {
            setenv("SWIFT_DETERMINISTIC_HASHING", "1", 1)
            execv("/proc/self/exe", CommandLine.unsafeArgv)
            fatalError("cannot re-execute with deterministic hashing: errno \(errno)")
        }
        _createExecutors(factory: SimulationExecutorFactory.self)
        // The runtime's own logs would drown the report; the simulation's events are its trace (--trace).
        if let level = getenv("TROUPE_SIMULATION_LOG").flatMap({ Logger.Level(rawValue: String(cString: $0)) }) {
            LoggingSystem.bootstrap { SimulationLogHandler(label: $0, level: level) }
        } else {
            LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
        }
        let arguments = Array(CommandLine.arguments.dropFirst())
        Task { await SimulationCommand.main(arguments: arguments) }
        try? SimulationExecutors.main.run()
        let scheduler = SimulationExecutors.scheduler
        fatalError("the simulation's queue ran dry before the command finished (every task blocked) after \(scheduler.steps) jobs at \(scheduler.now) ns")
    }
}
