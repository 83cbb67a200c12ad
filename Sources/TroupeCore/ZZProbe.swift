import Foundation
import Synchronization

public enum ZZProbe {
    static let data = Mutex<[String: [Double]]>([:])
    public static func time<T>(_ name: String, _ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        defer {
            let d = ContinuousClock.now - start
            let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
            data.withLock { $0[name, default: []].append(ms) }
        }
        return try await body()
    }
    public static func dump() {
        let all = data.withLock { $0 }
        for (name, values) in all.sorted(by: { $0.key < $1.key }) {
            let s = values.sorted()
            let p = { (q: Double) in s[min(s.count - 1, Int(Double(s.count) * q))] }
            print(String(format: "%-28@ n=%7d p50=%7.3f p90=%7.3f p99=%7.3f mean=%7.3f", name as NSString, s.count, p(0.5), p(0.9), p(0.99), s.reduce(0, +) / Double(s.count)))
        }
    }
}
