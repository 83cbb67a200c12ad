/// An ordered BSON document: keys keep their insertion order (MongoDB commands depend on the first key).
/// Lookup is a linear scan, which beats hashing for the small documents that dominate traffic.
public struct BSONDocument: Sendable, Equatable, RandomAccessCollection, ExpressibleByDictionaryLiteral {
    public typealias Element = (key: String, value: BSONValue)

    public private(set) var elements: [Element]

    /// An empty document.
    public init() { elements = [] }

    /// A document of `pairs` in their order (keys are taken as given, repeats included).
    public init(_ pairs: [(String, BSONValue)]) {
        elements = pairs.map { (key: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral pairs: (String, BSONValue)...) {
        self.init(pairs)
    }

    public var startIndex: Int { elements.startIndex }
    public var endIndex: Int { elements.endIndex }
    public subscript(position: Int) -> Element { elements[position] }

    /// The keys, in order.
    public var keys: [String] { elements.map(\.key) }
    /// The values, in key order.
    public var values: [BSONValue] { elements.map(\.value) }

    /// The value for `key`; setting `nil` removes the key, setting a value replaces it in place or appends.
    public subscript(key: String) -> BSONValue? {
        get {
            for element in elements where element.key == key { return element.value }
            return nil
        }
        set {
            if let index = elements.firstIndex(where: { $0.key == key }) {
                if let newValue { elements[index].value = newValue } else { elements.remove(at: index) }
            } else if let newValue {
                elements.append((key: key, value: newValue))
            }
        }
    }

    /// Appends without checking for an existing key (the caller knows it is new).
    public mutating func append(_ key: String, _ value: BSONValue) {
        elements.append((key: key, value: value))
    }

    /// Reserves room for `n` elements.
    public mutating func reserveCapacity(_ n: Int) { elements.reserveCapacity(n) }

    /// Removes `key`; returns its value, or nil when it was absent.
    @discardableResult
    public mutating func removeValue(forKey key: String) -> BSONValue? {
        guard let index = elements.firstIndex(where: { $0.key == key }) else { return nil }
        return elements.remove(at: index).value
    }

    /// Follows a dotted path (`"a.b.0.c"`) through documents and arrays.
    public func value(atPath path: String) -> BSONValue? {
        var current: BSONValue = .document(self)
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            switch current {
            case .document(let doc):
                guard let next = doc[String(part)] else { return nil }
                current = next
            case .array(let array):
                guard let index = Int(part), array.indices.contains(index) else { return nil }
                current = array[index]
            default:
                return nil
            }
        }
        return current
    }

    public static func == (a: BSONDocument, b: BSONDocument) -> Bool {
        guard a.elements.count == b.elements.count else { return false }
        for (x, y) in zip(a.elements, b.elements) where x.key != y.key || x.value != y.value { return false }
        return true
    }
}

extension BSONDocument: CustomStringConvertible {
    /// Relaxed Extended JSON.
    public var description: String { ExtendedJSON.encode(self, mode: .relaxed) }
}
