import Foundation
import NIOCore
import Testing
import TroupeRESP
@testable import TroupeRedis
import TroupeTestSupport
import TroupeNIO

@Suite("Redis client against a real server", .enabled(if: redisAvailable, "\(redisMissing)"))
struct RedisClientTests {
    @Test("a caller running on one of the client's event loops always gets the first connection on that loop")
    func loopAffinity() async throws {
        try await withRedis { _, redis in
            for _ in 0..<4 {
                let executor = redis.nextExecutor()
                let (sameLoop, sameConnection, reply) = try await withTaskExecutorPreference(executor) { () async throws -> (Bool, Bool, String?) in
                    let connection = try await redis.connection()
                    let sameLoop = connection.channel.eventLoop === executor.eventLoop && executor.eventLoop.inEventLoop
                    var sameConnection = true
                    for _ in 0..<4 { sameConnection = try await redis.connection() === connection && sameConnection }
                    try await redis.set("affinity", to: "ok")
                    return (sameLoop, sameConnection, try await redis.getString("affinity"))
                }
                #expect(sameLoop)
                #expect(sameConnection, "commands from one loop share one connection, so they leave in one write")
                #expect(reply == "ok")
            }
            // Executors are handed out in turn over the loops, whatever else the client does meanwhile.
            let executors = (0..<System.coreCount).map { _ in redis.nextExecutor().eventLoop }
            #expect(Set(executors.map { ObjectIdentifier($0 as AnyObject) }).count == System.coreCount)
            // From the cooperative pool, round robin over the whole pool: its connections are spread over the loops.
            var loops = Set<ObjectIdentifier>()
            for _ in 0..<8 { loops.insert(ObjectIdentifier(try await redis.connection().channel.eventLoop as AnyObject)) }
            #expect(loops.count == min(redis.configuration.poolSize, System.coreCount))
        }
    }

    @Test("strings and keys: SET options, GET, MGET/MSET, INCRBY, EXISTS, DEL, PEXPIRE/PTTL")
    func stringsAndKeys() async throws {
        try await withRedis { _, redis in
            #expect(try await redis.set("a", to: "1"))
            #expect(try await redis.getString("a") == "1")
            #expect(try await !redis.set("a", to: "2", options: .init(condition: .ifNotExists)))
            #expect(try await redis.set("a", to: "3", options: .init(condition: .ifExists)))
            #expect(try await redis.increment("a", by: 10) == 13)
            try await redis.multiSet([("b", "x"), ("c", ByteBuffer(bytes: [0, 255]))])
            let values = try await redis.multiGet(["a", "b", "c", "missing"])
            #expect(values.map { $0.map { Array(buffer: $0) } } == [Array("13".utf8), Array("x".utf8), [0, 255], nil])
            #expect(try await redis.exists(["a", "b", "missing"]) == 2)
            #expect(try await redis.timeToLive("a") == .persistent)
            #expect(try await redis.expire("a", after: .seconds(100)))
            guard case .expires(let ttl) = try await redis.timeToLive("a") else { Issue.record("no TTL"); return }
            #expect(ttl > .seconds(90) && ttl <= .seconds(100))
            #expect(try await redis.set("t", to: "v", options: .init(expiry: .milliseconds(50))))
            try await Task.sleep(for: .milliseconds(120))
            #expect(try await redis.get("t") == nil)
            #expect(try await redis.delete(["a", "b", "c"]) == 3)
            #expect(try await redis.timeToLive("a") == .missing)
            // A server error carries its text, and the connection keeps working.
            _ = try await redis.push(["x"], to: "list")
            await #expect(throws: RedisError.self) { try await redis.increment("list") }
            do {
                _ = try await redis.increment("list")
            } catch let error as RedisError {
                #expect(error.code == .server)
                #expect(error.serverErrorPrefix == "WRONGTYPE")
                #expect(!error.description.contains("WRONGTYPE"), "server text stays out of description")
            }
            #expect(try await redis.listLength("list") == 1)
        }
    }

