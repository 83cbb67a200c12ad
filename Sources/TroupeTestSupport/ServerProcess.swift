public import Foundation
import NIOCore
import NIOPosix
import Synchronization
import TroupeCore

/// A server binary that a test suite launches on a free loopback port, in a temporary directory.
public final class ServerProcess: Sendable {
    public let name: String
    /// The address it listens on and is checked at (loopback unless launched with another `host`).
    public let host: String
    public let port: Int
    public let directory: URL
    private let arguments: Guarded<[String]>
    private let startTimeout: Duration
    private let process = Guarded<Process?>(nil)

    /// Why a server could not be started.
    public struct LaunchError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Whether suites needing `binary` should run: it is installed, or `CI` is set (then a missing
    /// binary fails the suite instead of skipping it).
    public static func shouldRun(_ binary: String) -> Bool {
        TestEnv.which(binary) != nil || TestEnv.isCI
    }

    private init(name: String, host: String, port: Int, directory: URL, arguments: [String], startTimeout: Duration = .seconds(10)) {
        self.startTimeout = startTimeout
        self.name = name
        self.host = host
        self.port = port
        self.directory = directory
        self.arguments = Guarded(arguments)
    }

    /// Starts `binary` with `arguments(port, directory)` and waits until it accepts connections on `host`.
    /// `prefix` runs it through another program that execs it (e.g. `ip netns exec NAME`).
    public static func launch(
        _ binary: String,
        installHint: String,
        host: String = "127.0.0.1",
        port: Int? = nil,
        prefix: [String] = [],
        executable: String? = nil,
        startTimeout: Duration = .seconds(10),
        arguments: (Int, URL) -> [String]
    ) async throws -> ServerProcess {
        guard let path = executable ?? TestEnv.which(binary) else {
            throw LaunchError(description: "\(binary) is not installed: \(installHint)")
        }
        let port = try await freePort(preferred: port)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-\(binary)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let server = ServerProcess(name: binary, host: host, port: port, directory: directory, arguments: prefix + [path] + arguments(port, directory),
                                   startTimeout: startTimeout)
        try await server.start()
        return server
    }

    /// Starts (again) with the same port, directory and arguments.
    public func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // Signals the test runner ignores or blocks would be inherited; give the server default handling.
        process.arguments = ["--default-signal"] + arguments.withLock { $0 }
        let log = directory.appendingPathComponent("server.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        self.process.withLock { $0 = process }
        let deadline = ContinuousClock.now + startTimeout
        while !(await Self.accepts(host: host, port: port)) {
            guard process.isRunning, ContinuousClock.now < deadline else {
                let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                throw LaunchError(description: "\(name) did not start on \(host):\(port): \(output.suffix(2000))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sends `signal` to the running server (SIGSTOP / SIGCONT to freeze and thaw it); false when none runs.
    @discardableResult
    public func send(_ signal: Int32) -> Bool {
        guard let process = process.withLock({ $0 }), process.isRunning else { return false }
        return kill(process.processIdentifier, signal) == 0
    }

    /// Whether the server's process is running.
    public var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

    /// Adds arguments for the next ``start()`` (e.g. restart with authentication turned on).
    public func appendArguments(_ extra: [String]) {
        arguments.withLock { $0 += extra }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and waits until its port is closed.
    public func stop(signal: Int32 = SIGTERM) async {
        guard let process = self.process.withLock({ value -> Process? in
            defer { value = nil }
            return value
        }) else { return }
        if process.isRunning { kill(process.processIdentifier, signal) }
        let deadline = ContinuousClock.now + .seconds(5)
        while await Self.accepts(host: host, port: port), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
    }

    /// Stops the server from a `defer` in tests: SIGTERM at once; a thread of its own waits for the exit
    /// (SIGKILL after 5 s) and then removes the server's directory. The caller is not held up: waiting here
    /// blocked one of the two cooperative threads of these machines for as long as the server took to exit
    /// (SecantusDB: ~3 s after SIGTERM), and suites running meanwhile missed their timing by hundreds of ms.
    public func terminate() {
        let directory = self.directory
        guard let process = self.process.withLock({ value -> Process? in
            defer { value = nil }
            return value
        }), process.isRunning else {
            try? FileManager.default.removeItem(at: directory)
            return
        }
        kill(process.processIdentifier, SIGTERM)
        Thread {
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning, Date() < deadline { usleep(10_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(at: directory)
        }.start()
    }

    /// Stops the server and removes its directory.
    public func shutdown() async {
        await stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Whether something accepts TCP connections on `host:port` (the loopback by default).
    public static func accepts(host: String = "127.0.0.1", port: Int) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(200))
                .connect(host: host, port: port)
                .get()
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }

    /// A loopback port nobody listens on (the preferred one if it is free).
    ///
    /// Chosen at random below the kernel's ephemeral range (32768–60999 on Linux), never from it: a port the kernel
    /// handed out for `bind(0)` can be handed out again a moment later to the next `bind(0)` or outgoing connection —
    /// a cluster transport or client starting between this call and the server's own bind — and then the server
    /// cannot listen on it. A port is also never handed out twice by one process.
    public static func freePort(preferred: Int? = nil, maximum: Int = 32_767) async throws -> Int {
        if let preferred, !(await accepts(port: preferred)) { return preferred }
        let upper = min(maximum, 32_767)
        let lower = min(20_000, upper)
        for _ in 0..<200 {
            let port = Int.random(in: lower...upper)
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            do {
                let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .bind(host: "127.0.0.1", port: port)
                    .get()
                try? await channel.close()
                return port
            } catch {
                continue
            }
        }
        throw LaunchError(description: "no free loopback port in \(lower)…\(upper) after 200 tries")
    }

    /// Ports `freePort` returned in this process (invariant: only inserted into, under its lock).
    private static let handedOut = Mutex<Set<Int>>([])
}

extension ServerProcess {
    /// A `redis-server` without persistence, on a free port of `host`.
    public static func redis(host: String = "127.0.0.1", extraArguments: [String] = []) async throws -> ServerProcess {
        try await launch("redis-server", installHint: "run scripts/test, or apt-get install redis-server", host: host) { port, directory in
            // Off the loopback (a private test network) Redis's protected mode would refuse every client.
            ["--port", String(port), "--bind", host, "--protected-mode", host == "127.0.0.1" ? "yes" : "no", "--save", "", "--appendonly", "no", "--dir", directory.path] + extraArguments
        }
    }

    /// `redis://HOST:PORT`
    public var redisURL: String { "redis://\(host):\(port)" }
}
