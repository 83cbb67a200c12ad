import Foundation
import GRPCCore
import TroupeCore
import TroupeEtcdGenerated
import Logging

/// Internal: the server cancelled a watch because the start revision was compacted.
struct WatchCompacted: Error {
    var compactRevision: Int64
}

/// Internal: the caller's handler threw; the watch ends with that error.
struct WatchHandlerFailure: Error {
    var error: any Error
}

extension EtcdClient {
    /// Watches `key` (or every key under it with `prefix`) and calls `handler` with every change,
    /// until the task is cancelled or `handler` throws.
    ///
    /// After a broken stream it resumes from the revision after the last one delivered, so no event
    /// is lost or repeated. If that revision was compacted in the meantime it delivers
    /// ``EtcdWatchUpdate/resynced(_:revision:compactedAt:)`` with the current state and goes on
    /// from there.
    /// - Parameter key: the key watched, or the prefix with `prefix`.
    /// - Parameter prefix: watch every key under `key`.
    /// - Parameter fromRevision: the first revision to deliver; `nil` starts with changes after now.
    /// - Parameter handler: called with each update, in order; throwing ends the watch.
    public func watch(
        _ key: String, prefix: Bool = false, fromRevision: Int64? = nil,
        handler: @escaping @Sendable (EtcdWatchUpdate) async throws -> Void
    ) async throws {
        let next = Locked<Int64>(fromRevision ?? 0)
        var backoff = Backoff(initial: configuration.retryDelay, maximum: .seconds(2))
        let watches = self.watches
        while !Task.isCancelled {
            do {
                let metadata = try await metadata()
                var create = Etcdserverpb_WatchCreateRequest()
                create.key = Data(key.utf8)
                if prefix { create.rangeEnd = Data(Self.prefixEnd(key)) }
                create.progressNotify = true
                let start = next.value
                create.startRevision = start
                var request = Etcdserverpb_WatchRequest()
                request.createRequest = create
                let message = request
                try await watches.watch(metadata: metadata) { writer in
                    try await writer.write(message)
                    // Keep the request stream open for as long as the watch runs.
                    while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
                } onResponse: { response in
                    for try await update in response.messages {
                        if update.canceled {
                            if update.compactRevision > 0 { throw WatchCompacted(compactRevision: update.compactRevision) }
                            throw EtcdError(.watchCanceled, "the server cancelled the watch: \(update.cancelReason)")
                        }
                        let revision = update.header.revision
                        if update.created {
                            // Watching "from now": pin the resume point to the revision the watch started at.
                            if start == 0 { next.withLock { $0 = max($0, revision + 1) } }
                            continue
                        }
                        let events = update.events.map { event -> EtcdEvent in
                            event.type == .delete
                                ? .delete(key: String(decoding: event.kv.key, as: UTF8.self), revision: event.kv.modRevision)
                                : .put(EtcdKeyValue(event.kv))
                        }
                        if !events.isEmpty {
                            do {
                                try await handler(.events(events, revision: revision))
                            } catch {
                                throw WatchHandlerFailure(error: error)
                            }
                            next.withLock { $0 = max($0, (events.last?.revision ?? revision) + 1) }
                        } else {
                            // A progress notification: everything up to `revision` has been seen.
                            next.withLock { $0 = max($0, revision + 1) }
                        }
                    }
                    throw EtcdError(.unavailable, "the watch stream ended")
                }
            } catch let compacted as WatchCompacted {
                let snapshot = try await range(key, prefix: prefix)
                try await handler(.resynced(snapshot.kvs, revision: snapshot.revision, compactedAt: compacted.compactRevision))
                next.withLock { $0 = snapshot.revision + 1 }
                backoff.reset()
            } catch let failure as WatchHandlerFailure {
                throw failure.error
            } catch is CancellationError {
                return
            } catch let error as EtcdError where error.code == .watchCanceled || error.code == .authenticationFailed {
                throw error
            } catch {
                if Task.isCancelled { return }
                if let rpc = error as? RPCError, rpc.code == .cancelled, Task.isCancelled { return }
                let delay = backoff.next()
                configuration.logger.info("watch stream failed, resuming", metadata: [
                    "etcd.watch.key": "\(key)", "etcd.watch.next_revision": "\(next.value)",
                    "etcd.retry.delay_ms": "\(Int(delay.seconds * 1000))", "error": "\(String(reflecting: error))",
                ])
                try? await Task.sleep(for: delay)
            }
        }
    }
}
