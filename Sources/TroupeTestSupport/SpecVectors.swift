public import Foundation

/// The MongoDB specification test vectors, read in place from `../shared/vectors` (never copied into the repository).
public enum SpecVectors {
    /// Why the vectors could not be found.
    public struct Missing: Error, CustomStringConvertible {
        public var description: String
    }

    /// `…/vectors/mongodb-specifications/source`. Looked up from `TROUPE_VECTORS`, then beside every parent
    /// directory of the package (`../shared/vectors`).
    public static func sourceDirectory(filePath: String = #filePath) throws -> URL {
        var candidates = [URL]()
        if let explicit = TestEnv.value("TROUPE_VECTORS") { candidates.append(URL(fileURLWithPath: explicit)) }
        var directory = URL(fileURLWithPath: filePath).deletingLastPathComponent()
        while directory.path != "/" {
            candidates.append(directory.appendingPathComponent("shared/vectors"))
            directory = directory.deletingLastPathComponent()
        }
        candidates.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath).deletingLastPathComponent().appendingPathComponent("shared/vectors"))
        // The shared data of this development machine, for clones made elsewhere (CI clones the repository).
        candidates.append(URL(fileURLWithPath: "/work/shared/vectors"))
        for base in candidates {
            let source = base.appendingPathComponent("mongodb-specifications/source")
            if FileManager.default.fileExists(atPath: source.path) { return source }
        }
        throw Missing(description: "MongoDB specification vectors not found; set TROUPE_VECTORS to the vectors directory (tried \(candidates.map(\.path)))")
    }

    /// Every `.json` file under `source/<spec>/tests[/subdirectory]`, sorted, recursively.
    public static func files(_ spec: String, _ subdirectory: String = "") throws -> [URL] {
        var root = try sourceDirectory().appendingPathComponent(spec).appendingPathComponent("tests")
        if !subdirectory.isEmpty { root = root.appendingPathComponent(subdirectory) }
        guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else {
            throw Missing(description: "no vectors under \(root.path)")
        }
        let files = enumerator.compactMap { $0 as? URL }.filter { $0.pathExtension == "json" }.sorted { $0.path < $1.path }
        guard !files.isEmpty else { throw Missing(description: "no vectors under \(root.path)") }
        return files
    }

    /// A vector file as Foundation JSON objects.
    public static func load(_ url: URL) throws -> [String: Any] {
        let data = try Data(contentsOf: url)
        guard let object = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) as? [String: Any] else {
            throw Missing(description: "\(url.path) is not a JSON object")
        }
        return object
    }

    /// Hex text to bytes.
    public static func bytes(hex: String) -> [UInt8] {
        var out = [UInt8]()
        var iterator = hex.utf8.makeIterator()
        func nibble(_ c: UInt8) -> UInt8 {
            switch c {
            case 48...57: c - 48
            case 65...70: c - 55
            case 97...102: c - 87
            default: 0
            }
        }
        while let hi = iterator.next(), let lo = iterator.next() { out.append(nibble(hi) << 4 | nibble(lo)) }
        return out
    }
}
