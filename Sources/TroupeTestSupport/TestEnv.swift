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
