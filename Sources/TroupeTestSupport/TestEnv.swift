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

    /// The absolute path of `binary` on `PATH`, or in the project's `.venv-mongo/bin` (the Python packages
    /// `scripts/install-servers` installs), or `nil`.
    public static func venvExecutable(_ binary: String, filePath: String = #filePath) -> String? {
        if let onPath = which(binary) { return onPath }
        var directory = URL(fileURLWithPath: filePath).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent(".venv-mongo/bin/\(binary)")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
            directory = directory.deletingLastPathComponent()
        }
        return nil
    }
}

/// openapi-spec-validator (PyPI), installed into `.venv-mongo` by `scripts/install-servers`.
public enum OpenAPIValidator {
    public static var executable: String? { TestEnv.venvExecutable("openapi-spec-validator") }
    /// Whether the suites that need it run: it is installed, or `CI` is set (a missing one then fails).
    public static var shouldRun: Bool { executable != nil || TestEnv.isCI }

    /// Validates `document` as OpenAPI; nil when it is valid, the validator's complaint otherwise.
    /// - Throws: when the validator is not installed.
    public static func problems(in document: [UInt8]) throws -> String? {
        guard let executable else { throw Command.Failure(description: "openapi-spec-validator is not installed (scripts/install-servers installs it)") }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-openapi-\(UUID().uuidString).json").path
        try Data(document).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try Command.run([executable, path], timeout: .seconds(120))
            return nil
        } catch let failure as Command.Failure {
            return failure.description
        }
    }
}

/// promtool (Debian's `prometheus` package, installed by `scripts/install-servers`): lints Prometheus text.
public enum PrometheusLinter {
    public static var executable: String? { TestEnv.which("promtool") }
    /// Whether the suites that need it run: it is installed, or `CI` is set (a missing one then fails).
    public static var shouldRun: Bool { executable != nil || TestEnv.isCI }

    /// `promtool check metrics` on `text`: nil when it passes (no errors, no lint findings), its complaint otherwise.
    /// - Throws: when promtool is not installed.
    public static func problems(in text: String) throws -> String? {
        guard let executable else { throw Command.Failure(description: "promtool is not installed (scripts/install-servers installs Debian's prometheus)") }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-metrics-\(UUID().uuidString).txt").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            // promtool reads the text on standard input.
            _ = try Command.run(["sh", "-c", "\"$0\" check metrics < \"$1\"", executable, path], timeout: .seconds(60))
            return nil
        } catch let failure as Command.Failure {
            return failure.description
        }
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
