// swift-tools-version:6.1
import PackageDescription

// A service of its own on Troupe: two virtual actor types, a bus consumer and two HTTP routes.
let package = Package(
    name: "hello-service",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "troupe", path: "../.."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // The service's actors and routes (a library, so that its test can start it too).
        .target(
            name: "Hello",
            dependencies: [
                .product(name: "Troupe", package: "troupe"),
                .product(name: "TroupeActors", package: "troupe"),
                .product(name: "TroupeBus", package: "troupe"),
                .product(name: "TroupeSaga", package: "troupe"),
                .product(name: "TroupeGateway", package: "troupe"),
            ]
        ),
        .executableTarget(
            name: "hello-service",
            dependencies: ["Hello", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "HelloTests",
            dependencies: ["Hello", .product(name: "Troupe", package: "troupe"), .product(name: "Logging", package: "swift-log")]
        ),
    ]
)
