import ServiceLifecycle

/// The `run()` of the Redis clients: waits until `signal` finishes (their `shutdown()`), turning
/// graceful shutdown and cancellation into a call of `shutdown`.
func waitForShutdown(_ signal: AsyncStream<Void>, shutdown: @escaping @Sendable () -> Void) async {
    await withTaskCancellationHandler {
        await withGracefulShutdownHandler {
            for await _ in signal {}
        } onGracefulShutdown: {
            shutdown()
        }
    } onCancel: {
        shutdown()
    }
}
