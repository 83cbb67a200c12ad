import Foundation
import Testing
import Troupe
import TroupeShop

/// docs/configuration.md lists every key of the configuration file (the keys are found by reflecting a file that
/// has every section, so a key added to the code and not to the reference fails here).
@Suite("The configuration reference")
struct ConfigurationDocsTests {
    static let everySection = """
        {"cluster": "c", "node": "n", "host": "h", "port": 1, "members": [{"node": "n", "host": "h", "port": 1}],
         "tls": {}, "etcd": {"endpoints": [], "tls": {}, "config": {"app": "a", "environment": "e"}},
         "mongo": {"database": "d", "tls": {}}, "redis": {"tls": {}},
         "gateway": {"port": 1, "admin": {"port": 2}, "https": {}, "upstreams": [{"prefix": "/p", "service": "s"}]}}
        """

    /// The stored properties of `value` and, recursively, of the sections and list entries it holds.
    static func keys(of value: Any, into keys: inout Set<String>) {
        for child in Mirror(reflecting: value).children {
            guard let label = child.label else { continue }
            keys.insert(label)
            var inner: Any = child.value
            if let optional = Mirror(reflecting: inner).children.first, Mirror(reflecting: inner).displayStyle == .optional { inner = optional.value }
            if let list = inner as? [Any], let first = list.first { inner = first }
            if Mirror(reflecting: inner).displayStyle == .struct { Self.keys(of: inner, into: &keys) }
        }
    }

    @Test("every key of the node's file and of the shop's section is in docs/configuration.md")
    func everyKeyDocumented() throws {
        let configuration = try JSONDecoder().decode(NodeConfiguration.self, from: Data(Self.everySection.utf8))
        var keys = Set<String>()
        Self.keys(of: configuration, into: &keys)
        Self.keys(of: ShopSettings(), into: &keys)
        #expect(keys.count > 60, "the reflection found the sections: \(keys.sorted())")
        let docs = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        let missing = keys.filter { !docs.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "keys missing from docs/configuration.md: \(missing)")
    }
}
