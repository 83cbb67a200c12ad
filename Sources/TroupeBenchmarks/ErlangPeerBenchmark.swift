import Foundation
import TroupeTestSupport

/// The Erlang/OTP peer of `troupe bench actors`: ping-pong over Erlang distribution between two local
/// nodes (one `erl` process each), sequential p50/p99 and throughput with the same number of callers.
/// Runs only where `erl` and `erlc` are installed (Debian: `erlang-nox`).
struct ErlangPeerBenchmark {
    struct Result {
        var p50Microseconds: Double
        var p99Microseconds: Double
        var sequentialPerSecond: Double
        var concurrentPerSecond: Double
    }

    let sequentialCalls: Int
    let callers: Int
    let seconds: Int

    static var isAvailable: Bool { which("erl") != nil && which("erlc") != nil }

    func run() throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-erlang-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.source.write(to: directory.appendingPathComponent("troupe_ping.erl"), atomically: true, encoding: .utf8)
        _ = try Self.execute(["erlc", "-o", directory.path, directory.appendingPathComponent("troupe_ping.erl").path])

        let suffix = String(UInt32.random(in: 0 ... .max), radix: 36)
        let cookie = "troupe" + suffix
        let host = try Self.execute(["hostname", "-s"]).trimmingCharacters(in: .whitespacesAndNewlines)
        let pong = Process()
        pong.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        pong.arguments = ["erl", "-sname", "pong" + suffix, "-setcookie", cookie, "-noshell", "-pa", directory.path]
        pong.standardOutput = FileHandle.nullDevice
        pong.standardError = FileHandle.nullDevice
        try pong.run()
        // The pong VM is told to stop over the distribution when the run ends (troupe_ping:run/1); whatever is left
        // after a few seconds — it ignores SIGTERM, and `terminate()` reaches /usr/bin/env, not the VM — is killed
        // by its unique node name, and epmd, started for the run, is stopped when no node is registered any more.
        defer { Self.stop(pong, name: "pong" + suffix) }
        let output = try Self.execute([
            "erl", "-sname", "ping" + suffix, "-setcookie", cookie, "-noshell", "-pa", directory.path,
            "-run", "troupe_ping", "run", "pong\(suffix)@\(host)", String(sequentialCalls), String(callers), String(seconds),
        ])
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("erlang ") }) else {
            throw BenchmarkError("the Erlang peer printed no result: \(output.prefix(500))")
        }
        let numbers = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard numbers.count == 4 else { throw BenchmarkError("unexpected Erlang peer output: \(line)") }
        return Result(p50Microseconds: numbers[0], p99Microseconds: numbers[1], sequentialPerSecond: numbers[2], concurrentPerSecond: numbers[3])
    }

    /// Waits up to 5 s for the peer VM to stop, then kills what runs under its node name; stops epmd if no
    /// node is registered with it any more (`epmd -kill` refuses while one is).
    static func stop(_ process: Process, name: String) {
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning, ContinuousClock.now < deadline { usleep(50_000) }
        _ = try? Command.run(["pkill", "-KILL", "-f", "sname \(name) "], timeout: .seconds(10))
        if process.isRunning { process.terminate() }
        _ = try? Command.run(["epmd", "-kill"], timeout: .seconds(10))
    }

    @discardableResult
    static func execute(_ arguments: [String]) throws -> String {
        try Command.run(arguments)
    }

    static func which(_ binary: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(binary)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static let source = #"""
-module(troupe_ping).
-export([echo/0, run/1]).

%% Peer of `troupe bench actors`: Erlang/OTP distribution ping-pong between two local nodes.
echo() ->
    receive
        {From, Msg} -> From ! Msg, echo();
        stop -> ok
    end.

run([PongNode, SeqText, CallersText, SecondsText]) ->
    Pong = list_to_atom(PongNode),
    pong = wait_for(Pong, 50),
    Seq = list_to_integer(SeqText),
    Callers = list_to_integer(CallersText),
    Seconds = list_to_integer(SecondsText),
    Echo = spawn(Pong, troupe_ping, echo, []),
    [round_trip(Echo, I) || I <- lists:seq(1, 2000)],
    Sorted = lists:sort([round_trip(Echo, I) || I <- lists:seq(1, Seq)]),
    P50 = lists:nth(max(1, Seq div 2), Sorted),
    P99 = lists:nth(max(1, Seq * 99 div 100), Sorted),
    Self = self(),
    Deadline = erlang:monotonic_time(millisecond) + Seconds * 1000,
    Start = erlang:monotonic_time(nanosecond),
    [spawn(fun() ->
               E = spawn(Pong, troupe_ping, echo, []),
               Self ! {done, loop(E, Deadline, 0)}
           end) || _ <- lists:seq(1, Callers)],
    Total = lists:sum([receive {done, N} -> N end || _ <- lists:seq(1, Callers)]),
    Elapsed = (erlang:monotonic_time(nanosecond) - Start) / 1.0e9,
    io:format("erlang ~.3f ~.3f ~.1f ~.1f~n", [P50 / 1000, P99 / 1000, 1.0e9 * Seq / lists:sum(Sorted), Total / Elapsed]),
    rpc:call(Pong, init, stop, [], 5000),
    halt().

wait_for(_, 0) -> pang;
wait_for(Node, N) ->
    case net_adm:ping(Node) of
        pong -> pong;
        pang -> timer:sleep(100), wait_for(Node, N - 1)
    end.

round_trip(Echo, I) ->
    T0 = erlang:monotonic_time(nanosecond),
    Echo ! {self(), I},
    receive I -> ok end,
    erlang:monotonic_time(nanosecond) - T0.

loop(Echo, Deadline, N) ->
    case erlang:monotonic_time(millisecond) < Deadline of
        true -> Echo ! {self(), N}, receive N -> ok end, loop(Echo, Deadline, N + 1);
        false -> N
    end.
"""#
}

struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