    @Test("hashes, lists, sets and sorted sets")
    func collections() async throws {
        try await withRedis { _, redis in
            #expect(try await redis.hashSet("h", [("f1", "v1"), ("f2", 2)]) == 2)
            #expect(try await redis.hashIncrement("h", field: "f2", by: 5) == 7)
            #expect(try await redis.hashGet("h", field: "f1").map { String(buffer: $0) } == "v1")
            let all = try await redis.hashGetAll("h")
            #expect(all.mapValues { String(buffer: $0) } == ["f1": "v1", "f2": "7"])
            #expect(try await redis.hashDelete("h", fields: ["f1", "nope"]) == 1)

            #expect(try await redis.push(["a", "b", "c"], to: "l") == 3)
            #expect(try await redis.push(["z"], to: "l", atFront: true) == 4)
            #expect(try await redis.listRange("l", from: 0, to: -1).map { String(buffer: $0) } == ["z", "a", "b", "c"])
            #expect(try await redis.pop("l").map { String(buffer: $0) } == "z")
            #expect(try await redis.pop("l", fromFront: false).map { String(buffer: $0) } == "c")

            #expect(try await redis.setAdd("s", ["x", "y", "x"]) == 2)
            #expect(try await redis.setContains("s", "y"))
            #expect(try await redis.setMembers("s") == ["x", "y"])
            #expect(try await redis.setRemove("s", ["x"]) == 1)

            #expect(try await redis.sortedSetAdd("z", [(1, "one"), (2.5, "two"), (3, "three")]) == 3)
            #expect(try await redis.sortedSetScore("z", "two") == 2.5)
            let range = try await redis.sortedSetRangeByScore("z", min: 2, max: 10)
            #expect(range.map(\.0) == ["two", "three"])
            #expect(range.map(\.1) == [2.5, 3])
            #expect(try await redis.sortedSetRemove("z", ["one"]) == 1)
            #expect(try await redis.sortedSetCount("z") == 2)
        }
    }

