// Codable conformances of the BSON value types, for coders other than BSON's own (which intercept them):
// an ObjectId is its hex string; a BSON value maps onto the coder's natural shapes.

extension BSONObjectID: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let oid = BSONObjectID(hex: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\"\(text)\" is not an ObjectId"))
        }
        self = oid
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}

struct AnyStringKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension BSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        if let keyed = try? decoder.container(keyedBy: AnyStringKey.self) {
            var doc = BSONDocument()
            for key in keyed.allKeys { doc.append(key.stringValue, try keyed.decode(BSONValue.self, forKey: key)) }
            self = .document(doc)
            return
        }
        if var unkeyed = try? decoder.unkeyedContainer() {
            var items = [BSONValue]()
            while !unkeyed.isAtEnd { items.append(try unkeyed.decode(BSONValue.self)) }
            self = .array(items)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() { self = .null }
        else if let b = try? single.decode(Bool.self) { self = .bool(b) }
        else if let i = try? single.decode(Int64.self) { self = Int32(exactly: i).map { .int32($0) } ?? .int64(i) }
        else if let d = try? single.decode(Double.self) { self = .double(d) }
        else { self = .string(try single.decode(String.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .document(let doc):
            var keyed = encoder.container(keyedBy: AnyStringKey.self)
            for (key, value) in doc.elements { try keyed.encode(value, forKey: AnyStringKey(key)) }
        case .array(let items):
            var unkeyed = encoder.unkeyedContainer()
            for item in items { try unkeyed.encode(item) }
        case .null, .undefined:
            var single = encoder.singleValueContainer()
            try single.encodeNil()
        case .bool(let b):
            var single = encoder.singleValueContainer()
            try single.encode(b)
        case .int32(let v):
            var single = encoder.singleValueContainer()
            try single.encode(v)
        case .int64(let v):
            var single = encoder.singleValueContainer()
            try single.encode(v)
        case .double(let d):
            var single = encoder.singleValueContainer()
            try single.encode(d)
        case .string(let s):
            var single = encoder.singleValueContainer()
            try single.encode(s)
        default:
            // Other types as their canonical Extended JSON object.
            try BSONValue.jsonShaped(ExtendedJSON.json(self, mode: .canonical)).encode(to: encoder)
        }
    }

    private static func jsonShaped(_ json: JSONValue) -> BSONValue {
        switch json {
        case .null: .null
        case .bool(let b): .bool(b)
        case .number(let n): Int64(n).map { .int64($0) } ?? .double(Double(n) ?? 0)
        case .string(let s): .string(s)
        case .array(let items): .array(items.map(jsonShaped))
        case .object(let members): .document(BSONDocument(members.map { ($0.0, jsonShaped($0.1)) }))
        }
    }
}

extension BSONDocument: Codable {
    public init(from decoder: any Decoder) throws {
        guard case .document(let doc) = try BSONValue(from: decoder) else {
            throw DecodingError.typeMismatch(BSONDocument.self, .init(codingPath: decoder.codingPath, debugDescription: "not a document"))
        }
        self = doc
    }

    public func encode(to encoder: any Encoder) throws { try BSONValue.document(self).encode(to: encoder) }
}
