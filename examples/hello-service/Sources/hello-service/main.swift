import Hello
import Logging

// Embedded engines: `swift run hello-service` (HTTP on 127.0.0.1:8080).
// Real servers:     `swift run hello-service --config hello.json` (etcd, MongoDB, Redis; see README.md).
LoggingSystem.bootstrap(StreamLogHandler.standardError)
try await Hello.service().run()
