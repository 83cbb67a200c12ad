/// Finds a key that appears twice in one JSON object (Foundation's decoder silently keeps one of them, so a
/// body could say two things to two readers). Scans bytes without building values; stops at the first
/// duplicate. Malformed JSON is left to the decoder.
enum JSONDuplicateKeys {
    static func first(in bytes: some Collection<UInt8>) -> String? {
        var objects: [Set<[UInt8]>] = []
        /// For each open container: true for an object. Only object members' first strings are keys.
        var containers: [Bool] = []
        var expectKey = false
        var index = bytes.startIndex
        while index != bytes.endIndex {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "{"):
                containers.append(true)
                objects.append([])
                expectKey = true
            case UInt8(ascii: "["):
                containers.append(false)
                expectKey = false
            case UInt8(ascii: "}"):
                if containers.popLast() == true { objects.removeLast() }
                expectKey = false
            case UInt8(ascii: "]"):
                _ = containers.popLast()
                expectKey = false
            case UInt8(ascii: ","):
                expectKey = containers.last == true
            case UInt8(ascii: "\""):
                // A string: raw bytes up to the closing quote (escapes kept as written, which is enough to compare
                // keys as the sender wrote them; "\u0061" and "a" are not treated as equal).
                var string: [UInt8] = []
                index = bytes.index(after: index)
                while index != bytes.endIndex, bytes[index] != UInt8(ascii: "\"") {
                    string.append(bytes[index])
                    if bytes[index] == UInt8(ascii: "\\") {
                        index = bytes.index(after: index)
                        guard index != bytes.endIndex else { return nil }
                        string.append(bytes[index])
                    }
                    index = bytes.index(after: index)
                }
                guard index != bytes.endIndex else { return nil }
                if expectKey, !objects.isEmpty {
                    if objects[objects.count - 1].insert(string).inserted == false { return String(decoding: string, as: UTF8.self) }
                    expectKey = false
                }
            default:
                break
            }
            index = bytes.index(after: index)
        }
        return nil
    }
}
