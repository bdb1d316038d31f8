import EtcdGateway
import Logging

extension EtcdError {
    /// Failures that say nothing about the request itself: etcd restarting, a member gone
    /// (the client has already tried every endpoint), no leader for a moment, no answer in time.
    var isTransient: Bool { code == .unavailable || code == .timeout || code == .transport }
}

/// Runs one etcd call of the write phase, retrying transient failures with backoff while
/// the lock is still ours, for at most the lock's TTL: an etcd restart or a leader
/// election is ridden out instead of failing the run. Every write-phase call is safe to
/// repeat: puts of the same value are idempotent and the fenced record txn recognizes its
/// own landed write. When etcd stays away, stops resumably (`.interrupted`, exit 7); so it
/// does at the first failure once `stop` is asked: retrying would keep the operator who
/// pressed Ctrl-C waiting up to the lock's TTL, and the next run reads back what the
/// unanswered call did, as after any failure.
func etcdRetrying<T>(
    _ doing: @autoclosure () -> String, lock: MigrationLock, stop: StopSignal? = nil, logger: Logger,
    _ body: () throws(EtcdError) -> T
) throws(MigrationError) -> T {
    let patience = Duration.seconds(max(5, lock.ttl))
    let deadline = ContinuousClock.now + patience
    var delay = Duration.milliseconds(100)
    while true {
        do {
            return try body()
        } catch {
            guard error.isTransient else { throw MigrationError.store(error, while: doing()) }
            try lock.checkHeld()
            if let stop, stop.isStopped {
                throw MigrationError(
                    .interrupted, "stopped on request while etcd did not answer \(doing()) (\(error)); run the same command again to resume",
                    underlying: error)
            }
            guard ContinuousClock.now + delay < deadline else {
                throw MigrationError(
                    .interrupted,
                    "etcd stayed unavailable for \(patience) while \(doing()) (\(error)); everything written so far is recorded. "
                        + "Run the same command again to resume once etcd is back.",
                    underlying: error)
            }
            logger.warning("etcd unavailable; retrying", metadata: ["while": "\(doing())", "error": "\(error.message)"])
            ContinuousClockSleep.sleep(for: delay)
            delay = min(delay * 2, .seconds(1))
        }
    }
}
