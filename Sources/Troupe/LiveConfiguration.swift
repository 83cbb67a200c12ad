import Foundation
public import Logging
public import ServiceLifecycle
public import TroupeDiscovery
public import TroupeGateway
public import TroupeCache
import TroupeCore

/// One setting that an operator changes while the process runs, by writing its key under the dynamic
/// configuration's prefix (`etcdctl put /config/{app}/{env}/{key} {value}`).
public struct LiveSetting: Sendable {
    /// The key, or — ending in `/` — the prefix of a family of keys (`features/`).
    public let key: String
    /// What a valid value is, in words (said when a value is refused).
    public let expected: String
    /// Checks and applies a value; `nil` means the key was removed (back to the configuration file's value).
    /// `name` is the key, or what follows the prefix for a family. A thrown error refuses the value.
    let apply: @Sendable (_ name: String, _ value: String?) throws -> Void

    /// A setting of `key` (a prefix ending in `/` for a family), whose valid values `expected` describes in words.
    public init(key: String, expected: String, apply: @escaping @Sendable (_ name: String, _ value: String?) throws -> Void) {
        self.key = key
        self.expected = expected
        self.apply = apply
    }

    /// A whole number in `range`; removed, `fallback` is applied.
    public static func integer(_ key: String, in range: ClosedRange<Int>, fallback: Int?, _ apply: @escaping @Sendable (Int?) throws -> Void) -> LiveSetting {
        LiveSetting(key: key, expected: "a whole number \(range.lowerBound)…\(range.upperBound)") { _, value in
            guard let value else { return try apply(fallback) }
            try apply(try integer(value, in: range))
        }
    }

    /// `value` read as a whole number in `range` (surrounding spaces ignored).
    /// - Throws: a refusal (the setting's ``expected`` is logged) for anything else.
    static func integer(_ value: String, in range: ClosedRange<Int>) throws -> Int {
        guard let number = Int(value.trimmingCharacters(in: .whitespaces)), range.contains(number) else { throw Refused() }
        return number
    }

    /// A family of on/off switches: `features/<name>` set to true or false; removed, the switch is on.
    public static func switches(_ prefix: String, _ apply: @escaping @Sendable (_ name: String, _ on: Bool) -> Void) -> LiveSetting {
        LiveSetting(key: prefix, expected: "true or false") { name, value in
            guard !name.isEmpty else { throw Refused() }
            switch value?.trimmingCharacters(in: .whitespaces).lowercased() {
            case nil, "true", "on", "1": apply(name, true)
            case "false", "off", "0": apply(name, false)
            default: throw Refused()
            }
        }
    }

    struct Refused: Error, CustomStringConvertible {
        var description: String { "not a valid value" }
    }

    func matches(_ candidate: String) -> Bool { key.hasSuffix("/") ? candidate.hasPrefix(key) : candidate == key }

    func name(of candidate: String) -> String { key.hasSuffix("/") ? String(candidate.dropFirst(key.count)) : candidate }
}

/// Applies the dynamic configuration (`ConfigSource`: etcd keys under `/config/{app}/{env}/`) to a running
/// process: each change of a known key is checked and applied at once; a value that does not check out is
/// refused and logged, and the last good one stays; a removed key goes back to the configuration file's value.
public final class LiveConfiguration: Service, Sendable {
    /// Where the values come from (etcd keys under the configuration prefix, or memory in tests).
    public let source: any ConfigSource
    private let logger: Logger
    private let state = Locked(State())

    struct State {
        var settings: [LiveSetting] = []
        /// The values in force, by key.
        var applied: [String: String] = [:]
        /// Values refused (by key), so that a refused value is said once, not at every change of another key.
        var refused: [String: String] = [:]
        var unknown: Set<String> = []
    }

    /// What one pass did, for logs and tests.
    public struct Outcome: Sendable, Equatable {
        /// Keys whose value was applied, with the value (nil: the key was removed).
        public var applied: [String: String?] = [:]
        /// Keys whose value was refused, with the value.
        public var refused: [String: String] = [:]
        /// Keys no setting knows (logged once each).
        public var unknown: [String] = []
    }

