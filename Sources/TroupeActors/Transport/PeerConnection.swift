import NIOCore
import Synchronization

/// One TCP connection to another node, usable from any thread.
///
/// Frames are encoded by the caller and written without flushing; ``PeerHandler`` flushes once
/// per event-loop tick.
final class PeerConnection: Sendable {
    enum Direction: Sendable { case outbound, inbound }

    let id: UInt64
    let channel: any Channel
    let direction: Direction
    /// The node we dialed (outbound), known before the handshake.
    let expectedPeer: NodeID?
    private let state: Mutex<NodeID?>
    private let establishedPromise: EventLoopPromise<NodeID>

    init(id: UInt64, channel: any Channel, direction: Direction, expectedPeer: NodeID?) {
        self.id = id
        self.channel = channel
        self.direction = direction
        self.expectedPeer = expectedPeer
        self.state = Mutex(nil)
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
        var buffer = channel.allocator.buffer(capacity: 96)
        envelope.encodeFrame(into: &buffer)
        channel.write(buffer, promise: nil)
    }

    func close() {
        channel.close(promise: nil)
    }
}
