import Foundation
import Testing
import TroupeCore

@Suite("The observability reference")
struct ObservabilityDocsTests {
    @Test("docs/observability.md lists every metric family Troupe reports")
    func everyFamilyDocumented() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/observability.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let missing = MetricFamilies.all.map(\.name).filter { !text.contains("`\($0)`") }
        #expect(missing.isEmpty, "families missing from docs/observability.md: \(missing)")
    }
}
