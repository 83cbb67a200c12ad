import Testing
import TroupeCore

enum OrderState: Hashable, Sendable { case created, reserved, paid, completed, cancelled }
enum OrderEvent: Hashable, Sendable { case reserve, pay, complete, cancel }
enum OrderAction: Hashable, Sendable { case reserveStock, chargeCard, ship, releaseStock, refund }

let orderFlow = FSMDefinition<OrderState, OrderEvent, OrderAction>(transitions: [
    .init(from: .created, on: .reserve, to: .reserved, actions: [.reserveStock]),
    .init(from: .reserved, on: .pay, to: .paid, actions: [.chargeCard]),
    .init(from: .paid, on: .complete, to: .completed, actions: [.ship]),
    .init(from: [.created, .reserved], on: .cancel, to: .cancelled, actions: [.releaseStock]),
    .init(from: .paid, on: .cancel, to: .cancelled, actions: [.refund, .releaseStock]),
])

@Suite("Finite-state machine")
struct StateMachineTests {
    @Test("legal transitions move the state and return their actions in order")
    func legal() throws {
        var order = StateMachine(orderFlow, initial: .created)
        #expect(try order.fire(.reserve) == [.reserveStock])
        #expect(try order.fire(.pay) == [.chargeCard])
        #expect(order.state == .paid)
        #expect(try order.fire(.cancel) == [.refund, .releaseStock])
        #expect(order.state == .cancelled)
        #expect(order.isTerminal)
    }

    @Test("illegal transitions throw and leave the state unchanged", arguments: [
        (OrderState.created, OrderEvent.pay), (.created, .complete), (.reserved, .complete),
        (.completed, .cancel), (.cancelled, .reserve), (.paid, .pay),
    ])
    func illegal(state: OrderState, event: OrderEvent) {
        var order = StateMachine(orderFlow, initial: state)
        #expect(!order.canFire(event))
        #expect(throws: FSMError<OrderState, OrderEvent>(state: state, event: event)) { try order.fire(event) }
        #expect(order.state == state)
    }

    @Test("accepted events are listed per state")
    func accepted() {
        #expect(Set(StateMachine(orderFlow, initial: .created).acceptedEvents) == [.reserve, .cancel])
        #expect(StateMachine(orderFlow, initial: .completed).acceptedEvents.isEmpty)
    }
}

@Suite("Backoff")
struct BackoffTests {
    @Test("grows geometrically to the maximum; jitter stays within the base")
    func growth() {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0)
        let delays = (0..<6).map { _ in backoff.next() }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
        var jittered = Backoff(initial: .milliseconds(100), maximum: .seconds(1), jitter: 1)
        for _ in 0..<50 {
            let delay = jittered.next()
            #expect(delay >= .zero && delay <= .seconds(1))
        }
    }
}
