import TroupeBSON

/// Evaluates filters and applies update operators to documents in process, with MongoDB's comparison
/// rules (numbers compare across int32/int64/double; arrays match when any element does).
enum DocumentMatcher {
    static func matches(_ doc: BSONDocument, _ filter: DocumentFilter) -> Bool {
        switch filter {
        case .all: return true
        case .eq(let p, let v): return values(doc, p).contains { equal($0, v) } || (v.isNull && values(doc, p).isEmpty)
        case .ne(let p, let v): return !matches(doc, .eq(p, v))
        case .gt(let p, let v): return values(doc, p).contains { compare($0, v).map { $0 > 0 } ?? false }
        case .gte(let p, let v): return values(doc, p).contains { compare($0, v).map { $0 >= 0 } ?? false }
        case .lt(let p, let v): return values(doc, p).contains { compare($0, v).map { $0 < 0 } ?? false }
        case .lte(let p, let v): return values(doc, p).contains { compare($0, v).map { $0 <= 0 } ?? false }
        case .in(let p, let vs): return vs.contains { matches(doc, .eq(p, $0)) }
        case .nin(let p, let vs): return !vs.contains { matches(doc, .eq(p, $0)) }
        case .exists(let p, let b): return (doc.value(atPath: p) != nil) == b
        case .and(let fs): return fs.allSatisfy { matches(doc, $0) }
        case .or(let fs): return fs.contains { matches(doc, $0) }
        case .not(let f): return !matches(doc, f)
        }
    }

    /// The value at `path`, plus the elements when it is an array (MongoDB's implicit array matching).
    static func values(_ doc: BSONDocument, _ path: String) -> [BSONValue] {
        guard let v = doc.value(atPath: path) else { return [] }
        if case .array(let items) = v { return [v] + items }
        return [v]
    }

    static func equal(_ a: BSONValue, _ b: BSONValue) -> Bool {
        if let c = compare(a, b) { return c == 0 }
        return a == b
    }

    /// Ordering within comparable types (numbers, strings, dates, ObjectIds, bools); nil across types.
    static func compare(_ a: BSONValue, _ b: BSONValue) -> Int? {
        switch (a, b) {
        case (.string(let x), .string(let y)): return x == y ? 0 : (x < y ? -1 : 1)
        case (.datetime(let x), .datetime(let y)): return x == y ? 0 : (x < y ? -1 : 1)
        case (.objectID(let x), .objectID(let y)): return x == y ? 0 : (x < y ? -1 : 1)
        case (.bool(let x), .bool(let y)): return x == y ? 0 : (!x ? -1 : 1)
        case (.timestamp(let x), .timestamp(let y)): return x == y ? 0 : (x < y ? -1 : 1)
        case (.null, .null): return 0
        default:
            if case .int64(let x) = a, case .int64(let y) = b { return x == y ? 0 : (x < y ? -1 : 1) }
            guard let x = a.doubleValue, let y = b.doubleValue else { return nil }
            return x == y ? 0 : (x < y ? -1 : 1)
        }
    }

    /// Sort comparison: missing/null first, then by type rank, then by value.
    static func sortCompare(_ a: BSONValue?, _ b: BSONValue?) -> Int {
        func rank(_ v: BSONValue?) -> Int {
            switch v {
            case nil, .null?, .undefined?: 0
            case .int32?, .int64?, .double?, .decimal128?: 1
            case .string?, .symbol?: 2
            case .document?: 3
            case .array?: 4
            case .binary?: 5
            case .objectID?: 6
            case .bool?: 7
            case .datetime?: 8
            case .timestamp?: 9
            default: 10
            }
        }
        let (ra, rb) = (rank(a), rank(b))
        if ra != rb { return ra < rb ? -1 : 1 }
        guard let a, let b else { return 0 }
        return compare(a, b) ?? 0
    }

    static func sort(_ docs: inout [BSONDocument], _ keys: [DocumentSort]) {
        guard !keys.isEmpty else { return }
        docs.sort { x, y in
            for key in keys {
                let c = sortCompare(x.value(atPath: key.path), y.value(atPath: key.path))
                if c != 0 { return key.ascending ? c < 0 : c > 0 }
            }
            return false
        }
    }

    /// Applies update operators; throws on a type error (e.g. `$inc` on a string).
    static func apply(_ updates: [DocumentUpdate], to doc: BSONDocument) throws(DocumentStoreError) -> BSONDocument {
        var doc = doc
        for update in updates {
            guard update.path != "_id" else { throw DocumentStoreError(.invalidOperation, "the _id field cannot be updated") }
            let current = doc.value(atPath: update.path)
            let new: BSONValue?
            switch update {
            case .set(_, let v): new = v
            case .unset: new = nil
            case .inc(_, let v):
                guard v.doubleValue != nil else { throw DocumentStoreError(.invalidOperation, "$inc needs a number") }
                new = try add(current ?? .int32(0), v, path: update.path)
            case .push(_, let v):
                let array = try arrayValue(current, "$push", update.path)
                new = .array(array + [v])
            case .addToSet(_, let v):
                let array = try arrayValue(current, "$addToSet", update.path)
                new = .array(array.contains { equal($0, v) } ? array : array + [v])
            case .pull(_, let v):
                let array = try arrayValue(current, "$pull", update.path)
                new = .array(array.filter { !equal($0, v) })
            case .min(_, let v):
                if let current, (compare(current, v) ?? 0) <= 0 { new = current } else { new = v }
            case .max(_, let v):
                if let current, (compare(current, v) ?? 0) >= 0 { new = current } else { new = v }
            }
            doc = set(doc, path: update.path[...], value: new)
        }
        return doc
    }

    private static func arrayValue(_ current: BSONValue?, _ op: String, _ path: String) throws(DocumentStoreError) -> [BSONValue] {
        guard let current else { return [] }
        guard case .array(let items) = current else { throw DocumentStoreError(.invalidOperation, "\(op) on a non-array at \(path)") }
        return items
    }

    private static func add(_ a: BSONValue, _ b: BSONValue, path: String) throws(DocumentStoreError) -> BSONValue {
        switch (a, b) {
        case (.int32(let x), .int32(let y)):
            let (sum, overflow) = x.addingReportingOverflow(y)
            return overflow ? .int64(Int64(x) + Int64(y)) : .int32(sum)
        case (.int32, .int64), (.int64, .int32), (.int64, .int64):
            let (sum, overflow) = Int64(a.intValue!).addingReportingOverflow(Int64(b.intValue!))
            guard !overflow else { throw DocumentStoreError(.invalidOperation, "$inc overflows int64 at \(path)") }
            return .int64(sum)
        default:
            guard let x = a.doubleValue, let y = b.doubleValue else { throw DocumentStoreError(.invalidOperation, "$inc on a non-number at \(path)") }
            return .double(x + y)
        }
    }

    /// Sets (or removes, for nil) the value at a dotted path, creating documents on the way.
    static func set(_ doc: BSONDocument, path: Substring, value: BSONValue?) -> BSONDocument {
        var doc = doc
        if let dot = path.firstIndex(of: ".") {
            let head = String(path[..<dot])
            let rest = path[path.index(after: dot)...]
            let child = doc[head]?.documentValue ?? [:]
            if value == nil, doc[head] == nil { return doc }
            doc[head] = .document(set(child, path: rest, value: value))
        } else {
            doc[String(path)] = value
        }
        return doc
    }
}
