/// IEEE 754-2008 128-bit decimal in the binary integer decimal (BID) encoding MongoDB uses.
/// Parsing is exact: a string that cannot be represented without rounding is rejected.
public struct BSONDecimal128: Sendable, Hashable, CustomStringConvertible {
    /// The high 64 bits (sign, combination field, the exponent and the top of the coefficient).
    public let high: UInt64
    /// The low 64 bits of the coefficient.
    public let low: UInt64

    static let exponentBias = 6176
    static let maxExponent = 6111
    static let minExponent = -6176
    static let maxDigits = 34
    static let maxCoefficient: UInt128 = {
        var v: UInt128 = 1
        for _ in 0..<34 { v *= 10 }
        return v - 1
    }()

    /// The value with these raw bits.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    private static let signBit: UInt64 = 1 << 63
    private static let infinityHigh: UInt64 = 0x7800_0000_0000_0000
    private static let nanHigh: UInt64 = 0x7C00_0000_0000_0000

    /// Not a number.
    public static let nan = BSONDecimal128(high: nanHigh, low: 0)
    /// Positive infinity.
    public static let infinity = BSONDecimal128(high: infinityHigh, low: 0)
    /// Negative infinity.
    public static let negativeInfinity = BSONDecimal128(high: infinityHigh | signBit, low: 0)

    init(negative: Bool, exponent: Int, coefficient: UInt128) {
        let biased = UInt64(exponent + Self.exponentBias)
        let coefficientHigh = UInt64(truncatingIfNeeded: coefficient >> 64)
        high = (negative ? Self.signBit : 0) | biased << 49 | (coefficientHigh & 0x1_FFFF_FFFF_FFFF)
        low = UInt64(truncatingIfNeeded: coefficient)
    }

    /// Whether it is NaN.
    public var isNaN: Bool { high & 0x7C00_0000_0000_0000 == Self.nanHigh }
    /// Whether it is positive or negative infinity.
    public var isInfinite: Bool { high & 0x7C00_0000_0000_0000 == Self.infinityHigh }
    /// Whether the sign bit is set (`-0` included).
    public var isNegative: Bool { high & Self.signBit != 0 }

    /// Sign, exponent and coefficient of a finite value; non-canonical coefficients read as zero.
    var parts: (negative: Bool, exponent: Int, coefficient: UInt128) {
        let negative = isNegative
        if (high >> 61) & 0b11 == 0b11 {
            // 11 combination: the implied coefficient is > 2^113, always non-canonical → 0.
            let biased = Int((high >> 47) & 0x3FFF)
            return (negative, biased - Self.exponentBias, 0)
        }
        let biased = Int((high >> 49) & 0x3FFF)
        let coefficient = UInt128(high & 0x1_FFFF_FFFF_FFFF) << 64 | UInt128(low)
        return (negative, biased - Self.exponentBias, coefficient > Self.maxCoefficient ? 0 : coefficient)
    }

    public var description: String {
        if isNaN { return "NaN" }
        if isInfinite { return isNegative ? "-Infinity" : "Infinity" }
        let (negative, exponent, coefficient) = parts
        let digits = Array(String(coefficient).utf8)
        let adjusted = exponent + digits.count - 1
        var out = negative ? "-" : ""
        if exponent <= 0 && adjusted >= -6 {
            if exponent == 0 {
                out += String(decoding: digits, as: UTF8.self)
            } else {
                let pointPosition = digits.count + exponent
                if pointPosition > 0 {
                    out += String(decoding: digits[0..<pointPosition], as: UTF8.self)
                    out += "."
                    out += String(decoding: digits[pointPosition...], as: UTF8.self)
                } else {
                    out += "0."
                    out += String(repeating: "0", count: -pointPosition)
                    out += String(decoding: digits, as: UTF8.self)
                }
            }
        } else {
            out += String(decoding: digits[0..<1], as: UTF8.self)
            if digits.count > 1 {
                out += "."
                out += String(decoding: digits[1...], as: UTF8.self)
            }
            out += "E"
            out += adjusted >= 0 ? "+\(adjusted)" : "\(adjusted)"
        }
        return out
    }

    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]`, `Infinity`/`Inf`, or `NaN` (case-insensitive).
    public init(_ text: String) throws(BSONError) {
        var utf8 = Array(text.utf8)[...]
        func bad(_ why: String) -> BSONError { BSONError(.invalidValue, "\"\(text)\" is not a Decimal128: \(why)") }
        var negative = false
        if let first = utf8.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            utf8 = utf8.dropFirst()
        }
        let lower = String(decoding: utf8, as: UTF8.self).lowercased()
        if lower == "infinity" || lower == "inf" {
            self = negative ? .negativeInfinity : .infinity
            return
        }
        if lower == "nan" {
            self = .nan
            return
        }
        var digits = [UInt8]()
        var sawPoint = false
        var sawDigit = false
        var fractionDigits = 0
        var exponent = 0
        while let c = utf8.first {
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                sawDigit = true
                if sawPoint { fractionDigits += 1 }
                if !(digits.isEmpty && c == UInt8(ascii: "0")) { digits.append(c - UInt8(ascii: "0")) }
                utf8 = utf8.dropFirst()
            } else if c == UInt8(ascii: ".") {
                guard !sawPoint else { throw bad("two decimal points") }
                sawPoint = true
                utf8 = utf8.dropFirst()
            } else if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                utf8 = utf8.dropFirst()
                var expNegative = false
                if let s = utf8.first, s == UInt8(ascii: "-") || s == UInt8(ascii: "+") {
                    expNegative = s == UInt8(ascii: "-")
                    utf8 = utf8.dropFirst()
                }
                guard !utf8.isEmpty else { throw bad("missing exponent digits") }
                var value = 0
                for d in utf8 {
                    guard d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9") else { throw bad("bad exponent") }
                    value = min(value * 10 + Int(d - UInt8(ascii: "0")), 1_000_000)
                }
                exponent = expNegative ? -value : value
                utf8 = utf8[utf8.endIndex...]
            } else {
                throw bad("unexpected character")
            }
        }
        guard sawDigit else { throw bad("no digits") }
        exponent -= fractionDigits
        // More than 34 significant digits: only trailing zeros may go.
        while digits.count > Self.maxDigits, digits.last == 0 {
            digits.removeLast()
            exponent += 1
        }
        guard digits.count <= Self.maxDigits else { throw bad("more than 34 significant digits (inexact)") }
        var coefficient: UInt128 = 0
        for d in digits { coefficient = coefficient * 10 + UInt128(d) }
        var count = digits.count
        if exponent > Self.maxExponent {
            if coefficient == 0 {
                exponent = Self.maxExponent
            } else {
                while exponent > Self.maxExponent, count < Self.maxDigits {
                    coefficient *= 10
                    count += 1
                    exponent -= 1
                }
                guard exponent <= Self.maxExponent else { throw bad("exponent overflow") }
            }
        }
        if exponent < Self.minExponent {
            if coefficient == 0 {
                exponent = Self.minExponent
            } else {
                while exponent < Self.minExponent, coefficient % 10 == 0 {
                    coefficient /= 10
                    exponent += 1
                }
                guard exponent >= Self.minExponent else { throw bad("exponent underflow (inexact)") }
            }
        }
        self.init(negative: negative, exponent: exponent, coefficient: coefficient)
    }
}
