import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hello
import Logging
import Testing
import Troupe

/// The service on the embedded engines, through its HTTP API: greetings are counted by the greeter, and
/// their events reach the leaderboard through the outbox, the bus and the consumer — each counted once.
@Test func greetingsReachTheLeaderboard() async throws {
    let running = try await Hello.service().start(.init(port: 0), logger: Logger(label: "hello-test"))
    try await running.run {
        let base = "http://127.0.0.1:\(try await running.httpPort())"
        #expect(try await call("POST", base + "/hello/ada", as: Greeting.self) == Greeting(message: "Hello, ada!", greetings: 1))
        #expect(try await call("POST", base + "/hello/ada", as: Greeting.self).greetings == 2)
        #expect(try await call("POST", base + "/hello/bob", as: Greeting.self).greetings == 1)
        let expected = [Entry(name: "ada", greetings: 2), Entry(name: "bob", greetings: 1)]
        let deadline = ContinuousClock.now + .seconds(10)
        var board: [Entry] = []
        while board != expected, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            board = try await call("GET", base + "/leaderboard", as: [Entry].self)
        }
        #expect(board == expected)
    }
}

private func call<T: Decodable>(_ method: String, _ url: String, as type: T.Type) async throws -> T {
    var request = URLRequest(url: try #require(URL(string: url)), timeoutInterval: 5)
    request.httpMethod = method
    let (data, response) = try await URLSession.shared.data(for: request)
    try #require((response as? HTTPURLResponse)?.statusCode == 200, "\(method) \(url): \(String(decoding: data, as: UTF8.self))")
    return try JSONDecoder().decode(T.self, from: data)
}
