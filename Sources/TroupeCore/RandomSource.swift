import Synchronization

/// Where a runtime draws its random numbers (node incarnations, ids, jitter): the system's generator in
/// production, a seeded one in the deterministic simulation so that a run replays exactly from its seed.
public protocol RandomSource: Sendable {
    /// 64 uniformly distributed random bits.
    func next() -> UInt64
}

extension RandomSource {
    /// A `RandomNumberGenerator` drawing from this source (for `Int.random(in:using:)` and the like).
    public var generator: RandomSourceGenerator { RandomSourceGenerator(source: self) }
}

/// A `RandomNumberGenerator` view of a ``RandomSource``.
public struct RandomSourceGenerator: RandomNumberGenerator {
    let source: any RandomSource

    /// 64 random bits from the source.
    public mutating func next() -> UInt64 { source.next() }
}

/// The operating system's cryptographically secure generator.
public struct SystemRandomSource: RandomSource {
    /// The system's generator.
    public init() {}

    /// 64 random bits from the operating system.
    public func next() -> UInt64 {
        var generator = SystemRandomNumberGenerator()
        return generator.next()
    }
}

/// A seeded generator (SplitMix64): the same seed yields the same sequence. Not for secrets.
public final class SeededRandomSource: RandomSource {
    private let state: Mutex<UInt64>

    /// A generator that yields the same sequence for the same `seed`.
    public init(seed: UInt64) { state = Mutex(seed) }

    /// The next 64 bits of the sequence.
    public func next() -> UInt64 {
        state.withLock { state in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}
