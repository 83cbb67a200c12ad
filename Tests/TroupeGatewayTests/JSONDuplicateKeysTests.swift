import Testing
import NIOCore
@testable import TroupeGateway
import HummingbirdCore
import HTTPTypes
import TroupeCore

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

@Suite("Request bodies and stored responses from outside the process")
struct OutsideBytesTests {
    struct PlaceOrder: Decodable { var sku: String; var quantity: Int }

    @Test("a body with a duplicate key, not JSON or of the wrong shape is a 400 that says which")
    func bodies() throws {
        let order = try Gateway.decodeBody(PlaceOrder.self, from: ByteBuffer(string: #"{"sku":"a","quantity":2}"#))
        #expect(order.sku == "a" && order.quantity == 2)
        for (body, detail) in [(#"{"sku":"a","sku":"b","quantity":1}"#, "appears twice"), ("{", "not valid JSON"),
                               (#"{"sku":"a","quantity":"2"}"#, "'quantity' has the wrong type")] {
            do {
                _ = try Gateway.decodeBody(PlaceOrder.self, from: ByteBuffer(string: body))
                Issue.record("\(body) decoded")
            } catch {
                #expect(error.status == .badRequest)
                #expect(error.detail.contains(detail), "\(error.detail)")
            }
        }
    }

    @Test("a stored idempotent response whose status is not an HTTP status is refused, not a trap", arguments: [-1, 0, 99, 600, 1000, Int.max])
    func corruptStoredStatus(status: Int) {
        let bytes = Array(#"{"status":\#(status),"body":[]}"#.utf8)
        #expect(throws: GatewayError.self) { _ = try StoredResponse.decode(bytes) }
    }

    @Test("a stored response with a valid status replays")
    func storedStatus() throws {
        let response = try StoredResponse.decode(Array(#"{"status":201,"contentType":"application/json","body":[123,125]}"#.utf8))
        #expect(response.status.code == 201)
    }
}