    /// Applies `settings` from `source`; run it as a service (after what it tunes).
    public init(source: any ConfigSource, settings: [LiveSetting] = [], logger: Logger) {
        self.source = source
        self.logger = logger
        state.withLock { $0.settings = settings }
    }

    /// Adds settings (a part of the process built later, like a gateway), applying the current values to them.
    @discardableResult
    public func add(_ settings: [LiveSetting]) -> Outcome {
        state.withLock { $0.settings += settings }
        return apply(source.snapshot(), only: settings)
    }

    /// Applies every snapshot of the source, the current one first, until the graceful shutdown.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            for await snapshot in self.source.updates() {
                self.apply(snapshot)
            }
        }
    }

    /// Applies `snapshot`: every known key whose value changed since the last pass.
    @discardableResult
    public func apply(_ snapshot: [String: String]) -> Outcome {
        apply(snapshot, only: nil)
    }

    private func apply(_ snapshot: [String: String], only: [LiveSetting]?) -> Outcome {
        state.withLock { state in
            var outcome = Outcome()
            let settings = only ?? state.settings
            let keys = Set(snapshot.keys).union(state.applied.keys).sorted()
            for key in keys {
                guard let setting = settings.first(where: { $0.matches(key) }) else {
                    if only == nil, snapshot[key] != nil, !state.settings.contains(where: { $0.matches(key) }), state.unknown.insert(key).inserted {
                        outcome.unknown.append(key)
                        logger.warning("unknown live configuration key; ignored", metadata: ["config.key": "\(key)"])
                    }
                    continue
                }
                let value = snapshot[key]
                guard value != state.applied[key] || (only != nil && value != nil) else { continue }
                if let value, state.refused[key] == value { continue }
                do {
                    try setting.apply(setting.name(of: key), value)
                    state.applied[key] = value
                    state.refused[key] = nil
                    outcome.applied[key] = .some(value)
                    logger.notice(value == nil ? "live configuration removed; the file's value applies" : "live configuration applied",
                                  metadata: ["config.key": "\(key)", "config.value": "\(value ?? "")"])
                } catch {
                    state.refused[key] = value
                    outcome.refused[key] = value ?? ""
                    logger.warning("live configuration refused; the last good value stays", metadata: [
                        "config.key": "\(key)", "config.value": "\(value ?? "")", "config.expected": "\(setting.expected)",
                        "config.kept": "\(state.applied[key] ?? "the file's value")", "error": "\(error)",
                    ])
                }
            }
            return outcome
        }
    }
}

extension LiveSetting {
    /// A gateway's live settings: `gateway/maxInFlight` (the load-shedding bound), `gateway/userRequestsPerSecond` and
    /// `gateway/globalRequestsPerSecond` (token buckets with a burst of one second's worth; the limiters must be the
    /// adjustable ones the gateway was given), and the route switches `features/<name>`. A removed key goes back
    /// to the value the gateway started with.
    /// - Parameters:
    ///   - gateway: the running gateway.
    ///   - user: its per-user limiter.
    ///   - global: its gateway-wide limiter.
    ///   - limiter: the limiter of a rate (Redis-backed in a cluster, so that the gateways share it).
    public static func gateway(_ gateway: Gateway, user: AdjustableRateLimiter, global: AdjustableRateLimiter,
                               limiter: @escaping @Sendable (Int) throws -> any RateLimiter) -> [LiveSetting] {
        let startingBound = gateway.live.maxInFlight
        let startingUser = user.limiter
        let startingGlobal = global.limiter
        return [
            .integer("gateway/maxInFlight", in: 1...1_000_000, fallback: startingBound) { bound in
                try gateway.live.setMaxInFlight(bound ?? startingBound)
            },
            .integer("gateway/userRequestsPerSecond", in: 1...1_000_000, fallback: nil) { rate in
                user.replace(with: try rate.map(limiter) ?? startingUser)
            },
            .integer("gateway/globalRequestsPerSecond", in: 1...10_000_000, fallback: nil) { rate in
                global.replace(with: try rate.map(limiter) ?? startingGlobal)
            },
            .switches("features/") { name, on in gateway.live.setFeature(name, enabled: on) },
        ]
    }
}
