// swift-tools-version:6.1
import PackageDescription

let strictSwift6: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "troupe",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "TroupeCore", targets: ["TroupeCore"]),
        .library(name: "TroupeActors", targets: ["TroupeActors"]),
        .library(name: "Troupe", targets: ["Troupe"]),
        .library(name: "TroupeBSON", targets: ["TroupeBSON"]),
        .library(name: "TroupeMongo", targets: ["TroupeMongo"]),
        .library(name: "TroupeStore", targets: ["TroupeStore"]),
        .library(name: "TroupeBus", targets: ["TroupeBus"]),
        .library(name: "TroupeSaga", targets: ["TroupeSaga"]),
        .library(name: "TroupeGateway", targets: ["TroupeGateway"]),
        .library(name: "TroupeTLS", targets: ["TroupeTLS"]),
        // Public APIs above take their types (GatewayServices takes SessionStore, IdempotencyStore and RateLimiter;
        // RedisBusEngine takes a RedisClient), so they are products too.
        .library(name: "TroupeNIO", targets: ["TroupeNIO"]),
        .library(name: "TroupeRESP", targets: ["TroupeRESP"]),
        .library(name: "TroupeRedis", targets: ["TroupeRedis"]),
        .library(name: "TroupeCache", targets: ["TroupeCache"]),
        .library(name: "TroupeEtcd", targets: ["TroupeEtcd"]),
        .library(name: "TroupeDiscovery", targets: ["TroupeDiscovery"]),
        // The bridges between the actor runtime and the stores / etcd (so that neither pulls in the runtime).
        .library(name: "TroupeActorsStore", targets: ["TroupeActorsStore"]),
        .library(name: "TroupeActorsEtcd", targets: ["TroupeActorsEtcd"]),
        .executable(name: "troupe", targets: ["troupe"]),
        .executable(name: "troupe-simulate", targets: ["troupe-simulate"]),
        .executable(name: "troupe-instructions", targets: ["troupe-instructions"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        .package(url: "https://github.com/apple/swift-service-context", from: "1.5.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.8.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0"),
        // `swift package generate-documentation` (the framework's DocC catalog: Sources/Troupe/Troupe.docc).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // Ids, backoff, deadlines, the binary Codable codec, the FSM helper. No NIO.
        .target(
            name: "TroupeCore",
            dependencies: [.product(name: "Metrics", package: "swift-metrics")],
            swiftSettings: strictSwift6
        ),
        // Small pieces shared by the modules that do I/O on NIO: the event-loop task executor.
        .target(
            name: "TroupeNIO",
            dependencies: ["TroupeCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSwift6
        ),
        // TLS settings, the handlers every link adds, certificate reloading, a development CA (swift-certificates).
        .target(
            name: "TroupeTLS",
            dependencies: [
                "TroupeCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // BSON: values, ordered documents, binary codec, Extended JSON v2, Codable. No NIO.
        .target(
            name: "TroupeBSON",
            dependencies: [],
            swiftSettings: strictSwift6
        ),
        // MongoDB driver: OP_MSG, SCRAM-SHA-256, topology and server selection, CRUD, cursors, sessions, transactions.
        .target(
            name: "TroupeMongo",
            dependencies: [
                "TroupeCore", "TroupeBSON", "TroupeTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceContextModule", package: "swift-service-context"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // DocumentStore: Codable collections over SQLite (embedded; the system's library, loaded at run time) and MongoDB;
        // the actor-state store on it.
        .target(
            name: "TroupeStore",
            dependencies: [
                "TroupeCore", "TroupeBSON", "TroupeMongo",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        // Event bus with RocketMQ semantics: embedded engine and Redis Streams engine.
        .target(
            name: "TroupeBus",
            dependencies: [
                "TroupeCore", "TroupeRESP", "TroupeRedis", "TroupeNIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "ServiceContextModule", package: "swift-service-context"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // Consistency toolkit on the actors: outbox in the actor's state, saga orchestrator actor.
        .target(
            name: "TroupeSaga",
            dependencies: [
                "TroupeCore", "TroupeBSON", "TroupeActors", "TroupeBus", "TroupeStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strictSwift6
        ),
        // The HTTP gateway (Hummingbird 2): JWT + sessions, limits, idempotency, problem+json, route table.
        .target(
            name: "TroupeGateway",
            dependencies: [
                "TroupeCore", "TroupeCache", "TroupeNIO", "TroupeTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceContextModule", package: "swift-service-context"),
            ],
            swiftSettings: strictSwift6
        ),
        // The reference system: catalog, inventory, accounts, orders, the place-order saga, gateway routes.
        .target(
            name: "TroupeShop",
            dependencies: [
                "TroupeCore", "TroupeBSON", "TroupeActors", "TroupeCache", "TroupeStore", "TroupeSaga", "TroupeGateway", "TroupeBus",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strictSwift6
        ),
        // RESP3 / RESP2 codec (NIOCore only).
        .target(
            name: "TroupeRESP",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSwift6
        ),
        // Redis client: connection, pipelining, pool, pub/sub, scripts, typed commands.
        .target(
            name: "TroupeRedis",
            dependencies: [
                "TroupeCore", "TroupeRESP", "TroupeNIO", "TroupeTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSwift6
        ),
        // Cache patterns, rate limiter, idempotency, sessions and locks: memory and Redis engines.
        .target(
            name: "TroupeCache",
            dependencies: [
                "TroupeCore", "TroupeRESP", "TroupeRedis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // Generated etcd v3 messages and gRPC stubs (scripts/generate-etcd).
        .target(
            name: "TroupeEtcdGenerated",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // etcd v3 client: KV, Txn, Lease (keep-alive), Watch (resume), endpoints failover, auth.
        .target(
            name: "TroupeEtcd",
            dependencies: [
                "TroupeCore", "TroupeEtcdGenerated", "TroupeTLS",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // Service registry and discovery, cluster membership over etcd (and in memory).
        .target(
            name: "TroupeDiscovery",
            dependencies: [
                "TroupeCore", "TroupeEtcd",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // Actor state on the document engines: DocumentActorStateStore (MongoDB or SQLite documents, the state a
        // real subdocument) and SQLiteActorStateStore (a table of its own) — the bridge from TroupeActors to TroupeStore.
        .target(
            name: "TroupeActorsStore",
            dependencies: ["TroupeActors", "TroupeStore", "TroupeBSON", "TroupeCore"],
            swiftSettings: strictSwift6
        ),
        // Membership and actor state in etcd: EtcdMembership, EtcdActorStateStore — the bridge from TroupeActors to
        // TroupeDiscovery and TroupeEtcd.
        .target(
            name: "TroupeActorsEtcd",
            dependencies: [
                "TroupeActors", "TroupeDiscovery", "TroupeEtcd", "TroupeCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // ClusterActorSystem, transport, virtual actors, placement, persistence.
        .target(
            name: "TroupeActors",
            dependencies: [
                "TroupeCore", "TroupeNIO", "TroupeTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "ServiceContextModule", package: "swift-service-context"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strictSwift6
        ),
        // Node assembly: configuration → ServiceGroup.
        .target(
            name: "Troupe",
            dependencies: [
                .product(name: "Configuration", package: "swift-configuration"),"TroupeActorsStore", "TroupeActorsEtcd", 
                "TroupeStore", "TroupeMongo", "TroupeBSON", "TroupeRedis", "TroupeTLS", "TroupeBus", "TroupeGateway", "TroupeCache", "TroupeSaga",
                .product(name: "NIOCore", package: "swift-nio"),
                "TroupeCore",
                "TroupeActors",
                "TroupeEtcd",
                "TroupeDiscovery",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSwift6
        ),
        // The demo workload (bank accounts) used by `troupe demo`.
        .target(
            name: "TroupeDemo",
            dependencies: ["TroupeActorsStore", 
                "TroupeCore", "TroupeActors", "Troupe", "TroupeStore", "TroupeShop", "TroupeGateway", "TroupeCache", "TroupeBus",
                "TroupeDiscovery", "TroupeRedis", "TroupeMongo",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // The fault-injection run behind `troupe chaos`; not a product.
        .target(
            name: "TroupeChaos",
            dependencies: ["TroupeActorsStore", 
                "Troupe", "TroupeCore", "TroupeActors", "TroupeTestSupport", "TroupeMongo", "TroupeStore", "TroupeGateway", "TroupeSaga",
                "TroupeDemo", "TroupeShop",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        // The deterministic simulation behind `troupe simulate`; not a product.
        .target(
            name: "TroupeSimulation",
            dependencies: [
                "TroupeCore", "TroupeActors", "TroupeSaga", "TroupeShop", "TroupeBus",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwift6
        ),
        // The simulation's process: every job on one seeded queue (its DefaultExecutorFactory).
        .executableTarget(
            name: "troupe-simulate",
            dependencies: ["TroupeSimulation", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSwift6
        ),
        // Callgrind's client requests (no-ops without valgrind's headers), for troupe-instructions.
        .target(name: "CTroupeCallgrind"),
        // Instructions per actor call under callgrind (scripts/instructions); a synchronous main, as valgrind
        // cannot run an async one (it dies in dispatch's main-thread sigsuspend).
        .executableTarget(
            name: "troupe-instructions",
            dependencies: ["CTroupeCallgrind", "TroupeActors", "TroupeCore", "TroupeTestSupport"],
            swiftSettings: strictSwift6
        ),
        // Benchmark suites behind `troupe bench`; not a product, so never in users' builds.
        .target(
            name: "TroupeBenchmarks",
            dependencies: [
                "TroupeCore", "TroupeActors", "TroupeTLS", "TroupeRESP", "TroupeRedis", "TroupeTestSupport", "TroupeEtcd", "TroupeMongo", "TroupeBSON", "TroupeBus",
                "TroupeGateway", "TroupeCache", "TroupeDemo", "TroupeShop",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "troupe",
            dependencies: [
                "Troupe", "TroupeActors", "TroupeDemo", "TroupeShop", "TroupeBenchmarks", "TroupeChaos", "TroupeTLS", "TroupeGateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // Launches real servers and in-process clusters for tests; reads the environment.
        .target(
            name: "TroupeTestSupport",
            dependencies: [
                "TroupeCore", "TroupeActors", "TroupeTLS",
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "ServiceContextModule", package: "swift-service-context"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeBSONTests",
            dependencies: ["TroupeBSON", "TroupeTestSupport"],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeMongoTests",
            dependencies: ["TroupeMongo", "TroupeBSON", "TroupeTestSupport", "TroupeTLS", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeStoreTests",
            dependencies: ["TroupeActorsStore", "TroupeStore", "TroupeMongo", "TroupeBSON", "TroupeActors", "TroupeCore", "TroupeTestSupport"],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeNIOTests",
            dependencies: ["TroupeNIO", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeBusTests",
            dependencies: ["TroupeRESP", "TroupeBus", "TroupeRedis", "TroupeCore", "TroupeTestSupport", .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeSagaTests",
            dependencies: ["TroupeActorsStore", "TroupeSaga", "TroupeBus", "TroupeActors", "TroupeCore", "TroupeStore", "TroupeMongo", "TroupeRedis", "TroupeTestSupport"],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeGatewayTests",
            dependencies: [
                "TroupeGateway", "TroupeCache", "TroupeCore", "TroupeActors", "TroupeTestSupport", "TroupeTLS",
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeShopTests",
            dependencies: ["TroupeActorsStore", 
                "TroupeShop", "TroupeGateway", "TroupeStore", "TroupeCache", "TroupeActors", "TroupeBus", "TroupeTestSupport", "TroupeCore", "TroupeSaga",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceContextModule", package: "swift-service-context"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeRESPTests",
            dependencies: ["TroupeRESP", "TroupeTestSupport", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOTestUtils", package: "swift-nio")],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeRedisTests",
            dependencies: [
                "TroupeRedis", "TroupeRESP", "TroupeNIO", "TroupeTestSupport", "TroupeTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeCacheTests",
            dependencies: ["TroupeCache", "TroupeRedis", "TroupeCore", "TroupeTestSupport", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeEtcdTests",
            dependencies: ["TroupeEtcd", "TroupeCore", "TroupeTestSupport", "TroupeTLS", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeDiscoveryTests",
            dependencies: ["TroupeActorsEtcd", 
                "TroupeDiscovery", "TroupeEtcd", "TroupeActors", "TroupeCore", "TroupeTestSupport",
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeTLSTests",
            dependencies: [
                "TroupeTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeCoreTests",
            dependencies: ["TroupeCore", "TroupeTestSupport"],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeActorsTests",
            dependencies: [
                "TroupeCore", "TroupeActors", "TroupeNIO", "TroupeTestSupport", "TroupeTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceContextModule", package: "swift-service-context"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "TroupeTests",
            dependencies: ["TroupeDiscovery", 
                "Troupe", "TroupeDemo", "TroupeActors", "TroupeMongo", "TroupeBSON", "TroupeCore", "TroupeTestSupport", "TroupeShop",
                "TroupeBus", "TroupeGateway", "TroupeEtcd", "TroupeCache", "TroupeSaga", "TroupeStore", "TroupeActorsStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: strictSwift6
        ),
    ]
)

// libFuzzer targets (scripts/fuzz): built only when TROUPE_FUZZ is set, with -sanitize=fuzzer from the
// command line, into a build directory of their own.
if Context.environment["TROUPE_FUZZ"] != nil {
    package.targets.append(.executableTarget(
        name: "TroupeFuzz",
        dependencies: [
            "Troupe", "TroupeBSON", "TroupeRESP", "TroupeActors", "TroupeBus", "TroupeCore", "TroupeGateway", "TroupeMongo",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ],
        path: "Fuzz/TroupeFuzz",
        swiftSettings: strictSwift6 + [.unsafeFlags(["-parse-as-library"])]
    ))
    package.products.append(.executable(name: "troupe-fuzz", targets: ["TroupeFuzz"]))
}
