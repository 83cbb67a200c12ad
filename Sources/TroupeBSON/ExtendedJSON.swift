/// MongoDB Extended JSON v2: BSON ↔ JSON text in canonical (type-preserving) or relaxed (readable) form.
public enum ExtendedJSON {
    /// Canonical Extended JSON keeps every type (`{"$numberInt": "1"}`); relaxed writes plain JSON numbers where it can.
    public enum Mode: Sendable { case canonical, relaxed }

    /// The document as Extended JSON text.
    public static func encode(_ document: BSONDocument, mode: Mode) -> String {
        json(.document(document), mode: mode).text
    }

    /// Parses Extended JSON (canonical, relaxed, or the legacy forms the specification allows) into a document.
    public static func decode(_ text: String) throws(BSONError) -> BSONDocument {
        let value = try JSONValue(parsing: text)
        guard case .document(let doc) = try bson(value) else {
            throw BSONError(.malformedJSON, "top-level Extended JSON must be an object")
        }
        return doc
    }

    // MARK: BSON → JSON

    /// `value` as Extended JSON in `mode` (canonical keeps every type; relaxed writes numbers and dates plainly).
    public static func json(_ value: BSONValue, mode: Mode) -> JSONValue {
        let canonical = mode == .canonical
        switch value {
        case .double(let d):
            if !canonical, d.isFinite { return .number(formatDouble(d)) }
            return .object([("$numberDouble", .string(formatDouble(d)))])
        case .string(let s): return .string(s)
        case .document(let doc):
            return .object(doc.elements.map { ($0.key, json($0.value, mode: mode)) })
        case .array(let items): return .array(items.map { json($0, mode: mode) })
        case .binary(let b):
            return .object([("$binary", .object([
                ("base64", .string(Base64.encode(b.data))),
                ("subType", .string(hexByte(b.subtype))),
            ]))])
        case .undefined: return .object([("$undefined", .bool(true))])
        case .objectID(let oid): return .object([("$oid", .string(oid.hex))])
        case .bool(let b): return .bool(b)
        case .datetime(let ms):
            if !canonical, ms >= 0, ms <= 253_402_300_799_999 {
                return .object([("$date", .string(ISODate.format(milliseconds: ms)))])
            }
            return .object([("$date", .object([("$numberLong", .string(String(ms)))]))])
        case .null: return .null
        case .regex(let r):
            return .object([("$regularExpression", .object([("pattern", .string(r.pattern)), ("options", .string(r.options))]))])
        case .dbPointer(let collection, let id):
            return .object([("$dbPointer", .object([("$ref", .string(collection)), ("$id", .object([("$oid", .string(id.hex))]))]))])
        case .code(let code): return .object([("$code", .string(code))])
        case .symbol(let s): return .object([("$symbol", .string(s))])
        case .codeWithScope(let code, let scope):
            return .object([("$code", .string(code)), ("$scope", json(.document(scope), mode: mode))])
        case .int32(let v): return canonical ? .object([("$numberInt", .string(String(v)))]) : .number(String(v))
        case .timestamp(let t):
            return .object([("$timestamp", .object([("t", .number(String(t.seconds))), ("i", .number(String(t.increment)))]))])
        case .int64(let v): return canonical ? .object([("$numberLong", .string(String(v)))]) : .number(String(v))
        case .decimal128(let d): return .object([("$numberDecimal", .string(d.description))])
        case .minKey: return .object([("$minKey", .number("1"))])
        case .maxKey: return .object([("$maxKey", .number("1"))])
        }
    }

