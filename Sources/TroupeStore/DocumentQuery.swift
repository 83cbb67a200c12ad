public import TroupeBSON
import Foundation

/// A filter over documents, shaped like MongoDB's query language (`$eq`, `$gt`, `$in`, `$and`, ...).
/// Field names are dotted paths (`"address.city"`); `"_id"` is the document id.
public indirect enum DocumentFilter: Sendable, Equatable {
    case all
    case eq(String, BSONValue)
    case ne(String, BSONValue)
    case gt(String, BSONValue)
    case gte(String, BSONValue)
    case lt(String, BSONValue)
    case lte(String, BSONValue)
    case `in`(String, [BSONValue])
    case nin(String, [BSONValue])
    case exists(String, Bool)
    case and([DocumentFilter])
    case or([DocumentFilter])
    case not(DocumentFilter)

    /// Both filters (an `and`, flattened; `.all` drops out).
    public static func && (a: DocumentFilter, b: DocumentFilter) -> DocumentFilter {
        if case .all = a { return b }
        if case .all = b { return a }
        var parts: [DocumentFilter] = []
        if case .and(let x) = a { parts += x } else { parts.append(a) }
        if case .and(let y) = b { parts += y } else { parts.append(b) }
        return .and(parts)
    }

    /// Either filter.
    public static func || (a: DocumentFilter, b: DocumentFilter) -> DocumentFilter { .or([a, b]) }
    public static prefix func ! (a: DocumentFilter) -> DocumentFilter { .not(a) }

    /// The MongoDB query document.
    public var mongo: BSONDocument {
        switch self {
        case .all: return [:]
        case .eq(let f, let v): return [f: ["$eq": v]]
        case .ne(let f, let v): return [f: ["$ne": v]]
        case .gt(let f, let v): return [f: ["$gt": v]]
        case .gte(let f, let v): return [f: ["$gte": v]]
        case .lt(let f, let v): return [f: ["$lt": v]]
        case .lte(let f, let v): return [f: ["$lte": v]]
        case .in(let f, let vs): return [f: ["$in": .array(vs)]]
        case .nin(let f, let vs): return [f: ["$nin": .array(vs)]]
        case .exists(let f, let b): return [f: ["$exists": .bool(b)]]
        case .and(let fs): return ["$and": .array(fs.map { .document($0.mongo) })]
        case .or(let fs): return ["$or": .array(fs.map { .document($0.mongo) })]
        case .not(let f): return ["$nor": [.document(f.mongo)]]
        }
    }
}

/// A field of a filter, for operator syntax: `Field("qty") > 5 && Field("status") == "open"`.
public struct Field: Sendable {
    /// The dotted path of the field (`state.status`).
    public let path: String
    /// The field at `path`.
    public init(_ path: String) { self.path = path }

    public static func == (f: Field, v: BSONValue) -> DocumentFilter { .eq(f.path, v) }
    /// Documents whose field is not `v` (or is missing).
    public static func != (f: Field, v: BSONValue) -> DocumentFilter { .ne(f.path, v) }
    /// Documents whose field is greater than `v`.
    public static func > (f: Field, v: BSONValue) -> DocumentFilter { .gt(f.path, v) }
    /// Documents whose field is at least `v`.
    public static func >= (f: Field, v: BSONValue) -> DocumentFilter { .gte(f.path, v) }
    /// Documents whose field is less than `v`.
    public static func < (f: Field, v: BSONValue) -> DocumentFilter { .lt(f.path, v) }
    /// Documents whose field is at most `v`.
    public static func <= (f: Field, v: BSONValue) -> DocumentFilter { .lte(f.path, v) }
    /// Documents whose field is one of `values`.
    public func `in`(_ values: [BSONValue]) -> DocumentFilter { .in(path, values) }
    /// Documents that have the field.
    public var exists: DocumentFilter { .exists(path, true) }
}

/// One update operator, shaped like MongoDB's (`$set`, `$unset`, `$inc`, `$push`, `$pull`, `$addToSet`, `$min`, `$max`).
public enum DocumentUpdate: Sendable, Equatable {
    case set(String, BSONValue)
    case unset(String)
    case inc(String, BSONValue)
    case push(String, BSONValue)
    case pull(String, BSONValue)
    case addToSet(String, BSONValue)
    case min(String, BSONValue)
    case max(String, BSONValue)

    var path: String {
        switch self {
        case .set(let p, _), .unset(let p), .inc(let p, _), .push(let p, _), .pull(let p, _), .addToSet(let p, _), .min(let p, _), .max(let p, _): p
        }
    }

    /// The MongoDB update document of a list of operators.
    public static func mongo(_ updates: [DocumentUpdate]) -> BSONDocument {
        var doc = BSONDocument()
        for u in updates {
            let (op, path, value): (String, String, BSONValue) = switch u {
            case .set(let p, let v): ("$set", p, v)
            case .unset(let p): ("$unset", p, "")
            case .inc(let p, let v): ("$inc", p, v)
            case .push(let p, let v): ("$push", p, v)
            case .pull(let p, let v): ("$pull", p, v)
            case .addToSet(let p, let v): ("$addToSet", p, v)
            case .min(let p, let v): ("$min", p, v)
            case .max(let p, let v): ("$max", p, v)
            }
            var inner = doc[op]?.documentValue ?? [:]
            inner[path] = value
            doc[op] = .document(inner)
        }
        return doc
    }
}

/// A sort key.
public struct DocumentSort: Sendable, Equatable {
    /// The dotted path sorted on.
    public var path: String
    /// Ascending (true) or descending.
    public var ascending: Bool

    /// Ascending on `path`.
    public static func ascending(_ path: String) -> DocumentSort { DocumentSort(path: path, ascending: true) }
    /// Descending on `path`.
    public static func descending(_ path: String) -> DocumentSort { DocumentSort(path: path, ascending: false) }

    static func mongo(_ sort: [DocumentSort]) -> BSONDocument {
        BSONDocument(sort.map { ($0.path, .int32($0.ascending ? 1 : -1)) })
    }
}

/// An index declaration: unique and/or TTL (documents expire `expireAfterSeconds` after the date in the field).
public struct DocumentIndex: Sendable, Equatable {
    /// The indexed fields, in order.
    public var fields: [String]
    /// Refuse two documents with the same values.
    public var unique: Bool
    /// Documents expire this many seconds after the date in the (single) field; nil: never.
    public var expireAfterSeconds: Int?

    /// An index on `fields`; see each property.
    public init(_ fields: [String], unique: Bool = false, expireAfterSeconds: Int? = nil) {
        self.fields = fields
        self.unique = unique
        self.expireAfterSeconds = expireAfterSeconds
    }

    /// A unique index on `fields`.
    public static func unique(_ fields: String...) -> DocumentIndex { DocumentIndex(fields, unique: true) }
    /// A TTL index: documents expire `seconds` after the date in `field`.
    public static func ttl(_ field: String, after seconds: Int) -> DocumentIndex { DocumentIndex([field], expireAfterSeconds: seconds) }

    var name: String { "ix_" + fields.map { $0.replacingOccurrences(of: ".", with: "_") }.joined(separator: "_") }
}
