import Synchronization

/// A 12-byte ObjectId: 4-byte big-endian seconds, 5 random bytes chosen once per process, and a
/// 3-byte big-endian counter starting at a random value.
public struct BSONObjectID: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Bytes 0..<8, big-endian.
    public let high: UInt64
    /// Bytes 8..<12, big-endian.
    public let low: UInt32

    private static let processUnique: UInt64 = UInt64.random(in: 0..<(1 << 40))
    private static let counter = Atomic<UInt32>(UInt32.random(in: 0..<(1 << 24)))

    /// A new id for the current time.
    public init() {
        let seconds = UInt32(truncatingIfNeeded: Int64(clockSeconds()))
        self.init(seconds: seconds)
    }

    /// A new id with the given timestamp (seconds since the epoch).
    public init(seconds: UInt32) {
        let count = Self.counter.wrappingAdd(1, ordering: .relaxed).newValue & 0xFF_FFFF
        // high = seconds(4) | processUnique(first 4 of 5 bytes); low = last byte | counter(3)
        high = UInt64(seconds) << 32 | (Self.processUnique >> 8)
        low = UInt32(truncatingIfNeeded: Self.processUnique & 0xFF) << 24 | count
    }

    /// The id with these raw bits: the first 8 bytes (timestamp and the top of the random part) and the last 4.
    public init(high: UInt64, low: UInt32) {
        self.high = high
        self.low = low
    }

    /// Twelve raw bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 12 else { return nil }
        var h: UInt64 = 0
        var l: UInt32 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt32(b) }
        }
        high = h
        low = l
    }

    /// 24 hexadecimal digits (either case).
    public init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 24 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(12)
        var i = 0
        while i < 24 {
            guard let hi = hexNibble(utf8[i]), let lo = hexNibble(utf8[i + 1]) else { return nil }
            bytes.append(hi << 4 | lo)
            i += 2
        }
        self.init(bytes: bytes)
    }

    /// The 12 bytes, big endian.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(12)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: high >> UInt64(shift))) }
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: low >> UInt32(shift))) }
        return out
    }

    /// Seconds since the epoch at which the id was made.
    public var timestampSeconds: UInt32 { UInt32(truncatingIfNeeded: high >> 32) }

    /// 24 lowercase hexadecimal digits.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(24)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    public static func < (a: BSONObjectID, b: BSONObjectID) -> Bool { (a.high, a.low) < (b.high, b.low) }
}

func hexNibble(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
    default: nil
    }
}

/// Wall-clock seconds (ObjectIds carry creation time by definition).
private func clockSeconds() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
