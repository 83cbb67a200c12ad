import Foundation
import TroupeCore

/// Runs external commands (redis-cli, etcdctl, erl, redis-benchmark) for tests and benchmarks.
public enum Command {
    /// Why a command failed.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `arguments` (looked up on `PATH`) to completion and returns its standard output and error.
    /// - Throws: ``Failure`` when it exits with a non-zero status or outlives `timeout` (then it is killed).
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(600)) throws -> String {
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
        let timedOut = Locked(false)
        let pid = process.processIdentifier
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [process] in
            if process.isRunning {
                timedOut.withLock { $0 = true }
                kill(pid, SIGKILL)
            }
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        if timedOut.withLock({ $0 }) {
            throw Failure(description: "\(arguments.prefix(3).joined(separator: " ")) did not finish within \(timeout) and was killed: \(output.suffix(1000))")
        }
        guard process.terminationStatus == 0 else {
            throw Failure(description: "\(arguments.prefix(3).joined(separator: " ")) exited with \(process.terminationStatus): \(output.suffix(1000))")
        }
        return output
    }

    /// ``run(_:environment:timeout:)`` on a thread of its own, so that the caller's cooperative thread is
    /// not blocked while the command runs (load generators must not steal a thread from the server they measure).
    public static func runDetached(_ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(600)) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try run(arguments, environment: environment, timeout: timeout) })
            }
            thread.start()
        }
    }
}
