/// One metric family Troupe reports: its Prometheus name and the help text an exporter prints for it.
///
/// Names follow Prometheus' conventions: `troupe_` first, the unit in the name (`_seconds`), counters end in
/// `_total`. Labels never hold keys, ids or user names (bounded cardinality).
public struct MetricFamily: Sendable, Hashable {
    /// The Prometheus name (`troupe_…`).
    public let name: String
    /// The help text an exporter prints (`# HELP`).
    public let help: String

    /// A family named `name` described by `help`.
    public init(_ name: String, _ help: String) {
        self.name = name
        self.help = help
    }
}

/// Every family Troupe's modules report through swift-metrics, in one place so that an executable's metrics
/// factory can give each its help text (see ``all``).
public enum MetricFamilies {
    // Actor runtime
    /// `troupe_actor_calls_total`: Actor calls made from this node, by actor type, method, locality (local: run on this node; remote) and outcome (ok: returned; error: the actor threw an error of its own; failed: the runtime failed the call: no reply in time, unreachable, refused).
    public static let actorCalls = MetricFamily("troupe_actor_calls_total", "Actor calls made from this node, by actor type, method, locality (local: run on this node; remote) and outcome (ok: returned; error: the actor threw an error of its own; failed: the runtime failed the call: no reply in time, unreachable, refused).")
    /// `troupe_actor_calls_served_total`: Actor calls received from other nodes and run here, by actor type.
    public static let actorCallsServed = MetricFamily("troupe_actor_calls_served_total", "Actor calls received from other nodes and run here, by actor type.")
    /// `troupe_actor_call_duration_seconds`: Time from an actor call's start to its reply, by actor type, method and locality.
    public static let actorCallDuration = MetricFamily("troupe_actor_call_duration_seconds", "Time from an actor call's start to its reply, by actor type, method and locality.")
    /// `troupe_actor_calls_in_flight`: Actor calls made from this node that have not completed yet.
    public static let actorCallsInFlight = MetricFamily("troupe_actor_calls_in_flight", "Actor calls made from this node that have not completed yet.")
    /// `troupe_actor_activations`: Virtual actor activations alive on this node, by actor type.
    public static let actorActivations = MetricFamily("troupe_actor_activations", "Virtual actor activations alive on this node, by actor type.")
    /// `troupe_actor_passivations_total`: Virtual actor activations ended (idle, over the limit, or the node stopping), by actor type.
    public static let actorPassivations = MetricFamily("troupe_actor_passivations_total", "Virtual actor activations ended (idle, over the limit, or the node stopping), by actor type.")
    /// `troupe_actor_fenced_writes_total`: State writes refused because a newer activation of the key had written (the stale activation was ended).
    public static let actorFencedWrites = MetricFamily("troupe_actor_fenced_writes_total", "State writes refused because a newer activation of the key had written (the stale activation was ended).")
    /// `troupe_actor_connections_refused_total`: Inbound cluster connections refused: too many unauthenticated ones.
    public static let actorConnectionsRefused = MetricFamily("troupe_actor_connections_refused_total", "Inbound cluster connections refused: too many unauthenticated ones.")

    // Gateway
    /// `troupe_gateway_requests_total`: HTTP requests answered by the gateway, by route template, method and status class.
    public static let gatewayRequests = MetricFamily("troupe_gateway_requests_total", "HTTP requests answered by the gateway, by route template, method and status class.")
    /// `troupe_gateway_request_duration_seconds`: Time from a request's head to its response's head, by route template and method.
    public static let gatewayRequestDuration = MetricFamily("troupe_gateway_request_duration_seconds", "Time from a request's head to its response's head, by route template and method.")
    /// `troupe_gateway_shed_total`: Requests refused with 503 because the gateway had too many in flight.
    public static let gatewayShed = MetricFamily("troupe_gateway_shed_total", "Requests refused with 503 because the gateway had too many in flight.")
    /// `troupe_gateway_effect_retries_total`: Runs of a request bound to its Idempotency-Key repeated after a transient failure.
    public static let gatewayEffectRetries = MetricFamily("troupe_gateway_effect_retries_total", "Runs of a request bound to its Idempotency-Key repeated after a transient failure.")
    /// `troupe_gateway_breaker_rejections_total`: Upstream requests refused by the adaptive circuit breaker, by service.
    public static let gatewayBreakerRejections = MetricFamily("troupe_gateway_breaker_rejections_total", "Upstream requests refused by the adaptive circuit breaker, by service.")
    /// `troupe_sessions_served_stale_total`: Session reads answered from the local copy while the session store could not be asked (stale-if-error).
    public static let sessionsServedStale = MetricFamily("troupe_sessions_served_stale_total", "Session reads answered from the local copy while the session store could not be asked (stale-if-error).")
    /// `troupe_tls_peers_refused_total`: TLS peers refused, by link and reason (revoked certificate or failed handshake).
    public static let tlsPeersRefused = MetricFamily("troupe_tls_peers_refused_total", "TLS peers refused, by link and reason (revoked certificate or failed handshake).")

