import Foundation

/// Runs external commands (redis-cli, etcdctl, erl, redis-benchmark) for tests and benchmarks.
public enum Command {
    /// Why a command failed.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `arguments` (looked up on `PATH`) to completion and returns its standard output and error.
    /// - Throws: ``Failure`` when it exits with a non-zero status.
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw Failure(description: "\(arguments.prefix(3).joined(separator: " ")) exited with \(process.terminationStatus): \(output.suffix(1000))")
        }
        return output
    }
}
