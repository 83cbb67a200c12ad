import Testing
@testable import TroupeActors
import TroupeCore
import TroupeSaga
import TroupeTestSupport

@Suite("Outbox relays are per activation", .serialized)
struct OutboxInstanceTests {
    @Test("an instance dropped after a lapse, still relaying, does not keep the new activation of its key from relaying")
    func droppedInstanceDoesNotBlockNewActivation() async throws {
        let publisher = CollectingPublisher()
        publisher.latency.withLock { $0 = .seconds(2) }
        try await LocalCluster().run(nodes: 1, register: { $0.register(Ledger.self) }) { systems in
            let system = systems[0]
            system.outboxRelay.setPublisher(publisher)
            let old = try await system.actor(Ledger.self, key: "handover")
            // The old activation writes and starts relaying (each publish takes 2 s)…
            let oldCall = Task { try await old.add(1) }
            try await Task.sleep(for: .milliseconds(300))
            // …when the membership lapses: every activation is dropped; the old instance keeps relaying.
            await system.dropActivationsAfterLapse()
            // A new activation of the key writes a new event.
            #expect(try await system.reference(Ledger.self, key: "handover").add(2) == 3)
            _ = try? await oldCall.value
            let deadline = ContinuousClock.now + .seconds(20)
            while !publisher.events.withLock({ $0.contains { String(decoding: $0.body, as: UTF8.self) == "3" } }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            let bodies = publisher.events.withLock { $0 }.map { String(decoding: $0.body, as: UTF8.self) }
            #expect(bodies.contains("3"), "the new activation's event was published: \(bodies)")
        }
    }
}