    // Saga, bus
    /// `troupe_saga_steps_total`: Saga steps run to an outcome, by saga, step, phase (action or compensation) and outcome (ok, failed after its retries).
    public static let sagaSteps = MetricFamily("troupe_saga_steps_total", "Saga steps run to an outcome, by saga, step, phase (action or compensation) and outcome (ok, failed after its retries).")
    /// `troupe_saga_step_duration_seconds`: Time a saga step took with its retries, by saga, step and phase.
    public static let sagaStepDuration = MetricFamily("troupe_saga_step_duration_seconds", "Time a saga step took with its retries, by saga, step and phase.")
    /// `troupe_sagas_finished_total`: Sagas that reached a final status, by saga and status (completed, compensated, failed).
    public static let sagasFinished = MetricFamily("troupe_sagas_finished_total", "Sagas that reached a final status, by saga and status (completed, compensated, failed).")
    /// `troupe_saga_duration_seconds`: Time from a saga's start to its final status, by saga and status (across restarts: measured on the wall clock).
    public static let sagaDuration = MetricFamily("troupe_saga_duration_seconds", "Time from a saga's start to its final status, by saga and status (across restarts: measured on the wall clock).")
    /// `troupe_sagas_active`: Sagas being driven on this node now (running or compensating), by saga.
    public static let sagasActive = MetricFamily("troupe_sagas_active", "Sagas being driven on this node now (running or compensating), by saga.")
    /// `troupe_saga_compensation_exhausted_total`: Sagas whose compensation kept failing past its retries and needs an operator.
    public static let sagaCompensationExhausted = MetricFamily("troupe_saga_compensation_exhausted_total", "Sagas whose compensation kept failing past its retries and needs an operator.")
    /// `troupe_outbox_relayed_total`: Outbox events relayed to the bus, by outcome (published, or already_on_bus: found there after a crash and not published again).
    public static let outboxRelayed = MetricFamily("troupe_outbox_relayed_total", "Outbox events relayed to the bus, by outcome (published, or already_on_bus: found there after a crash and not published again).")
    /// `troupe_outbox_relay_failures_total`: Relays right after a write that failed (the events stay in the stored outbox and are retried).
    public static let outboxRelayFailures = MetricFamily("troupe_outbox_relay_failures_total", "Relays right after a write that failed (the events stay in the stored outbox and are retried).")
    /// `troupe_outbox_retrying`: Activations whose outbox relay is retrying in the background: events waiting for the bus.
    public static let outboxRetrying = MetricFamily("troupe_outbox_retrying", "Activations whose outbox relay is retrying in the background: events waiting for the bus.")
    /// `troupe_outbox_backlog`: Events in the outboxes of this node's live activations that are not on the bus yet.
    public static let outboxBacklog = MetricFamily("troupe_outbox_backlog", "Events in the outboxes of this node's live activations that are not on the bus yet.")
    /// `troupe_outbox_relay_lag_seconds`: Time from an event's emission (its state write) to its publication on the bus, across restarts (wall clock).
    public static let outboxRelayLag = MetricFamily("troupe_outbox_relay_lag_seconds", "Time from an event's emission (its state write) to its publication on the bus, across restarts (wall clock).")
    /// `troupe_bus_produced_total`: Messages published to the bus, by topic and kind (normal or delayed).
    public static let busProduced = MetricFamily("troupe_bus_produced_total", "Messages published to the bus, by topic and kind (normal or delayed).")
    /// `troupe_bus_consumed_total`: Messages a consumer group handled, by group and topic.
    public static let busConsumed = MetricFamily("troupe_bus_consumed_total", "Messages a consumer group handled, by group and topic.")
    /// `troupe_bus_retries_total`: Deliveries that failed and were scheduled again, by group.
    public static let busRetries = MetricFamily("troupe_bus_retries_total", "Deliveries that failed and were scheduled again, by group.")
    /// `troupe_bus_dead_lettered_total`: Messages moved to the dead-letter topic after their last retry, by group.
    public static let busDeadLettered = MetricFamily("troupe_bus_dead_lettered_total", "Messages moved to the dead-letter topic after their last retry, by group.")
    /// `troupe_bus_lag`: Messages in a queue not yet handled by the group, by group, topic and queue.
    public static let busLag = MetricFamily("troupe_bus_lag", "Messages in a queue not yet handled by the group, by group, topic and queue.")
    /// `troupe_bus_end_to_end_seconds`: Time from a message's publication to its handling, by topic.
    public static let busEndToEnd = MetricFamily("troupe_bus_end_to_end_seconds", "Time from a message's publication to its handling, by topic.")

