import NIOEmbedded
public import TroupeCore

/// An error of the simulated environment (a refused connection, an unreachable server, a dead process).
public struct SimulationError: Error, CustomStringConvertible, Sendable {
    /// What failed.
    public let description: String
    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}

/// The known bugs a mutation puts back, to show that the simulation finds them.
public enum Mutation: String, CaseIterable, Sendable {
    /// The state store accepts a write whatever the version it was based on (no fencing).
    case noFencing = "no-fencing"
    /// A wallet forgets the operations it applied after two simulated seconds (idempotency key released).
    case releaseIdempotencyKey = "release-idempotency-key"
    /// A transfer whose credit was refused does not refund the debit (compensation skipped).
    case skipCompensation = "skip-compensation"
}

/// What the simulated clients do.
public enum WorkloadKind: String, CaseIterable, Sendable {
    /// The shop: orders with idempotency keys placed with the real ``OrderActor``, run by the real place-order
    /// saga over the real inventory and account actors, checked with the shop's own audit.
    case shop
    /// Transfers between wallets (debit, credit, refund as compensation), written for the simulation.
    case transfers
}

/// The faults a run injects.
public struct FaultSet: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Nodes crash without a goodbye and restart 1–7 s later with a new incarnation.
    public static let crash = FaultSet(rawValue: 1)
    /// Two nodes are partitioned: their connections break, bytes in flight are lost, new connections time out.
    public static let partition = FaultSet(rawValue: 2)
    /// A node is cut off from the membership service: its lease expires and it drops out of the others' view.
    public static let membership = FaultSet(rawValue: 4)
    /// The state store fails requests (before or after the write landed) and stalls some.
    public static let store = FaultSet(rawValue: 8)
    /// Every fault.
    public static let all: FaultSet = [.crash, .partition, .membership, .store]

    /// The faults' names on the command line.
    public static let names: [(String, FaultSet)] = [("crash", .crash), ("partition", .partition), ("etcd", .membership), ("store", .store)]

    /// `all`, `none`, or a comma-separated list of crash, partition, etcd, store.
    public init(parsing text: String) throws {
        switch text {
        case "all": self = .all
        case "none", "": self = []
        default:
            var set: FaultSet = []
            for name in text.split(separator: ",") {
                guard let fault = Self.names.first(where: { $0.0 == name })?.1 else {
                    throw SimulationError("unknown fault \"\(name)\"; faults: all, none, \(Self.names.map(\.0).joined(separator: ", "))")
                }
                set.insert(fault)
            }
            self = set
        }
    }

    public var description: String {
        self == .all ? "all" : self.isEmpty ? "none" : Self.names.filter { contains($0.1) }.map(\.0).joined(separator: ",")
    }
}

/// What one simulated run shares: virtual time, the seeded randomness, the event trace, and the simulated
/// network, membership service and state store.
///
/// Invariant (why `@unchecked Sendable`): touched only from the simulation thread.
public final class SimulationWorld: @unchecked Sendable {
    /// The seed of the run.
    public let seed: UInt64
    /// The scheduler that picks the next job.
    public let scheduler: SimulationScheduler
    /// The virtual clock.
    public let clock: SimulationClock
    /// The runtime's randomness (incarnations, ids), seeded.
    public let random: SeededRandomSource
    /// The known bug put back, if any.
    public let mutation: Mutation?
    let loop: EmbeddedEventLoop
    private(set) var network: SimulatedNetwork!
    private(set) var etcd: SimulatedEtcd!
    private(set) var store: SimulatedStore!
    private var decisions: SplitMix
    private(set) var traceHash: UInt64 = 0xcbf2_9ce4_8422_2325
    private(set) var events = 0
    private var recent: [String] = []

    init(seed: UInt64, scheduler: SimulationScheduler, mutation: Mutation?) {
        self.seed = seed
        self.scheduler = scheduler
        self.clock = SimulationClock(scheduler: scheduler)
        self.random = SeededRandomSource(seed: seed &* 0x2545_F491_4F6C_DD1D)
        self.decisions = SplitMix(seed: seed)
        self.mutation = mutation
        self.loop = EmbeddedEventLoop()
        network = SimulatedNetwork(world: self, loop: loop)
        etcd = SimulatedEtcd(world: self)
        store = SimulatedStore(world: self)
    }

    // MARK: - Seeded decisions

    func next() -> UInt64 { decisions.next() }
    func chance(_ probability: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < probability }
    func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    func nanoseconds(between low: Duration, and high: Duration) -> Int64 {
        let (a, b) = (low.nanoseconds, high.nanoseconds)
        return a + Int64(next() % UInt64(max(1, b - a)))
    }

    /// One-way network latency in nanoseconds: 50–500 µs, one in fifty 2–30 ms.
    func latency() -> Int64 {
        chance(0.02) ? nanoseconds(between: .milliseconds(2), and: .milliseconds(30))
            : nanoseconds(between: .microseconds(50), and: .microseconds(500))
    }

    // MARK: - Trace

    /// Adds an event to the trace (hashed; the last ones are kept for a failure report).
    func trace(_ event: String) {
        let line = "\(scheduler.now / 1_000_000)ms \(event)"
        for byte in line.utf8 {
            traceHash ^= UInt64(byte)
            traceHash = traceHash &* 0x100_0000_01b3
        }
        traceHash ^= 0x0a
        traceHash = traceHash &* 0x100_0000_01b3
        events += 1
        if Self.echo { print("\(line)  [job \(scheduler.steps)]") }
        recent.append(line)
        if recent.count > 40 { recent.removeFirst(recent.count - 40) }
    }

    var lastEvents: [String] { recent }

    /// The world of this process's running seed (for the workload's actors to add events). Invariant (why
    /// `nonisolated(unsafe)`): one seed per process, set before its first job and cleared after its last, and
    /// read only by jobs of the simulation's one thread.
    nonisolated(unsafe) static var current: SimulationWorld?

    /// Every event is printed as it happens (`--trace`). Set once, before the seed runs, on the same thread.
    nonisolated(unsafe) static var echo = false
}
