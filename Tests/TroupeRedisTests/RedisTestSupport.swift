import Testing
import TroupeRedis
import TroupeTestSupport

let redisAvailable = ServerProcess.shouldRun("redis-server")
let redisMissing = "redis-server is not installed (scripts/test installs it)"

/// Launches a private redis-server, runs `body` with a client, then stops both.
func withRedis<T: Sendable>(
    serverArguments: [String] = [],
    configure: (inout RedisConfiguration) -> Void = { _ in },
    _ body: @Sendable (ServerProcess, RedisClient) async throws -> T
) async throws -> T {
    let server = try await ServerProcess.redis(extraArguments: serverArguments)
    do {
        var configuration = try RedisConfiguration(url: server.redisURL)
        configure(&configuration)
        let result = try await withRedisClient(configuration) { client in try await body(server, client) }
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}
