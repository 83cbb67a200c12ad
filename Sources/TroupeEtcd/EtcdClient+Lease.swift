import Foundation
import GRPCCore
import TroupeCore
import TroupeEtcdGenerated
import Logging

extension EtcdClient {
    /// Grants a lease of `ttl` (whole seconds, at least 1).
    public func grantLease(ttl: Duration) async throws -> EtcdLease {
        var request = Etcdserverpb_LeaseGrantRequest()
        request.ttl = max(1, ttl.components.seconds)
        let leases = self.leases
        let message = request
        let response = try await call("lease grant") { metadata, options in
            try await leases.leaseGrant(message, metadata: metadata, options: options)
        }
        guard response.error.isEmpty else { throw EtcdError(.server, "lease grant: \(response.error)") }
        return EtcdLease(id: response.id, ttl: .seconds(response.ttl))
    }

    /// Revokes a lease; its keys are deleted.
    /// - Parameter id: the lease's id.
    /// - Parameter timeout: instead of the configured call timeout (shutdown paths give up sooner: the lease
    ///   expires by itself anyway).
    public func revokeLease(_ id: Int64, timeout: Duration? = nil) async throws {
        var request = Etcdserverpb_LeaseRevokeRequest()
        request.id = id
        let leases = self.leases
        let message = request
        _ = try await call("lease revoke", timeout: timeout) { metadata, options in
            try await leases.leaseRevoke(message, metadata: metadata, options: options)
        }
    }

    /// The remaining time to live of a lease, or `nil` when it does not exist any more.
    public func timeToLive(ofLease id: Int64) async throws -> Duration? {
        var request = Etcdserverpb_LeaseTimeToLiveRequest()
        request.id = id
        let leases = self.leases
        let message = request
        let response = try await call("lease ttl") { metadata, options in
            try await leases.leaseTimeToLive(message, metadata: metadata, options: options)
        }
        return response.ttl < 0 ? nil : .seconds(response.ttl)
    }

    /// Keeps `lease` alive over the bidirectional keep-alive stream, refreshing every third of its
    /// TTL, until the task is cancelled. Streams that break are reopened (on any endpoint) as long as
    /// the lease can still be alive.
    /// - Throws: ``EtcdError/Code/leaseExpired`` when the lease is gone (expired on the server, or no
    ///   refresh succeeded within its TTL): keys attached to it have been deleted.
    /// - Parameter lease: the lease to keep alive.
    /// - Parameter untilRefused: keep trying through an outage of any length until the server itself says the
    ///   lease expired (a restarted etcd extends its leases, so a lease not refreshed for its TTL may well be
    ///   alive). For registrations, which are better kept than recreated. Locks and leadership leave it off:
    ///   they must stop believing they hold something once it may have expired.
    /// - Parameter onRenewed: called with the TTL the server granted on every renewal it acknowledged.
    public func keepAlive(_ lease: EtcdLease, untilRefused: Bool, onRenewed: (@Sendable (Duration) -> Void)? = nil) async throws {
        try await keepAlive(lease, giveUpLocally: !untilRefused, onRenewed: onRenewed)
    }

    /// Keeps `lease` alive until the task is cancelled; gives up (throws) once the lease has expired locally.
    public func keepAlive(_ lease: EtcdLease) async throws {
        try await keepAlive(lease, giveUpLocally: true, onRenewed: nil)
    }

    private func keepAlive(_ lease: EtcdLease, giveUpLocally: Bool, onRenewed: (@Sendable (Duration) -> Void)?) async throws {
        let interval = max(lease.ttl / 3, .milliseconds(100))
        let expiresAt = Locked(ContinuousClock.now + lease.ttl)
        let leases = self.leases
        var failures = LogThrottle()
        while !Task.isCancelled {
            do {
                let metadata = try await metadata()
                try await leases.leaseKeepAlive(metadata: metadata) { writer in
                    var request = Etcdserverpb_LeaseKeepAliveRequest()
                    request.id = lease.id
                    while !Task.isCancelled {
                        try await writer.write(request)
                        try await Task.sleep(for: interval)
                    }
                } onResponse: { response in
                    for try await message in response.messages {
                        guard message.ttl > 0 else {
                            throw EtcdError(.leaseExpired, "lease \(lease.id) expired on the server")
                        }
                        expiresAt.withLock { $0 = ContinuousClock.now + .seconds(message.ttl) }
                        onRenewed?(.seconds(message.ttl))
                    }
                }
            } catch let error as EtcdError where error.code == .leaseExpired {
                throw error
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                guard !giveUpLocally || ContinuousClock.now < expiresAt.value else {
                    throw EtcdError(.leaseExpired, "lease \(lease.id) could not be refreshed within its TTL", underlying: error)
                }
                if let held = failures.admit(now: .now) {
                    configuration.logger.info("lease keep-alive stream failed, reopening", metadata: [
                        "etcd.lease.id": "\(lease.id)", "error": "\(String(reflecting: error))", "log.suppressed": "\(held)",
                    ])
                }
                try? await Task.sleep(for: configuration.retryDelay)
            }
        }
    }
}
