/// Runs `run` (a long-lived service loop) in the background while `body` runs, then calls `shutdown`
/// and waits for `run` to return. The scoped-helper shape of `withRedisClient`, `withEtcdClient`, ….
public func withRunning<Result: Sendable>(
    run: @escaping @Sendable () async throws -> Void,
    shutdown: @escaping @Sendable () -> Void,
    _ body: () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await run() }
        let result: Swift.Result<Result, any Error>
        do {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        shutdown()
        try await group.waitForAll()
        return try result.get()
    }
}
