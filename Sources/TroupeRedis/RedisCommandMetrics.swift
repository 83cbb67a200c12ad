import Metrics
import TroupeCore

/// `troupe_redis_commands_total` by command and outcome, and `troupe_redis_command_duration_seconds` by command,
/// for every command a ``RedisClient`` sends. Series are made once per command name and then looked up; past
/// ``maxCommands`` names (commands come from code, but a caller may build any) further ones count as "other".
final class RedisCommandMetrics: Sendable {
    struct Series: Sendable {
        let ok: Counter
        let error: Counter
        let failed: Counter
        let duration: Metrics.Timer
    }

    static let maxCommands = 128
    private let series = Guarded<[String: Series]>([:])

    func series(_ command: String) -> Series {
        series.withLock { series in
            if let known = series[command] { return known }
            let label = series.count < Self.maxCommands ? command : "other"
            if let known = series[label] { return known }
            func counter(_ outcome: String) -> Counter {
                Counter(label: MetricFamilies.redisCommands.name, dimensions: [("command", label), ("outcome", outcome)])
            }
            let made = Series(ok: counter("ok"), error: counter("error"), failed: counter("failed"),
                              duration: Metrics.Timer(label: MetricFamilies.redisCommandDuration.name, dimensions: [("command", label)]))
            series[label] = made
            return made
        }
    }

    /// Runs `body` (one command, or a pipeline named `command`) and records its outcome and duration.
    func measure<Reply>(_ command: String, isError: (Reply) -> Bool, _ body: () async throws -> Reply) async throws -> Reply {
        let series = series(command)
        let start = ContinuousClock.now
        defer { series.duration.recordNanoseconds((ContinuousClock.now - start).nanoseconds) }
        do {
            let reply = try await body()
            (isError(reply) ? series.error : series.ok).increment()
            return reply
        } catch let error as RedisError where error.code == .server {
            series.error.increment()
            throw error
        } catch {
            series.failed.increment()
            throw error
        }
    }
}
