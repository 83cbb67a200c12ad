import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a generator reads the time (injectable for tests).
public protocol MillisecondClock: Sendable {
    /// Milliseconds since the Unix epoch.
    func nowMilliseconds() -> Int64
}

/// The wall clock.
public struct SystemMillisecondClock: MillisecondClock {
    /// The system's wall clock.
    public init() {}
    /// Milliseconds since the Unix epoch, from `CLOCK_REALTIME`.
    public func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// Why an id could not be made.
public struct SnowflakeError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure a ``SnowflakeError`` is.
    public enum Kind: Sendable { case invalidConfiguration, clockMovedBackwards, workerLost }
    /// What kind of failure this is.
    public var kind: Kind
    /// What happened, in one line.
    public var message: String
    /// An error of `kind` saying `message`.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { "SnowflakeError.\(kind): \(message)" }
}

/// 64-bit sortable ids: 41 bits of milliseconds since `epoch`, 10 bits of worker id, 12 bits of sequence —
/// 4,096 ids per millisecond per worker; when a millisecond is used up the generator waits for the next.
/// If the clock moves back by at most `maxBackwardStep`, it waits the step out; beyond that it refuses
/// with ``SnowflakeError/Kind/clockMovedBackwards`` rather than risk a duplicate.
public final class SnowflakeGenerator: Sendable {
    /// Bits of an id that hold the worker id (10: 1,024 workers).
    public static let workerBits = 10
    /// Bits of an id that hold the sequence within a millisecond (12: 4,096 ids).
    public static let sequenceBits = 12
    /// The largest worker id (1,023).
    public static let maxWorkerID = (1 << workerBits) - 1
    /// The largest sequence number within one millisecond (4,095).
    public static let maxSequence = (1 << sequenceBits) - 1
    /// 2025-01-01T00:00:00Z.
    public static let defaultEpochMS: Int64 = 1_735_689_600_000

    /// This generator's worker id, unique among the processes making ids at the same time.
    public let workerID: Int
    /// The epoch ids count milliseconds from, in milliseconds since 1970.
    public let epochMS: Int64
    /// The largest backward clock step waited out instead of refused.
    public let maxBackwardStep: Duration
    private let clock: any MillisecondClock
    private let state = Guarded(State())

    private struct State {
        var lastMS: Int64 = -1
        var sequence = 0
    }

    /// A generator for `workerID` (0 … ``maxWorkerID``).
    /// - Throws: ``SnowflakeError`` with kind `invalidConfiguration` for a worker id out of range or an epoch in the future or more than 2^41 ms ago.
    public init(workerID: Int, epochMS: Int64 = SnowflakeGenerator.defaultEpochMS, maxBackwardStep: Duration = .milliseconds(10),
                clock: any MillisecondClock = SystemMillisecondClock()) throws(SnowflakeError) {
        guard (0...Self.maxWorkerID).contains(workerID) else {
            throw SnowflakeError(.invalidConfiguration, "worker id \(workerID) is outside 0…\(Self.maxWorkerID)")
        }
        let now = clock.nowMilliseconds()
        guard epochMS <= now else { throw SnowflakeError(.invalidConfiguration, "epoch \(epochMS) is in the future") }
        guard now - epochMS < (1 << 41) else { throw SnowflakeError(.invalidConfiguration, "41 bits of milliseconds since the epoch are exhausted") }
        self.workerID = workerID
        self.epochMS = epochMS
        self.maxBackwardStep = maxBackwardStep
        self.clock = clock
    }

    /// The next id. Waits (at most a millisecond, or the allowed backward step) when it must.
    public func next() throws(SnowflakeError) -> Int64 {
        while true {
            let now = clock.nowMilliseconds()
            enum Step { case id(Int64), wait(Int64), refuse(Int64) }
            let step: Step = state.withLock { state in
                if now < state.lastMS {
                    let behind = state.lastMS - now
                    return behind <= maxBackwardStep.components.seconds * 1000 + maxBackwardStep.components.attoseconds / 1_000_000_000_000_000
                        ? .wait(behind) : .refuse(behind)
                }
                if now == state.lastMS {
                    guard state.sequence < Self.maxSequence else { return .wait(1) }
                    state.sequence += 1
                } else {
                    state.lastMS = now
                    state.sequence = 0
                }
                return .id((now - epochMS) << Int64(Self.workerBits + Self.sequenceBits) | Int64(workerID) << Int64(Self.sequenceBits) | Int64(state.sequence))
            }
            switch step {
            case .id(let id):
                return id
            case .wait(let milliseconds):
                usleep(useconds_t(max(50, min(milliseconds * 1000, 1_000_000)) / (milliseconds > 1 ? 1 : 4)))
            case .refuse(let behind):
                throw SnowflakeError(.clockMovedBackwards, "the clock moved back \(behind) ms, more than the allowed \(maxBackwardStep); refusing to make ids")
            }
        }
    }

    /// The parts of an id.
    public static func decompose(_ id: Int64, epochMS: Int64 = defaultEpochMS) -> (timestampMS: Int64, workerID: Int, sequence: Int) {
        (epochMS + (id >> Int64(workerBits + sequenceBits)), Int((id >> Int64(sequenceBits)) & Int64(maxWorkerID)), Int(id & Int64(maxSequence)))
    }
}

extension SnowflakeError: TransientError {
    /// A worker id not held right now (not acquired yet, its lease being renewed after an outage) comes back;
    /// a clock far behind or an invalid configuration does not pass by retrying.
    public var isTransient: Bool { kind == .workerLost }
}