    // Cache, rate limits, Redis
    /// `troupe_cache_reads_total`: Cache reads by cache (its key prefix) and result (hit, l1_hit, null_hit, miss, stale, bloom_rejected, store_unavailable).
    public static let cacheReads = MetricFamily("troupe_cache_reads_total", "Cache reads by cache (its key prefix) and result (hit, l1_hit, null_hit, miss, stale, bloom_rejected, store_unavailable).")
    /// `troupe_cache_loads_total`: Loads from the source a cache ran to rebuild a missing or expired entry, by cache.
    public static let cacheLoads = MetricFamily("troupe_cache_loads_total", "Loads from the source a cache ran to rebuild a missing or expired entry, by cache.")
    /// `troupe_rate_limit_decisions_total`: Rate-limit decisions by limiter (global, user, login_user, login_address) and decision (allowed, rejected).
    public static let rateLimitDecisions = MetricFamily("troupe_rate_limit_decisions_total", "Rate-limit decisions by limiter (global, user, login_user, login_address) and decision (allowed, rejected).")
    /// `troupe_redis_commands_total`: Redis commands sent, by command and outcome (ok, error: an error reply, failed: no reply).
    public static let redisCommands = MetricFamily("troupe_redis_commands_total", "Redis commands sent, by command and outcome (ok, error: an error reply, failed: no reply).")
    /// `troupe_redis_command_duration_seconds`: Time from a Redis command's send to its reply, by command.
    public static let redisCommandDuration = MetricFamily("troupe_redis_command_duration_seconds", "Time from a Redis command's send to its reply, by command.")

    // MongoDB
    /// `troupe_client_connections`: Open connections of a client's pool, by client (redis, mongo) and server.
    public static let clientConnections = MetricFamily("troupe_client_connections", "Open connections of a client's pool, by client (redis, mongo) and server.")
    /// `troupe_client_connects_total`: Connections a client's pool opened or failed to open, by client, server and outcome (ok, failed).
    public static let clientConnects = MetricFamily("troupe_client_connects_total", "Connections a client's pool opened or failed to open, by client, server and outcome (ok, failed).")
    /// `troupe_etcd_requests_total`: etcd requests, by operation and outcome (ok; error: etcd refused it; failed: no answer — unavailable or out of time), after the client's retries.
    public static let etcdRequests = MetricFamily("troupe_etcd_requests_total", "etcd requests, by operation and outcome (ok; error: etcd refused it; failed: no answer — unavailable or out of time), after the client's retries.")
    /// `troupe_etcd_request_duration_seconds`: Time of an etcd request with the client's retries, by operation.
    public static let etcdRequestDuration = MetricFamily("troupe_etcd_request_duration_seconds", "Time of an etcd request with the client's retries, by operation.")
    /// `troupe_mongo_commands_total`: MongoDB commands sent, by command.
    public static let mongoCommands = MetricFamily("troupe_mongo_commands_total", "MongoDB commands sent, by command.")
    /// `troupe_mongo_command_failures_total`: MongoDB commands that failed, by command and kind of failure.
    public static let mongoCommandFailures = MetricFamily("troupe_mongo_command_failures_total", "MongoDB commands that failed, by command and kind of failure.")
    /// `troupe_mongo_command_duration_seconds`: Time from a MongoDB command's send to its reply, by command.
    public static let mongoCommandDuration = MetricFamily("troupe_mongo_command_duration_seconds", "Time from a MongoDB command's send to its reply, by command.")

    /// Every family above.
    public static let all: [MetricFamily] = [
        actorCalls, actorCallsServed, actorCallDuration, actorCallsInFlight, actorActivations, actorPassivations, actorFencedWrites,
        actorConnectionsRefused,
        gatewayRequests, gatewayRequestDuration, gatewayShed, gatewayEffectRetries, gatewayBreakerRejections, sessionsServedStale,
        tlsPeersRefused,
        cacheReads, cacheLoads, rateLimitDecisions, redisCommands, redisCommandDuration,
        sagaSteps, sagaStepDuration, sagasFinished, sagaDuration, sagasActive, sagaCompensationExhausted,
        outboxRelayed, outboxRelayFailures, outboxRetrying, outboxBacklog, outboxRelayLag, busProduced, busConsumed, busRetries, busDeadLettered, busLag, busEndToEnd,
        mongoCommands, mongoCommandFailures, mongoCommandDuration, etcdRequests, etcdRequestDuration, clientConnections, clientConnects,
    ]

    /// The bounds of every duration histogram, in seconds: from 100 µs (an actor call on one node takes a few
    /// µs, a remote one some hundred) to 10 s.
    public static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2) + .microseconds(500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
}
