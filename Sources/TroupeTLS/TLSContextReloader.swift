import Foundation
public import Logging
public import NIOSSL
public import ServiceLifecycle
import Synchronization
import TroupeCore

/// A TLS context that follows its files: ``run()`` checks the certificate, key and CA files every
/// `interval` and, when one changed and the new set loads, swaps the context. New connections use
/// ``context``; established ones keep theirs. A set that does not load (half-written files, a key that
/// does not match) is logged and the previous context kept.
public final class TLSContextReloader: Service, Sendable {
    /// The settings whose files are followed.
    public let settings: TLSSettings
    private let make: @Sendable (TLSSettings) throws -> NIOSSLContext
    private let interval: Duration
    private let logger: Logger
    private let state: Guarded<(context: NIOSSLContext, stamps: [Date?])>

    /// - Throws: ``TLSError`` when the files do not load now (start-up fails with what to fix).
    public init(settings: TLSSettings, interval: Duration = .seconds(10), logger: Logger,
                make: @escaping @Sendable (TLSSettings) throws -> NIOSSLContext) throws {
        self.settings = settings
        self.make = make
        self.interval = interval
        self.logger = logger
        let stamps = Self.stamps(settings)
        self.state = Guarded((try make(settings), stamps))
    }

    /// The context for the next connection.
    public var context: NIOSSLContext { state.withLock { $0.context } }

    /// Reloads when a file changed since the last load. Returns whether the context was replaced.
    /// - Throws: ``TLSError`` when the changed files do not load (the previous context stays).
    @discardableResult
    public func reloadIfChanged() throws -> Bool {
        let stamps = Self.stamps(settings)
        guard stamps != state.withLock({ $0.stamps }) else { return false }
        let context = try make(settings)
        state.withLock { $0 = (context, stamps) }
        logger.info("reloaded TLS certificates", metadata: ["tls.certificate": "\(settings.certificate ?? "-")"])
        return true
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: self.interval)
                do { try self.reloadIfChanged() } catch {
                    self.logger.warning("TLS certificates changed but do not load; keeping the previous ones", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    private static func stamps(_ settings: TLSSettings) -> [Date?] {
        [settings.certificate, settings.privateKey, settings.ca].map { path in
            guard let path else { return nil }
            return (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate]) as? Date
        }
    }
}
