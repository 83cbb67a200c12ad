/// Named figures of one benchmark run, printed as text and as one flat JSON object.
public struct BenchmarkReport: Sendable {
    public let suite: String
    public private(set) var figures: [(String, Double)] = []

    public init(suite: String) {
        self.suite = suite
    }

    public subscript(name: String) -> Double? {
        get { figures.first { $0.0 == name }?.1 }
        set {
            figures.removeAll { $0.0 == name }
            if let newValue { figures.append((name, newValue)) }
        }
    }

    public var text: String {
        let width = figures.map(\.0.count).max() ?? 0
        return figures.map { name, value in
            name + String(repeating: " ", count: width - name.count) + "  " + Self.format(value)
        }.joined(separator: "\n")
    }

    /// One flat JSON object: numbers as JSON numbers.
    public var json: String {
        "{" + (["\"suite\":\"\(suite)\""] + figures.map { "\"\($0.0)\":\(Self.format($0.1))" }).joined(separator: ",") + "}"
    }

    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String((value * 1000).rounded() / 1000)
    }
}
