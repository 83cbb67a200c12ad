import Foundation

/// The one place tests read the environment.
public enum TestEnv {
    /// `CI` is set: a missing server binary is a failure, never a skip.
    public static var isCI: Bool {
        guard let value = ProcessInfo.processInfo.environment["CI"] else { return false }
        return !value.isEmpty && value != "0" && value.lowercased() != "false"
    }

    /// A variable of the environment, for suites that may point at an already running server.
    public static func value(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name]
    }

    /// The absolute path of `binary` on `PATH`, or `nil`.
    public static func which(_ binary: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(binary)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// Why ``withDeadline(_:_:)`` gave up.
public struct DeadlineExceeded: Error, CustomStringConvertible {
    public var description: String

    public init(description: String) {
        self.description = description
    }
}

/// Runs `body` as a child task, failing with ``DeadlineExceeded`` if it takes longer than `timeout`
/// (and cancelling it): no wait in a test may hang the suite.
public func withDeadline<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw DeadlineExceeded(description: "no result within \(timeout)")
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw DeadlineExceeded(description: "no result within \(timeout)")
        }
        return value
    }
}
