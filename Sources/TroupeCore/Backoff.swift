/// Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter").
///
/// A pure value: ask it for the next delay and sleep yourself, so it is testable without a clock.
public struct Backoff: Sendable, Hashable {
    /// The delay before the first retry (before jitter).
    public var initial: Duration
    /// The largest delay, however many attempts were made.
    public var maximum: Duration
    /// The factor each attempt multiplies the delay by (≥ 1).
    public var multiplier: Double
    /// Fraction of the delay that is randomised, 0 (none) … 1 (full jitter).
    public var jitter: Double
    public private(set) var attempt: Int = 0

    /// A backoff starting at `initial`, multiplied by `multiplier` per attempt up to `maximum`, with `jitter` of
    /// each delay randomised (0 … 1). Invalid combinations trap: they are programming errors, not input.
    public init(initial: Duration = .milliseconds(50), maximum: Duration = .seconds(5), multiplier: Double = 2, jitter: Double = 1) {
        precondition(initial > .zero && maximum >= initial && multiplier >= 1 && (0...1).contains(jitter),
                     "Backoff: invalid parameters")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = jitter
    }

    /// The delay before the next attempt; grows geometrically up to ``maximum``.
    public mutating func next<G: RandomNumberGenerator>(using generator: inout G) -> Duration {
        let base = min(initial.seconds * pow(multiplier, attempt), maximum.seconds)
        attempt += 1
        let randomised = base * (1 - jitter) + base * jitter * Double.random(in: 0...1, using: &generator)
        return .nanoseconds(Int64(randomised * 1e9))
    }

    /// The delay before the next attempt, randomised with the system's generator.
    public mutating func next() -> Duration {
        var generator = SystemRandomNumberGenerator()
        return next(using: &generator)
    }

    /// Starts over from ``initial`` (after a success).
    public mutating func reset() { attempt = 0 }
}

extension Duration {
    /// The duration in seconds as a `Double`.
    public var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }

    /// The duration in nanoseconds, saturating.
    public var nanoseconds: Int64 {
        let (s, attoseconds) = components
        let (whole, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        return whole &+ attoseconds / 1_000_000_000
    }
}

private func pow(_ base: Double, _ exponent: Int) -> Double {
    var result = 1.0
    for _ in 0..<min(exponent, 64) { result *= base }
    return result
}
