import NIOCore
import TroupeNIO
import Synchronization
import TroupeCore

/// One TCP connection to another node, usable from any thread.
///
/// Frames sent from other threads are encoded straight into a shared outbox; the first frame of a
/// batch schedules one event-loop task that writes and flushes everything queued by then. Under
/// load many calls or replies thus cost one task and one syscall instead of one each.
final class PeerConnection: Sendable {
    enum Direction: Sendable { case outbound, inbound }

    let id: UInt64
    let channel: any Channel
    /// Calls arriving on this connection are served by tasks preferring the connection's event loop.
    let executor: EventLoopTaskExecutor
    let direction: Direction
    /// The node we dialed (outbound), known before the handshake.
    let expectedPeer: NodeID?
    /// The remote address this inbound connection counts against while unauthenticated (nil: outbound).
    let admission: String?
    /// Set once the connection no longer counts as unauthenticated (established or closed).
    let admissionReleased = Atomic<Bool>(false)
    /// The largest frame accepted now (handshake-sized until the peer authenticated).
    let frameLimit: FrameLimit
    private let state: Guarded<NodeID?>
    private let establishedPromise: EventLoopPromise<NodeID>
    private let outbox: Guarded<Outbox>

    private struct Outbox {
        var buffer: ByteBuffer
        var drainScheduled = false
    }

    init(id: UInt64, channel: any Channel, direction: Direction, expectedPeer: NodeID?, admission: String? = nil, maxFrameSize: Int) {
        self.id = id
        self.admission = admission
        self.frameLimit = FrameLimit(authenticated: maxFrameSize)
        self.channel = channel
        self.executor = EventLoopTaskExecutor(channel.eventLoop)
        self.direction = direction
        self.expectedPeer = expectedPeer
        self.state = Guarded(nil)
        self.outbox = Guarded(Outbox(buffer: channel.allocator.buffer(capacity: 4096)))
        self.establishedPromise = channel.eventLoop.makePromise(of: NodeID.self)
        channel.closeFuture.whenComplete { [establishedPromise] _ in
            establishedPromise.fail(ActorSystemError(.connectionClosed, "connection closed during the handshake"))
        }
    }

    /// The authenticated peer, once the handshake completed.
    var peer: NodeID? { state.withLock { $0 } }

    var peerDescription: String {
        if let peer { return peer.description }
        if let expectedPeer { return expectedPeer.description }
        return "inbound peer"
    }

    func markEstablished(peer: NodeID) {
        state.withLock { $0 = peer }
        establishedPromise.succeed(peer)
    }

    /// Fails a pending handshake with the reason the connection is closing.
    func handshakeFailed(_ reason: ActorSystemError) {
        establishedPromise.fail(reason)
    }

    /// Completes when the handshake succeeds; fails when the connection closes first.
    var established: EventLoopFuture<NodeID> { establishedPromise.futureResult }

    func send(_ envelope: WireEnvelope) {
        let scheduleDrain = outbox.withLock { outbox -> Bool in
            envelope.encodeFrame(into: &outbox.buffer)
            guard !outbox.drainScheduled else { return false }
            outbox.drainScheduled = true
            return true
        }
        guard scheduleDrain else { return }
        channel.eventLoop.execute { [self] in
            let batch = outbox.withLock { outbox -> ByteBuffer in
                outbox.drainScheduled = false
                let batch = outbox.buffer
                outbox.buffer = channel.allocator.buffer(capacity: max(4096, batch.readableBytes))
                return batch
            }
            channel.writeAndFlush(batch, promise: nil)
        }
    }

    func close() {
        channel.close(promise: nil)
    }
}
