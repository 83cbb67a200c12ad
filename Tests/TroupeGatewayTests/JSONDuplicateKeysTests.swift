import Testing
@testable import TroupeGateway

@Suite("Duplicate JSON keys")
struct JSONDuplicateKeysTests {
    @Test("a key twice in one object is found at any depth; the same key in different objects, in strings or arrays is not",
          arguments: [
            (#"{"a":1,"a":2}"#, "a"), (#"{"x":{"b":1,"c":{"d":1},"b":2}}"#, "b"), (#"[{"k":1},{"k":2,"k":3}]"#, "k"),
            (#"{"a":1,"b":{"a":2},"c":[{"a":3}]}"#, nil), (#"{"s":"\"a\":1,\"a\":2"}"#, nil), (#"["a","a"]"#, nil),
            (#"{"a\"":1,"a":2}"#, nil), ("{", nil), (#"{"a":"#, nil), ("", nil),
          ] as [(String, String?)])
    func duplicates(json: String, duplicate: String?) {
        #expect(JSONDuplicateKeys.first(in: Array(json.utf8)) == duplicate)
    }
}
