#if canImport(Glibc)
import Glibc
#else
#error("pachmigrate is written for Linux with glibc")
#endif

/// A value behind a mutex, with a condition variable for threads that wait for it to change:
/// for an OS thread that waits on an event (work due, the last txn in flight landed, a stop
/// asked for), which a polling sleep would notice only on its next nap. `Mutex` has no
/// condition, so this is pthread's pair; the condition times on CLOCK_MONOTONIC, which a
/// change of the wall clock does not move.
public final class ConditionLock<Value>: @unchecked Sendable {
    // Allocated, not stored inline: pthread objects must not move in memory.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` with the value locked; waiters are not woken (see `withLockWakingWaiters`).
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// Runs `body` with the value locked, then wakes every waiter to look at it again.
    public func withLockWakingWaiters<Result>(_ body: (inout Value) -> Result) -> Result {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        return body(&value)
    }

    /// Wakes every waiter to look at the value again (after a change made with `withLock`
    /// that only sometimes concerns them).
    public func wakeWaiters() {
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Blocks until `ready` holds of the value, then runs `body` with it still locked.
    public func wait<Result>(until ready: (Value) -> Bool, then body: (inout Value) -> Result) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(value) { pthread_cond_wait(condition, mutex) }
        return body(&value)
    }

    /// Blocks until `ready` holds of the value or `timeout` has passed, whichever is first;
    /// returns whether `ready` held.
    @discardableResult
    public func wait(until ready: (Value) -> Bool, timeout: Duration) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let (seconds, attoseconds) = max(timeout, .zero).components
        let nanoseconds = Int(deadline.tv_nsec) + Int(attoseconds / 1_000_000_000)
        deadline.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(value) {
            if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { return ready(value) }
        }
        return true
    }
}
