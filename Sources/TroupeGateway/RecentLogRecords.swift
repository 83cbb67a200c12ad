import Foundation
public import Logging
import TroupeCore

/// The last warnings and errors a process logged, for its dashboard: an executable adds ``handler(label:)`` to
/// its logging bootstrap (beside its usual handler, with `MultiplexLogHandler`) and hands the same instance to
/// the dashboard. Keeps `capacity` records, newest last; a record's message is cut at 500 characters.
public final class RecentLogRecords: Sendable {
    /// One warning or error as the dashboard shows it.
    public struct Record: Codable, Sendable, Hashable {
        /// Seconds since 1970.
        public var time: Double
        /// The level's name (`warning`, `error`, `critical`).
        public var level: String
        /// The logger's label.
        public var label: String
        /// The message, cut at 500 characters.
        public var message: String
    }

    /// Records kept (oldest dropped first).
    public let capacity: Int
    /// The lowest level kept.
    public let minimumLevel: Logger.Level
    private let records = Guarded<[Record]>([])

    /// Keeps the last `capacity` records at `minimumLevel` or above (default: 50, warnings and worse).
    public init(capacity: Int = 50, minimumLevel: Logger.Level = .warning) {
        self.capacity = max(1, capacity)
        self.minimumLevel = minimumLevel
    }

    /// The records kept, oldest first.
    public var all: [Record] { records.withLock { $0 } }

    public func append(_ record: Record) {
        records.withLock { records in
            records.append(record)
            if records.count > capacity { records.removeFirst(records.count - capacity) }
        }
    }

    /// A log handler that keeps this process's records at `minimumLevel` or above here.
    public func handler(label: String) -> any LogHandler { Handler(label: label, records: self) }

    struct Handler: LogHandler {
        let label: String
        let records: RecentLogRecords
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level

        init(label: String, records: RecentLogRecords) {
            self.label = label
            self.records = records
            self.logLevel = records.minimumLevel
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            guard level >= records.minimumLevel else { return }
            var text = message.description
            let details = metadata.merging(explicit ?? [:]) { _, new in new }
            if !details.isEmpty {
                text += " " + details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            }
            if text.count > 500 { text = String(text.prefix(500)) + "…" }
            records.append(Record(time: Date().timeIntervalSince1970, level: level.rawValue, label: label, message: text))
        }
    }
}
