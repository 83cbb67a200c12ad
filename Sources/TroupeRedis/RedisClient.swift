import Logging
import Metrics
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import ServiceLifecycle
import Synchronization
import TroupeCore
public import TroupeNIO
public import TroupeRESP

/// A Redis client: a bounded pool of pipelining connections to one server, reconnecting with
/// backoff and jitter, plus typed commands (see the extensions), scripts, transactions and pub/sub.
///
/// ```swift
/// let redis = try RedisClient(configuration: RedisConfiguration(url: "redis://127.0.0.1:6379"))
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await redis.run() }
///     try await redis.set("greeting", to: "hello")
///     let value = try await redis.get("greeting")  // "hello"
///     redis.shutdown()
/// }
/// ```
public final class RedisClient: Service, Sendable {
    /// The settings the client was made with.
    public let configuration: RedisConfiguration
    private let slots: Guarded<[Slot]>
    private let commandMetrics = RedisCommandMetrics()
    private let poolMetrics: ConnectionPoolMetrics
    private let next = Atomic<Int>(0)
    /// The executors' own turn (callers picking executors in a row get them in turn, whatever commands
    /// other threads send meanwhile).
    private let nextLoop = Atomic<Int>(0)
    private let shutDown = Atomic<Bool>(false)
    /// While Redis cannot be reached, one warning a 10 s (the pool's connections all retry, each on its own backoff).
    private let reconnectLog = SharedLogThrottle(interval: .seconds(10))
    private let unreachable = Atomic<Bool>(false)
    private let runStarted = Atomic<Bool>(false)
    private let shutdownSignal: AsyncStream<Void>
    private let shutdownContinuation: AsyncStream<Void>.Continuation
    /// The group's event loops; slot `i` connects on `loops[i % loops.count]`.
    private let loops: [any EventLoop]
    /// Per event loop (same order as `loops`), the slots whose connections live on it.
    private let slotsByLoop: [[Int]]
    private let executors: [EventLoopTaskExecutor]

    private enum Slot {
        case empty(failures: Int, retryAt: ContinuousClock.Instant, lastError: RedisError?)
        case connecting(EventLoopFuture<RedisConnection>)
        case ready(RedisConnection)
    }

    /// - Throws: ``RedisError/Code/invalidConfiguration`` when the configuration is invalid.
    public init(configuration: RedisConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
        self.poolMetrics = ConnectionPoolMetrics(client: "redis", server: "\(configuration.host):\(configuration.port)")
        self.slots = Guarded(Array(repeating: .empty(failures: 0, retryAt: .now, lastError: nil), count: configuration.poolSize))
        (self.shutdownSignal, self.shutdownContinuation) = AsyncStream.makeStream(of: Void.self)
        var loops: [any EventLoop] = []
        for loop in configuration.eventLoopGroup.makeIterator() { loops.append(loop) }
        if loops.isEmpty { loops = [configuration.eventLoopGroup.next()] }
        self.loops = loops
        self.slotsByLoop = loops.indices.map { l in Array(stride(from: l, to: configuration.poolSize, by: loops.count)) }
        self.executors = loops.map { EventLoopTaskExecutor($0) }
    }

    /// A task executor on one of the client's event loops (round robin). Work that issues many commands
    /// in sequence (a stream consumer's loop, say) runs cheapest as a task preferring it: each reply
    /// resumes the task on the thread that read it, and its commands go to connections on that loop.
    public func nextExecutor() -> EventLoopTaskExecutor {
        executors[nextLoop.wrappingAdd(1, ordering: .relaxed).oldValue % executors.count]
    }

    // MARK: - Lifecycle

    /// Runs until graceful shutdown, cancellation or ``shutdown()``, then closes every connection.
    public func run() async throws {
        let (_, alreadyRunning) = runStarted.compareExchange(expected: false, desired: true, ordering: .relaxed)
        precondition(!alreadyRunning, "RedisClient.run() called twice")
        await waitForShutdown(shutdownSignal) { self.shutdown() }
        await closeAll()
    }

    /// Stops the client: new commands fail with ``RedisError/Code/clientShutdown``, connections close.
    public func shutdown() {
        guard !shutDown.exchange(true, ordering: .relaxed) else { return }
        shutdownContinuation.finish()
        let connections = slots.withLock { slots in
            slots.compactMap { slot -> RedisConnection? in
                if case .ready(let connection) = slot { return connection }
                return nil
            }
        }
        for connection in connections { connection.channel.close(promise: nil) }
    }