    /// Shortest round-trip text, `E` exponent with a mantissa that always has a fraction (`1.0E+16`).
    static func formatDouble(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        let text = d.description
        guard let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) else { return text }
        var mantissa = String(text[..<e])
        if !mantissa.contains(".") { mantissa += ".0" }
        var exponent = String(text[text.index(after: e)...])
        var sign = "+"
        if exponent.hasPrefix("-") || exponent.hasPrefix("+") {
            sign = String(exponent.removeFirst())
        }
        while exponent.count > 1, exponent.hasPrefix("0") { exponent.removeFirst() }
        return mantissa + "E" + sign + exponent
    }

    private static func hexByte(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: [digits[Int(b >> 4)], digits[Int(b & 0xF)]], as: UTF8.self)
    }

    // MARK: JSON → BSON

    private static let wrapperKeys: Set<String> = [
        "$oid", "$symbol", "$numberInt", "$numberLong", "$numberDouble", "$numberDecimal", "$binary", "$uuid",
        "$code", "$timestamp", "$regularExpression", "$dbPointer", "$date", "$minKey", "$maxKey", "$undefined",
    ]

    /// The BSON value `json` stands for, its `$`-wrappers read as their types.
    /// - Throws: ``BSONError`` with kind `malformedJSON` for a wrapper that is not valid Extended JSON.
    public static func bson(_ json: JSONValue) throws(BSONError) -> BSONValue {
        switch json {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(s)
        case .number(let n): return try relaxedNumber(n)
        case .array(let items):
            var out = [BSONValue]()
            out.reserveCapacity(items.count)
            for item in items { out.append(try bson(item)) }
            return .array(out)
        case .object(let members):
            if let wrapped = try wrapper(members) { return wrapped }
            var doc = BSONDocument()
            doc.reserveCapacity(members.count)
            for (key, value) in members {
                guard !key.utf8.contains(0) else { throw bad("key \"\(key)\" contains a NUL byte") }
                doc.append(key, try bson(value))
            }
            return .document(doc)
        }
    }

    private static func bad(_ message: String) -> BSONError { BSONError(.malformedJSON, message) }

    private static func relaxedNumber(_ n: String) throws(BSONError) -> BSONValue {
        if !n.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) {
            if let v = Int32(n) { return .int32(v) }
            if let v = Int64(n) { return .int64(v) }
        }
        guard let d = Double(n) else { throw bad("number \(n) out of range") }
        return .double(d)
    }

    private static func string(_ value: JSONValue?, _ what: String) throws(BSONError) -> String {
        guard case .string(let s)? = value else { throw bad("\(what) must be a string") }
        return s
    }

    private static func object(_ value: JSONValue?, _ what: String) throws(BSONError) -> [(String, JSONValue)] {
        guard case .object(let members)? = value else { throw bad("\(what) must be an object") }
        return members
    }

    private static func exactKeys(_ members: [(String, JSONValue)], _ keys: Set<String>, _ what: String) throws(BSONError) {
        guard members.count == keys.count, Set(members.map(\.0)) == keys else {
            throw bad("\(what) must have exactly the keys \(keys.sorted())")
        }
    }

    private static func cString(_ s: String, _ what: String) throws(BSONError) -> String {
        guard !s.utf8.contains(0) else { throw bad("\(what) contains a NUL byte") }
        return s
    }

    private static func uint32(_ value: JSONValue?, _ what: String) throws(BSONError) -> UInt32 {
        guard case .number(let n)? = value, let v = UInt32(n) else { throw bad("\(what) must be an unsigned 32-bit integer") }
        return v
    }

    /// A type wrapper (`{"$oid": ...}` etc.), nil for an ordinary document; malformed wrappers throw.
    private static func wrapper(_ members: [(String, JSONValue)]) throws(BSONError) -> BSONValue? {
        guard let first = members.first?.0, first.hasPrefix("$") else { return nil }
        let keys = Set(members.map(\.0))
        let dict = Dictionary(members, uniquingKeysWith: { a, _ in a })

        // Legacy {"$regex": "...", "$options": "..."}: only when both are strings.
        if keys == ["$regex", "$options"], case .string(let p)? = dict["$regex"], case .string(let o)? = dict["$options"] {
            return .regex(BSONRegularExpression(pattern: try cString(p, "$regex"), options: try cString(o, "$options")))
        }
        // Legacy {"$binary": "base64", "$type": "hex"}.
        if keys == ["$binary", "$type"], case .string(let b64)? = dict["$binary"], case .string(let t)? = dict["$type"] {
            guard let data = Base64.decode(b64) else { throw bad("$binary is not base64") }
            guard let subtype = UInt8(t, radix: 16) else { throw bad("$type must be a hex byte") }
            return .binary(BSONBinary(subtype: subtype, data: data))
        }
        if keys.contains("$code") {
            let code = try string(dict["$code"], "$code")
            if keys == ["$code"] { return .code(code) }
            guard keys == ["$code", "$scope"] else { throw bad("$code allows only $scope beside it") }
            guard case .document(let scope) = try bson(.object(try object(dict["$scope"], "$scope"))) else {
                throw bad("$scope must be a document")
            }
            return .codeWithScope(code: code, scope: scope)
        }
        guard let key = keys.first(where: { wrapperKeys.contains($0) }) else { return nil }
        guard members.count == 1 else { throw bad("\(key) must be the only key of its object") }
        let value = members[0].1
        switch key {
        case "$oid":
            guard let oid = BSONObjectID(hex: try string(value, "$oid")) else { throw bad("$oid must be 24 hex digits") }
            return .objectID(oid)
        case "$symbol":
            return .symbol(try string(value, "$symbol"))
        case "$numberInt":
            let s = try string(value, "$numberInt")
            guard isIntegerText(s), let v = Int32(s) else { throw bad("$numberInt \"\(s)\" is not a 32-bit integer") }
            return .int32(v)
        case "$numberLong":
            let s = try string(value, "$numberLong")
            guard isIntegerText(s), let v = Int64(s) else { throw bad("$numberLong \"\(s)\" is not a 64-bit integer") }
            return .int64(v)
        case "$numberDouble":
            let s = try string(value, "$numberDouble")
            switch s {
            case "Infinity": return .double(.infinity)
            case "-Infinity": return .double(-.infinity)
            case "NaN": return .double(.nan)
            default:
                guard isDecimalText(s), let d = Double(s) else { throw bad("$numberDouble \"\(s)\" is not a number") }
                return .double(d)
            }
        case "$numberDecimal":
            return .decimal128(try BSONDecimal128(try string(value, "$numberDecimal")))
        case "$binary":
            let fields = try object(value, "$binary")
            try exactKeys(fields, ["base64", "subType"], "$binary")
            let f = Dictionary(fields, uniquingKeysWith: { a, _ in a })
            guard let data = Base64.decode(try string(f["base64"], "$binary.base64")) else { throw bad("$binary.base64 is not base64") }
            let t = try string(f["subType"], "$binary.subType")
            guard (1...2).contains(t.count), let subtype = UInt8(t, radix: 16) else { throw bad("$binary.subType must be one or two hex digits") }
            return .binary(BSONBinary(subtype: subtype, data: data))
        case "$uuid":
            let s = try string(value, "$uuid")
            let groups = s.split(separator: "-", omittingEmptySubsequences: false).map(\.count)
            guard groups == [8, 4, 4, 4, 12] else { throw bad("$uuid must look like 8-4-4-4-12 hex digits") }
            let hex = Array(s.utf8.filter { $0 != UInt8(ascii: "-") })
            var data = [UInt8]()
            var i = 0
            while i < hex.count {
                guard let hi = hexNibble(hex[i]), let lo = hexNibble(hex[i + 1]) else { throw bad("$uuid has a non-hex digit") }
                data.append(hi << 4 | lo)
                i += 2
            }
            return .binary(BSONBinary(subtype: BSONBinary.uuid, data: data))
        case "$timestamp":
            let fields = try object(value, "$timestamp")
            try exactKeys(fields, ["t", "i"], "$timestamp")
            let f = Dictionary(fields, uniquingKeysWith: { a, _ in a })
            return .timestamp(BSONTimestamp(seconds: try uint32(f["t"], "$timestamp.t"), increment: try uint32(f["i"], "$timestamp.i")))
        case "$regularExpression":
            let fields = try object(value, "$regularExpression")
            try exactKeys(fields, ["pattern", "options"], "$regularExpression")
            let f = Dictionary(fields, uniquingKeysWith: { a, _ in a })
            return .regex(BSONRegularExpression(
                pattern: try cString(try string(f["pattern"], "pattern"), "pattern"),
                options: try cString(try string(f["options"], "options"), "options")))
        case "$dbPointer":
            let fields = try object(value, "$dbPointer")
            try exactKeys(fields, ["$ref", "$id"], "$dbPointer")
            let f = Dictionary(fields, uniquingKeysWith: { a, _ in a })
            let ref = try string(f["$ref"], "$dbPointer.$ref")
            guard case .objectID(let id) = try bson(f["$id"] ?? .null) else { throw bad("$dbPointer.$id must be an $oid") }
            return .dbPointer(collection: ref, id: id)
        case "$date":
            switch value {
            case .string(let iso):
                guard let ms = ISODate.parse(iso) else { throw bad("$date \"\(iso)\" is not an ISO-8601 date") }
                return .datetime(ms)
            case .object:
                guard case .int64(let ms) = try bson(value) else { throw bad("$date must hold a $numberLong") }
                return .datetime(ms)
            default:
                throw bad("$date must be an ISO-8601 string or {\"$numberLong\": ...}")
            }
        case "$minKey", "$maxKey":
            guard case .number("1") = value else { throw bad("\(key) must be 1") }
            return key == "$minKey" ? .minKey : .maxKey
        case "$undefined":
            guard case .bool(true) = value else { throw bad("$undefined must be true") }
            return .undefined
        default:
            return nil
        }
    }

    private static func isIntegerText(_ s: String) -> Bool {
        var utf8 = s.utf8[...]
        if utf8.first == UInt8(ascii: "-") { utf8 = utf8.dropFirst() }
        return !utf8.isEmpty && utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    private static func isDecimalText(_ s: String) -> Bool {
        s.utf8.allSatisfy { b in
            (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+")
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E")
        }
    }
}

extension BSONDocument {
    /// Parses Extended JSON text.
    public init(extendedJSON text: String) throws(BSONError) {
        self = try ExtendedJSON.decode(text)
    }

    /// This value as Extended JSON text in `mode` (relaxed by default).
    public func extendedJSON(_ mode: ExtendedJSON.Mode = .relaxed) -> String {
        ExtendedJSON.encode(self, mode: mode)
    }
}

/// Base64 (RFC 4648, with padding).
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [Int8] = {
        var table = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = Int8(i) }
        return table
    }()

    static func encode(_ data: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((data.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= data.count {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            for shift in [18, 12, 6, 0] { out.append(alphabet[Int((n >> UInt32(shift)) & 63)]) }
            i += 3
        }
        let rest = data.count - i
        if rest == 1 {
            let n = UInt32(data[i]) << 16
            out.append(alphabet[Int((n >> 18) & 63)])
            out.append(alphabet[Int((n >> 12) & 63)])
            out.append(contentsOf: "==".utf8)
        } else if rest == 2 {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8
            out.append(alphabet[Int((n >> 18) & 63)])
            out.append(alphabet[Int((n >> 12) & 63)])
            out.append(alphabet[Int((n >> 6) & 63)])
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 4 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 4 * 3)
        var i = 0
        while i < chars.count {
            var n: UInt32 = 0
            var padding = 0
            for j in 0..<4 {
                let c = chars[i + j]
                if c == UInt8(ascii: "=") {
                    guard i + 4 == chars.count, j >= 2 else { return nil }
                    padding += 1
                    n <<= 6
                } else {
                    guard padding == 0 else { return nil }
                    let v = reverse[Int(c)]
                    guard v >= 0 else { return nil }
                    n = n << 6 | UInt32(v)
                }
            }
            out.append(UInt8(truncatingIfNeeded: n >> 16))
            if padding < 2 { out.append(UInt8(truncatingIfNeeded: n >> 8)) }
            if padding < 1 { out.append(UInt8(truncatingIfNeeded: n)) }
            i += 4
        }
        return out
    }
}

/// ISO-8601 UTC dates for relaxed `$date` (civil-from-days arithmetic, proleptic Gregorian calendar).
package enum ISODate {
    /// `2024-12-04T08:13:20.125Z` for `milliseconds` since 1970 (before it too); the fraction only when it is not
    /// zero, unless `alwaysMilliseconds`.
    package static func format(milliseconds: Int64, alwaysMilliseconds: Bool = false) -> String {
        // Floored division: an instant before 1970 is the day before plus a positive time of day.
        let ms = Int(((milliseconds % 1000) + 1000) % 1000)
        let totalSeconds = Int((milliseconds - Int64(ms)) / 1000)
        let days = totalSeconds >= 0 ? totalSeconds / 86_400 : (totalSeconds - 86_399) / 86_400
        let secondsOfDay = totalSeconds - days * 86_400
        let (y, m, d) = civil(fromDays: days)
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        var out = "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondsOfDay / 3600, 2)):\(pad(secondsOfDay / 60 % 60, 2)):\(pad(secondsOfDay % 60, 2))"
        if ms != 0 || alwaysMilliseconds { out += ".\(pad(ms, 3))" }
        return out + "Z"
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM|±HHMM)` → milliseconds since the epoch.
    static func parse(_ text: String) -> Int64? {
        let c = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= c.count else { return nil }
            var v = 0
            for i in from..<from + count {
                guard c[i] >= UInt8(ascii: "0"), c[i] <= UInt8(ascii: "9") else { return nil }
                v = v * 10 + Int(c[i] - UInt8(ascii: "0"))
            }
            return v
        }
        guard c.count >= 20, let y = number(0, 4), c[4] == UInt8(ascii: "-"), let mo = number(5, 2), c[7] == UInt8(ascii: "-"),
            let d = number(8, 2), c[10] == UInt8(ascii: "T"), let h = number(11, 2), c[13] == UInt8(ascii: ":"),
            let mi = number(14, 2), c[16] == UInt8(ascii: ":"), let s = number(17, 2),
            (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 61
        else { return nil }
        var i = 19
        var ms = 0
        if i < c.count, c[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < c.count, c[i] >= UInt8(ascii: "0"), c[i] <= UInt8(ascii: "9") {
                if digits < 3 { ms = ms * 10 + Int(c[i] - UInt8(ascii: "0")) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 3) { ms *= 10 }
        }
        var offsetMinutes = 0
        guard i < c.count else { return nil }
        if c[i] == UInt8(ascii: "Z") {
            i += 1
        } else if c[i] == UInt8(ascii: "+") || c[i] == UInt8(ascii: "-") {
            let sign = c[i] == UInt8(ascii: "-") ? -1 : 1
            guard let oh = number(i + 1, 2) else { return nil }
            var j = i + 3
            if j < c.count, c[j] == UInt8(ascii: ":") { j += 1 }
            guard let om = number(j, 2) else { return nil }
            offsetMinutes = sign * (oh * 60 + om)
            i = j + 2
        } else {
            return nil
        }
        guard i == c.count else { return nil }
        let days = daysFromCivil(y, mo, d)
        let seconds = days * 86_400 + h * 3600 + mi * 60 + s - offsetMinutes * 60
        return Int64(seconds) * 1000 + Int64(ms)
    }

    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp + (mp < 10 ? 3 : -9)
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
