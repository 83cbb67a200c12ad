import NIOCore
import NIOTestUtils
import Testing
import TroupeRESP
import TroupeTestSupport

func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

@Suite("RESP3 codec")
struct RESPDecoderTests {
    // Golden bytes from the RESP3 specification, one per type.
    static let golden: [(String, RESPValue)] = [
        ("+OK\r\n", .simpleString(buffer("OK"))),
        ("-ERR this is the error description\r\n", .simpleError(buffer("ERR this is the error description"))),
        (":1234\r\n", .integer(1234)),
        (":-9223372036854775808\r\n", .integer(.min)),
        ("$11\r\nhelloworld!\r\n", .blobString(buffer("helloworld!"))),
        ("$0\r\n\r\n", .blobString(buffer(""))),
        ("$-1\r\n", .null),
        ("*-1\r\n", .null),
        ("_\r\n", .null),
        ("#t\r\n", .boolean(true)),
        ("#f\r\n", .boolean(false)),
        (",1.23\r\n", .double(1.23)),
        (",-2.5e-3\r\n", .double(-2.5e-3)),
        (",+7E2\r\n", .double(700)),
        (",inf\r\n", .double(.infinity)),
        (",-inf\r\n", .double(-.infinity)),
        ("(3492890328409238509324850943850943825024385\r\n", .bigNumber("3492890328409238509324850943850943825024385")),
        ("!21\r\nSYNTAX invalid syntax\r\n", .blobError(buffer("SYNTAX invalid syntax"))),
        ("=15\r\ntxt:Some string\r\n", .verbatimString(format: "txt", buffer("Some string"))),
        ("*3\r\n:1\r\n:2\r\n:3\r\n", .array([.integer(1), .integer(2), .integer(3)])),
        ("*2\r\n*1\r\n+a\r\n$-1\r\n", .array([.array([.simpleString(buffer("a"))]), .null])),
        ("~2\r\n+orange\r\n+apple\r\n", .set([.simpleString(buffer("orange")), .simpleString(buffer("apple"))])),
        ("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", .map([
            RESPPair(key: .simpleString(buffer("first")), value: .integer(1)),
            RESPPair(key: .simpleString(buffer("second")), value: .integer(2)),
        ])),
        ("|1\r\n+ttl\r\n:3600\r\n:42\r\n", .attribute([RESPPair(key: .simpleString(buffer("ttl")), value: .integer(3600))], .integer(42))),
        (">3\r\n+message\r\n+news\r\n$5\r\nhello\r\n", .push([.simpleString(buffer("message")), .simpleString(buffer("news")), .blobString(buffer("hello"))])),
        ("*0\r\n", .array([])),
    ]

    @Test("golden bytes of every RESP3 type decode to the right value", arguments: 0..<golden.count)
    func decodesGolden(index: Int) throws {
        let (text, expected) = Self.golden[index]
        var input = buffer(text)
        #expect(try RESPDecoder.parse(&input) == expected)
        #expect(input.readableBytes == 0)
    }