    private func closeAll() async {
        let connections = slots.withLock { slots -> [RedisConnection] in
            defer { for index in slots.indices { slots[index] = .empty(failures: 0, retryAt: .now, lastError: nil) } }
            return slots.compactMap { slot in
                if case .ready(let connection) = slot { return connection }
                return nil
            }
        }
        for connection in connections { await connection.close() }
        poolMetrics.open.record(0)
    }

    /// Slots holding a connection (a dead one until its next use replaces it).
    private static func readyCount(_ slots: [Slot]) -> Int {
        slots.reduce(0) { count, slot in
            if case .ready = slot { return count + 1 }
            return count
        }
    }

    // MARK: - Commands

    /// Sends one command; an error reply throws ``RedisError/Code/server``.
    @discardableResult
    public func send(_ arguments: [any RESPArgument], timeout: Duration? = nil) async throws -> RESPValue {
        try await commandMetrics.measure(RedisConnection.commandName(arguments), isError: \.isError) {
            try await connection().send(arguments, timeout: timeout)
        }
    }

    /// Sends one command and returns its reply as is, error replies included.
    public func sendRaw(_ arguments: [any RESPArgument], timeout: Duration? = nil) async throws -> RESPValue {
        try await commandMetrics.measure(RedisConnection.commandName(arguments), isError: \.isError) {
            try await connection().sendRaw(arguments, timeout: timeout)
        }
    }

    /// Sends `commands` back to back on one connection and returns every reply (errors as values).
    public func pipeline(_ commands: [[any RESPArgument]], timeout: Duration? = nil) async throws -> [RESPValue] {
        // Reported as one command, named after its first (MULTI for a transaction).
        try await commandMetrics.measure("pipeline:" + (commands.first.map(RedisConnection.commandName) ?? ""), isError: { $0.contains(where: \.isError) }) {
            try await connection().pipeline(commands, timeout: timeout)
        }
    }

    /// Runs `commands` atomically with `MULTI` / `EXEC` on one connection and returns their replies.
    /// - Throws: ``RedisError/Code/server`` when a command is rejected while queueing or `EXEC` aborts.
    public func transaction(_ commands: [[any RESPArgument]], timeout: Duration? = nil) async throws -> [RESPValue] {
        let replies = try await pipeline([["MULTI"]] + commands + [["EXEC"]], timeout: timeout)
        if let rejected = replies.dropLast().first(where: \.isError) {
            throw RedisError.server(rejected, command: "MULTI")
        }
        guard let exec = replies.last else { throw RedisError(.unexpectedReply, "EXEC returned nothing") }
        if exec.isError { throw RedisError.server(exec, command: "EXEC") }
        guard let results = exec.array else {
            throw RedisError(.server, "the transaction was aborted", serverMessage: exec.string)
        }
        return results
    }

    // MARK: - Pool

    /// A ready connection, round-robin over the pool; connects (or reconnects after backoff) as needed.
    /// Called from a task running on one of the client's event loops, it is that loop's first connection,
    /// so the command and its reply never change threads, and the commands of every task on that loop
    /// issued in one turn of the loop leave in one write (Redis then reads, runs and answers them as one
    /// batch). Spreading them over the loop's other connections gained no parallelism — one thread does
    /// their I/O and the server runs commands one at a time — and cost a write and a read per connection.
    public func connection() async throws -> RedisConnection {
        let deadline = ContinuousClock.now + configuration.commandTimeout
        let index: Int
        if let current = loops.firstIndex(where: { $0.inEventLoop }), let first = slotsByLoop[current].first {
            index = first
        } else {
            index = next.wrappingAdd(1, ordering: .relaxed).oldValue % configuration.poolSize
        }
        while true {
            guard !shutDown.load(ordering: .relaxed) else {
                throw RedisError(.clientShutdown, "the Redis client was shut down")
            }
            enum Step { case ready(RedisConnection), wait(EventLoopFuture<RedisConnection>), connect(EventLoopPromise<RedisConnection>), backoff(ContinuousClock.Instant, RedisError?) }
            let now = ContinuousClock.now
            let step = slots.withLock { slots -> Step in
                switch slots[index] {
                case .ready(let connection) where connection.isActive:
                    return .ready(connection)
                case .connecting(let future):
                    return .wait(future)
                case .empty(_, let retryAt, let lastError) where retryAt > now:
                    return .backoff(retryAt, lastError)
                case .ready, .empty:
                    let promise = loops[index % loops.count].makePromise(of: RedisConnection.self)
                    let failures: Int
                    if case .empty(let count, _, _) = slots[index] { failures = count } else { failures = 0 }
                    slots[index] = .connecting(promise.futureResult)
                    promise.futureResult.whenComplete { [weak self] result in
                        self?.settle(index, result: result, previousFailures: failures)
                    }
                    return .connect(promise)
                }
            }
            switch step {
            case .ready(let connection):
                return connection
            case .wait(let future):
                do {
                    return try await future.get()
                } catch {
                    guard ContinuousClock.now < deadline else { throw error }
                }
            case .connect(let promise):
                do {
                    let connection = try await RedisConnection.connect(configuration, on: loops[index % loops.count])
                    promise.succeed(connection)
                    return connection
                } catch {
                    promise.fail(error)
                    guard ContinuousClock.now < deadline else { throw error }
                }
            case .backoff(let retryAt, let lastError):
                guard retryAt < deadline, !configuration.failFastWhileDown else {
                    throw lastError ?? RedisError(.connectFailed, "cannot connect to \(configuration.host):\(configuration.port)")
                }
                try await Task.sleep(until: retryAt)
            }
        }
    }

