/// A typed finite-state machine as a pure value: states, events, actions and transitions.
///
/// The machine decides; the owner (typically a virtual actor) executes the returned actions.
/// An event with no transition from the current state is rejected with ``FSMError`` rather than
/// ignored, so a misrouted or duplicated command can never silently move an entity.
///
/// ```swift
/// enum OrderState: Hashable, Sendable { case created, reserved, paid, cancelled }
/// enum OrderEvent: Hashable, Sendable { case reserve, pay, cancel }
/// enum OrderAction: Hashable, Sendable { case reserveStock, chargeCard, releaseStock }
///
/// let definition = FSMDefinition<OrderState, OrderEvent, OrderAction>(transitions: [
///     .init(from: .created, on: .reserve, to: .reserved, actions: [.reserveStock]),
///     .init(from: .reserved, on: .pay, to: .paid, actions: [.chargeCard]),
///     .init(from: [.created, .reserved], on: .cancel, to: .cancelled, actions: [.releaseStock]),
/// ])
/// var order = StateMachine(definition, initial: .created)
/// let actions = try order.fire(.reserve)  // [.reserveStock]; order.state == .reserved
/// ```
public struct StateMachine<State: Hashable & Sendable, Event: Hashable & Sendable, Action: Sendable>: Sendable {
    /// The states, events and transitions this machine follows.
    public let definition: FSMDefinition<State, Event, Action>
    public private(set) var state: State

    /// A machine following `definition`, starting in `initial`.
    public init(_ definition: FSMDefinition<State, Event, Action>, initial: State) {
        self.definition = definition
        self.state = initial
    }

    /// Whether `event` has a transition from the current state.
    public func canFire(_ event: Event) -> Bool {
        definition.transition(from: state, on: event) != nil
    }

    /// Applies `event`: moves to the transition's target and returns its actions.
    /// - Throws: ``FSMError`` when the current state has no transition for `event`; the state is unchanged.
    @discardableResult
    public mutating func fire(_ event: Event) throws(FSMError<State, Event>) -> [Action] {
        guard let transition = definition.transition(from: state, on: event) else {
            throw FSMError(state: state, event: event)
        }
        state = transition.to
        return transition.actions
    }

    /// Whether the current state has no outgoing transitions.
    public var isTerminal: Bool { definition.isTerminal(state) }

    /// Events accepted in the current state.
    public var acceptedEvents: [Event] { definition.events(from: state) }
}

/// The transition table of a ``StateMachine``; validated when built.
public struct FSMDefinition<State: Hashable & Sendable, Event: Hashable & Sendable, Action: Sendable>: Sendable {
    /// One allowed transition of a state machine: from a state, on an event, to a state.
    public struct Transition: Sendable {
        /// The states the transition leaves from.
        public var from: Set<State>
        /// The event that triggers it.
        public var event: Event
        /// The state it moves to.
        public var to: State
        /// The actions the owner performs when it is taken, in order.
        public var actions: [Action]

        /// A transition from one state.
        public init(from: State, on event: Event, to: State, actions: [Action] = []) {
            self.init(from: [from], on: event, to: to, actions: actions)
        }

        /// A transition from any of several states.
        public init(from: Set<State>, on event: Event, to: State, actions: [Action] = []) {
            self.from = from
            self.event = event
            self.to = to
            self.actions = actions
        }
    }

    private struct Edge: Hashable, Sendable {
        var state: State
        var event: Event
    }

    private let table: [Edge: Transition]

    /// Builds the table. Two transitions for the same (state, event) pair are a programming error.
    public init(transitions: [Transition]) {
        var table: [Edge: Transition] = [:]
        for transition in transitions {
            for state in transition.from {
                let edge = Edge(state: state, event: transition.event)
                precondition(table[edge] == nil, "FSMDefinition: two transitions from \(state) on \(transition.event)")
                table[edge] = transition
            }
        }
        self.table = table
    }

    /// The transition `event` takes from `state`, or nil when `state` does not accept it.
    public func transition(from state: State, on event: Event) -> Transition? {
        table[Edge(state: state, event: event)]
    }

    /// Whether no event leaves `state`.
    public func isTerminal(_ state: State) -> Bool {
        !table.keys.contains { $0.state == state }
    }

    /// The events `state` accepts.
    public func events(from state: State) -> [Event] {
        table.keys.filter { $0.state == state }.map(\.event)
    }
}

/// An event that the current state does not accept.
public struct FSMError<State: Hashable & Sendable, Event: Hashable & Sendable>: Error, Sendable, Hashable, CustomStringConvertible {
    /// The state the machine was in.
    public var state: State
    /// The event it did not accept.
    public var event: Event

    /// The error for `event` refused in `state`.
    public init(state: State, event: Event) {
        self.state = state
        self.event = event
    }

    public var description: String { "illegal transition: event \(event) in state \(state)" }
}
