public import Logging

/// Prints the runtime's logs with the simulation's virtual time (TROUPE_SIMULATION_LOG=debug|info|…), for
/// reading a replayed seed next to its trace. Logs are not part of the trace hash.
public struct SimulationLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String

    /// A handler for the logger `label`, writing `level` and above.
    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("\(SimulationExecutors.scheduler.now / 1_000_000)ms [\(event.level)] \(label): \(event.message) \(fields)")
    }
}