    private func settle(_ index: Int, result: Result<RedisConnection, any Error>, previousFailures: Int) {
        switch result {
        case .success(let connection):
            let open = slots.withLock { slots -> Int in
                slots[index] = .ready(connection)
                return Self.readyCount(slots)
            }
            poolMetrics.opened.increment()
            poolMetrics.open.record(open)
            if shutDown.load(ordering: .relaxed) { connection.channel.close(promise: nil) }
            if unreachable.exchange(false, ordering: .relaxed) {
                reconnectLog.reset()
                configuration.logger.notice("redis reachable again", metadata: ["redis.server.address": "\(configuration.host):\(configuration.port)"])
            }
        case .failure(let error):
            var backoff = configuration.reconnectBackoff
            for _ in 0..<min(previousFailures, 30) { _ = backoff.next() }
            let delay = backoff.next()
            let redisError = error as? RedisError
            let open = slots.withLock { slots -> Int in
                slots[index] = .empty(failures: previousFailures + 1, retryAt: .now + delay, lastError: redisError)
                return Self.readyCount(slots)
            }
            poolMetrics.failed.increment()
            poolMetrics.open.record(open)
            unreachable.store(true, ordering: .relaxed)
            if shutDown.load(ordering: .relaxed) { return }
            if let held = reconnectLog.admit() {
                configuration.logger.warning("redis unreachable; reconnecting", metadata: [
                    "redis.server.address": "\(configuration.host):\(configuration.port)",
                    "redis.reconnect.delay_ms": "\(Int(delay.seconds * 1000))", "error": "\(Self.cause(of: error))",
                    "log.suppressed": "\(held)",
                ])
            } else {
                configuration.logger.debug("redis reconnect scheduled", metadata: [
                    "redis.server.address": "\(configuration.host):\(configuration.port)",
                    "redis.reconnect.delay_ms": "\(Int(delay.seconds * 1000))", "error": "\(String(reflecting: error))",
                ])
            }
        }
    }
}

extension RedisClient {
    /// Why a connection failed, in one line: the client's message and the system's reason (`Connection refused`),
    /// without the layers of error types between them.
    static func cause(of error: any Error) -> String {
        guard let error = error as? RedisError else { return "\(error)" }
        var reason: (any Error)? = error.underlying
        while let next = reason {
            if let io = next as? IOError { return "\(error.message): \(String(cString: strerror(io.errnoCode)))" }
            if let connect = next as? NIOConnectionError, let first = connect.connectionErrors.first?.error {
                reason = first
                continue
            }
            return "\(error.message): \(next)"
        }
        return error.message
    }
}

/// Runs `body` with a running client, then shuts it down.
public func withRedisClient<Result: Sendable>(
    _ configuration: RedisConfiguration,
    _ body: @Sendable (RedisClient) async throws -> Result
) async throws -> Result {
    let client = try RedisClient(configuration: configuration)
    return try await withRunning(run: { try await client.run() }, shutdown: { client.shutdown() }) { try await body(client) }
}
