public import Synchronization

/// A value behind a lock: the standard library's `Mutex`, and what ThreadSanitizer needs to see it.
///
/// On Linux `Mutex` hands the lock over through atomics and futex calls inside the standard library, which
/// is not instrumented, so ThreadSanitizer sees two threads touch the guarded value with nothing ordering
/// them and reports a race on every lock that more than one thread uses. Builds for ThreadSanitizer
/// (`scripts/tsan`, compiled with `-D TROUPE_TSAN`) tell it about each acquisition and release explicitly
/// (`__tsan_acquire` / `__tsan_release` on a token of the lock); every other build compiles to the bare
/// `Mutex`. Use it wherever a `Mutex` would do.
@frozen
public struct Guarded<Value: ~Copyable>: ~Copyable, Sendable {
    @usableFromInline let mutex: Mutex<Value>
    #if TROUPE_TSAN
    @usableFromInline let token = ThreadSanitizerToken()
    #endif

    /// A lock holding `initialValue`.
    @inlinable
    public init(_ initialValue: consuming sending Value) {
        mutex = Mutex(initialValue)
    }

    @inlinable
    public borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        #if TROUPE_TSAN
        let address = Unmanaged.passUnretained(token).toOpaque()
        return try mutex.withLock { (value: inout sending Value) throws(E) -> sending Result in
            threadSanitizerAcquire(address)
            defer { threadSanitizerRelease(address) }
            return try body(&value)
        }
        #else
        return try mutex.withLock(body)
        #endif
    }
}

#if TROUPE_TSAN
/// The address ThreadSanitizer orders a ``Guarded`` lock's critical sections by.
public final class ThreadSanitizerToken: Sendable {
    /// A new token (one per lock).
    public init() {}
}

@_silgen_name("__tsan_acquire") @usableFromInline func threadSanitizerAcquire(_ address: UnsafeMutableRawPointer)
@_silgen_name("__tsan_release") @usableFromInline func threadSanitizerRelease(_ address: UnsafeMutableRawPointer)
#endif