    @Test("drip-fed, batched and split input decodes the same (ByteToMessageDecoderVerifier)")
    func verifier() throws {
        let pairs = Self.golden.filter { !$0.1.containsNaN }.map { (buffer($0.0), [$0.1]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { RESPDecoder() }
    }

    @Test("an incomplete value consumes nothing", arguments: ["$5\r\nhel", "*2\r\n:1\r\n", "%1\r\n+a\r\n", "+OK\r", ":12"])
    func incomplete(text: String) throws {
        var input = buffer(text)
        #expect(try RESPDecoder.parse(&input) == nil)
        #expect(input.readableBytes == text.utf8.count)
    }

    @Test("hostile input throws", arguments: [
        "$-5\r\nabc\r\n",                 // negative length
        "*-2\r\n",                        // negative count
        "$99999999999999999999\r\n",      // overflowing length
        "$600000000\r\n",                 // over the blob limit, refused before waiting for the bytes
        "*99999999999\r\n",               // over the aggregate limit
        "?what\r\n",                      // unknown type
        ":12a\r\n",                       // bad integer
        ":\r\n",                          // empty integer
        "#x\r\n",                         // bad boolean
        ",abc\r\n",                       // bad double
        ",nan\u{0}Dictio+eion\r\n",        // text after a NUL (found by the fuzzer: Double(_:) stops at the NUL)
        ",1\u{0}garbage\r\n",              // the same after a number
        ",0x1p3\r\n",                     // hexadecimal, not a RESP3 double
        ",infinity\r\n",                  // only inf, -inf and nan are words
        "$3\r\nabcXY",                    // missing CRLF after a blob
        "+OK\rX",                         // CR without LF
        "=3\r\ntxt\r\n",                  // verbatim without format separator
        "$?\r\n",                         // streamed string
        "_x\r\n",                         // null with payload
    ])
    func hostile(text: String) {
        var input = buffer(text)
        #expect(throws: RESPDecodeError.self) { try RESPDecoder.parse(&input) }
    }

    @Test("10,000-deep nesting throws instead of recursing")
    func deepNesting() {
        var input = buffer(String(repeating: "*1\r\n", count: 10_000) + ":1\r\n")
        #expect(throws: RESPDecodeError(.tooDeep)) { try RESPDecoder.parse(&input) }
    }

    @Test("a line longer than 64 KiB is refused the same way whole or split at any byte; one at the limit decodes",
          arguments: ["+", "-", ",", "(", ":"])
    func lineLimit(type: String) throws {
        let limit = 64 * 1024
        for (length, accepted) in [(limit, true), (limit + 1, false), (limit + 65, false)] {
            let digits = type == "+" || type == "-" ? String(repeating: "a", count: length) : String(repeating: "1", count: length)
            let bytes = Array((type + digits + "\r\n").utf8)
            var whole = ByteBuffer(bytes: bytes)
            let wholeResult = Result { try RESPDecoder.parse(&whole) }
            // Split at every 997th byte, around the limit, and before the CRLF: a prefix either waits (nil,
            // nothing consumed) or fails as the whole line does.
            let cuts = Set(Array(stride(from: 1, to: bytes.count, by: 997)) + [limit - 1, limit, limit + 1, limit + 2, bytes.count - 2, bytes.count - 1])
            for cut in cuts.sorted() where cut < bytes.count {
                var prefix = ByteBuffer(bytes: bytes[0..<cut])
                switch Result(catching: { try RESPDecoder.parse(&prefix) }) {
                case .success(let value):
                    #expect(value == nil, "a prefix of \(cut) bytes decoded a value")
                    #expect(prefix.readableBytes == cut, "a prefix of \(cut) bytes consumed input")
                case .failure(let error):
                    #expect(!accepted, "a prefix of \(cut) bytes of an acceptable \(length)-byte line failed: \(error)")
                }
            }
            switch wholeResult {
            case .success(let value): #expect(accepted && value != nil, "a \(length)-byte line decoded: accepted \(accepted)")
            case .failure(let error):
                // Numbers of 64 KiB digits overflow; what matters is that the length rule is the same for every split.
                if accepted { #expect(type != "+" && type != "-", "a \(length)-byte line failed whole: \(error)") }
                else { #expect((error as? RESPDecodeError) == RESPDecodeError(.tooLarge), "\(error)") }
            }
        }
    }

    @Test("random bytes never trap", arguments: 0..<300)
    func fuzz(seed: Int) {
        var generator = SeededGenerator(seed: UInt64(seed))
        let alphabet = Array("+-:$*%~>|_#,(!=\r\n0123456789-?abc".utf8)
        let bytes = (0..<Int(generator.next() % 48)).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
        var input = ByteBuffer(bytes: bytes)
        _ = try? RESPDecoder.parse(&input)
    }

    @Test("commands encode as arrays of bulk strings")
    func encoder() {
        var out = ByteBuffer()
        RESPCommandEncoder.encode(["SET", "key", ByteBuffer(string: "vålue"), 42, [UInt8]([0, 13, 10])], into: &out)
        #expect(String(buffer: out) == "*5\r\n$3\r\nSET\r\n$3\r\nkey\r\n$6\r\nvålue\r\n$2\r\n42\r\n$3\r\n\u{0}\r\n\r\n")
    }

    @Test("the measured fast path writes the same bytes as argument-by-argument encoding")
    func encoderPaths() {
        var slice = ByteBuffer(string: "--payload--")
        slice.moveReaderIndex(forwardBy: 2)
        let mixes: [[any RESPArgument]] = [
            ["SET", "", "ünïcödé", slice, [UInt8](), 0, -7, 1_234_567_890, Int.min, Int.max, Int64(-42), Int64.max, "x"[...]],
            Array(repeating: "k", count: 12),
            ["INCRBYFLOAT", "f", 1.5],  // a Double has no fast path: the whole command goes argument by argument
        ]
        for arguments in mixes {
            var fast = ByteBuffer()
            RESPCommandEncoder.encode(arguments, into: &fast)
            var expected = "*\(arguments.count)\r\n"
            for argument in arguments {
                var one = ByteBuffer()
                argument.writeBulk(into: &one)
                expected += String(buffer: one)
            }
            #expect(String(buffer: fast) == expected)
        }
        var twice = ByteBuffer()
        RESPCommandEncoder.encode(["GET", "a"], into: &twice)
        RESPCommandEncoder.encode(["GET", "b"], into: &twice)
        #expect(String(buffer: twice) == "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n")
    }
}

extension RESPValue {
    var containsNaN: Bool {
        if case .double(let d) = self { return d.isNaN }
        return false
    }
}