    @Test("pipelining 10,000 commands: every reply matches its request")
    func pipelining() async throws {
        try await withRedis { _, redis in
            let commands: [[any RESPArgument]] = (0..<10_000).map { ["SET", "p\($0)", $0] }
            let replies = try await redis.pipeline(commands)
            #expect(replies.count == 10_000)
            #expect(replies.allSatisfy { $0.string == "OK" })
            let reads = try await redis.pipeline((0..<10_000).map { ["GET", "p\($0)"] })
            #expect(reads.enumerated().allSatisfy { $0.element.string == String($0.offset) })
            // And 10,000 concurrent single commands over the pool.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<10_000 {
                    group.addTask {
                        let value = try await redis.increment("counter-\(index % 10)")
                        #expect(value >= 1)
                    }
                }
                try await group.waitForAll()
            }
            let counters = try await redis.multiGet((0..<10).map { "counter-\($0)" })
            #expect(counters.compactMap { $0.flatMap { Int(String(buffer: $0)) } }.reduce(0, +) == 10_000)
        }
    }

    @Test("MULTI/EXEC transactions run atomically and report queueing errors")
    func transactions() async throws {
        try await withRedis { _, redis in
            let results = try await redis.transaction([["INCR", "tx"], ["INCR", "tx"], ["GET", "tx"]])
            #expect(results.map(\.string) == ["1", "2", "2"])
            await #expect(throws: RedisError.self) { try await redis.transaction([["INCR", "tx"], ["NOSUCHCOMMAND"]]) }
            #expect(try await redis.getString("tx") == "2", "a rejected transaction changes nothing")
        }
    }

    @Test("Lua scripts run by SHA and recover from NOSCRIPT after SCRIPT FLUSH")
    func scripts() async throws {
        try await withRedis { _, redis in
            let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            #expect(try await redis.evaluate(script, keys: ["n"], arguments: [5]).int == 5)
            try await redis.send(["SCRIPT", "FLUSH"])
            #expect(try await redis.evaluate(script, keys: ["n"], arguments: [2]).int == 7)
            #expect(try await redis.send(["SCRIPT", "EXISTS", script.sha1]).array?.first?.int == 1)
        }
    }

    @Test("streams: XADD, consumer groups, XREADGROUP, XPENDING, XAUTOCLAIM, XACK, XTRIM, XINFO")
    func streams() async throws {
        try await withRedis { _, redis in
            #expect(try await redis.streamCreateGroup("orders", group: "billing", startingAt: "0"))
            #expect(try await !redis.streamCreateGroup("orders", group: "billing"))
            for index in 0..<5 { _ = try await redis.streamAdd("orders", fields: [("n", index)]) }
            #expect(try await redis.streamLength("orders") == 5)
            let read = try await redis.streamReadGroup(group: "billing", consumer: "c1", streams: [("orders", ">")], count: 3)
            let entries = try #require(read["orders"])
            #expect(entries.map { $0.fields["n"].map { String(buffer: $0) } } == ["0", "1", "2"])
            let pending = try await redis.streamPending("orders", group: "billing")
            #expect(pending.count == 3 && pending.allSatisfy { $0.consumer == "c1" && $0.deliveries == 1 })
            #expect(try await redis.streamAcknowledge("orders", group: "billing", ids: [entries[0].id]) == 1)
            try await Task.sleep(for: .milliseconds(30))
            let claimed = try await redis.streamAutoClaim("orders", group: "billing", consumer: "c2", minIdle: .milliseconds(10))
            #expect(claimed.entries.map(\.id) == Array(entries.dropFirst()).map(\.id))
            let groups = try await redis.streamGroups("orders")
            #expect(groups.first?["name"]?.string == "billing")
            #expect(groups.first?["pending"]?.int == 2)
            let empty = try await redis.streamReadGroup(
                group: "billing", consumer: "c1", streams: [("orders", ">")], count: 10, block: .milliseconds(50)
            )
            #expect(empty["orders"]?.count ?? 0 == 2, "the two never-delivered entries")
            _ = try await redis.streamTrim("orders", maxLength: 1, approximate: false)
            #expect(try await redis.streamLength("orders") == 1)
        }
    }

    @Test("pub/sub: channel and pattern subscriptions receive published messages")
    func pubSub() async throws {
        try await withRedis { _, redis in
            let news = try await redis.subscribe(to: ["news", "sport"])
            let patterns = try await redis.subscribe(.patterns, to: ["ne*"])
            #expect(try await redis.publish("hello", to: "news") == 2)
            #expect(try await redis.publish("goal", to: "sport") == 1)
            let received = try await withDeadline(.seconds(5)) {
                var messages: [RedisMessage] = []
                for try await message in news {
                    messages.append(message)
                    if messages.count == 2 { break }
                }
                return messages
            }
            #expect(received.map(\.channel) == ["news", "sport"])
            #expect(received.map { String(buffer: $0.payload) } == ["hello", "goal"])
            let matched = try await withDeadline(.seconds(5)) {
                var iterator = patterns.makeAsyncIterator()
                return try await iterator.next()
            }
            #expect(matched?.pattern == "ne*" && matched?.channel == "news")
            await news.cancel()
            await patterns.cancel()
            try await Task.sleep(for: .milliseconds(50))
            #expect(try await redis.publish("late", to: "news") == 0, "closing the subscription unsubscribes")
        }
    }

    @Test("a server restart mid-traffic: the client reconnects and later commands succeed")
    func reconnect() async throws {
        try await withRedis(configure: { $0.commandTimeout = .seconds(3) }) { server, redis in
            try await redis.set("before", to: "1")
            try await withThrowingTaskGroup(of: Int.self) { group in
                group.addTask {
                    var failures = 0
                    let deadline = ContinuousClock.now + .seconds(2)
                    while ContinuousClock.now < deadline {
                        do { _ = try await redis.increment("traffic") } catch { failures += 1 }
                        try await Task.sleep(for: .milliseconds(2))
                    }
                    return failures
                }
                try await Task.sleep(for: .milliseconds(300))
                await server.stop()
                try await Task.sleep(for: .milliseconds(300))
                try await server.start()
                _ = try await group.next()
            }
            // The restarted server kept nothing (no persistence); the client works again.
            try await redis.set("after", to: "2")
            #expect(try await redis.getString("after") == "2")
            for _ in 0..<100 { _ = try await redis.increment("again") }
            #expect(try await redis.getString("again") == "100")
        }
    }

    @Test("failFastWhileDown: with the server gone, commands fail at once instead of waiting out their timeout; back, it is used again")
    func failFastWhileDown() async throws {
        for failFast in [true, false] {
            try await withRedis(configure: { $0.commandTimeout = .seconds(2); $0.failFastWhileDown = failFast }) { server, redis in
                try await redis.set("k", to: "1")
                await server.stop(signal: SIGKILL)
                // The first command finds the connection closed and a reconnect refused.
                _ = try? await redis.getString("k")
                let started = ContinuousClock.now
                await #expect(throws: RedisError.self) { _ = try await redis.getString("k") }
                let waited = ContinuousClock.now - started
                if failFast {
                    #expect(waited < .milliseconds(300), "failed fast: \(waited)")
                } else {
                    #expect(waited >= .milliseconds(1_500), "waited for a reconnection up to the timeout: \(waited)")
                }
                try await server.start()
                // Back: the next command after the backoff (at most 500 ms) connects again.
                let deadline = ContinuousClock.now + .seconds(5)
                var answered = false
                while !answered, ContinuousClock.now < deadline {
                    answered = (try? await redis.set("k", to: "2")) != nil
                    if !answered { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(answered, "the restarted server is used again")
            }
        }
    }

    @Test("AUTH: the right password connects, a wrong one fails at connect with a clear error")
    func authentication() async throws {
        let server = try await ServerProcess.redis(extraArguments: ["--requirepass", "s3cret-pass"])
        do {
            try await checkAuthentication(port: server.port)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    func checkAuthentication(port: Int) async throws {
        var good = try RedisConfiguration(url: "redis://:s3cret-pass@127.0.0.1:\(port)/2")
        good.clientName = "troupe-test"
        try await withRedisClient(good) { redis in
            try await redis.set("k", to: "v")
            #expect(try await redis.send(["CLIENT", "GETNAME"]).string == "troupe-test")
            #expect(try await redis.send(["CLIENT", "INFO"]).string?.contains("db=2") == true)
        }
        var bad = good
        bad.password = "wrong"
        bad.commandTimeout = .milliseconds(500)
        do {
            _ = try await RedisConnection.connect(bad)
            Issue.record("connected with a wrong password")
        } catch let error as RedisError {
            #expect(error.code == .connectFailed)
            #expect(error.serverErrorPrefix == "WRONGPASS")
        }
    }

    @Test("invalid configuration fails up front", arguments: [
        "http://localhost", "redis://host:notaport", "redis://host:70000", "redis://host/x",
    ])
    func invalidURL(url: String) {
        #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
    }
}

@Suite("Redis handshake variants", .enabled(if: redisAvailable, "\(redisMissing)"))
struct RedisHandshakeTests {
    @Test("a server without HELLO is spoken to in RESP2, authenticated with AUTH")
    func resp2Fallback() async throws {
        try await withRedis(serverArguments: ["--rename-command", "HELLO", "", "--requirepass", "resp2-pass"],
                            configure: { $0.password = "resp2-pass"; $0.clientName = "old-style" }) { _, redis in
            let connection = try await redis.connection()
            #expect(connection.protocolVersion == 2)
            try await redis.hashSet("h", [("a", "1"), ("b", "2")])
            #expect(try await redis.hashGetAll("h").mapValues { String(buffer: $0) } == ["a": "1", "b": "2"])
            #expect(try await redis.send(["CLIENT", "GETNAME"]).string == "old-style")
            #expect(try await redis.sortedSetAdd("z", [(1, "x"), (2, "y")]) == 2)
            #expect(try await redis.sortedSetRangeByScore("z", min: 0, max: 5).map(\.0) == ["x", "y"])
        }
    }

    @Test("an ACL user authenticates with HELLO AUTH and is limited by its rules")
    func aclUser() async throws {
        try await withRedis { server, admin in
            try await admin.send(["ACL", "SETUSER", "reader", "on", ">reader-pass", "~public:*", "+get", "+hello", "+ping"])
            try await admin.set("public:a", to: "visible")
            var configuration = try RedisConfiguration(url: "redis://reader:reader-pass@127.0.0.1:\(server.port)")
            configuration.poolSize = 1
            try await withRedisClient(configuration) { reader in
                #expect(try await reader.getString("public:a") == "visible")
                do {
                    try await reader.set("public:a", to: "changed")
                    Issue.record("the ACL allowed SET")
                } catch let error as RedisError {
                    #expect(error.serverErrorPrefix == "NOPERM")
                }
            }
        }
    }
}
