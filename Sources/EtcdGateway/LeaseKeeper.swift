// Keeps a lease alive from a dedicated OS thread. Blocking libcurl calls must not run on
// Swift concurrency's cooperative pool, and a lease keeper must keep its rhythm even when
// every pool thread is busy.

import Logging
import Synchronization

import PlatformShim

public final class LeaseKeeper: Sendable {
    public let leaseID: Int64
    public let ttl: Int64

    /// Set by `stop()`; its condition wakes the keeper from its wait for the next keep-alive.
    private let stopRequested = ConditionLock(false)
    private let lost = Atomic<Bool>(false)
    private let thread = Mutex<OSThread?>(nil)

    /// True once the lease is known or presumed gone; `onLost` has then been called once.
    public var isLost: Bool { lost.load(ordering: .acquiring) }

    private init(leaseID: Int64, ttl: Int64) {
        self.leaseID = leaseID
        self.ttl = ttl
    }

    /// Starts keeping `leaseID` (just granted with `ttl` seconds) alive. `onKeptAlive` runs on
    /// the keeper's thread after each confirmed keep-alive (the migration lock publishes its
    /// heartbeat there); `onLost` once, when the lease is known or presumed gone.
    public static func start(
        store: any KeyValueService, leaseID: Int64, ttl: Int64, logger: Logger,
        onKeptAlive: @escaping @Sendable () -> Void = {}, onLost: @escaping @Sendable (EtcdError) -> Void
    ) -> LeaseKeeper {
        let keeper = LeaseKeeper(leaseID: leaseID, ttl: max(ttl, 1))
        switch OSThread.start(name: "lease-keeper", { keeper.run(store: store, logger: logger, onKeptAlive: onKeptAlive, onLost: onLost) }) {
        case .success(let thread):
            keeper.thread.withLock { $0 = thread }
        case .failure(let error):
            keeper.markLost(
                EtcdError(
                    .invalidConfiguration, "Could not start the keep-alive thread for lease \(leaseID) (pthread_create error \(error.errorNumber))."),
                onLost: onLost)
        }
        return keeper
    }

    /// Stops keeping the lease alive (the lease itself stays until it expires or is revoked).
    /// Waits for the keeper thread to finish, unless called from that thread (e.g. in `onLost`).
    public func stop() {
        stopRequested.withLockWakingWaiters { $0 = true }
        guard
            let thread = thread.withLock({ current -> OSThread? in
                defer { current = nil }
                return current
            })
        else { return }
        if thread.isCurrent {
            thread.detach()
        } else {
            thread.join()
        }
    }

    deinit {
        stopRequested.withLockWakingWaiters { $0 = true }
        thread.withLock { $0 }?.detach()
    }

    private func markLost(_ error: EtcdError, onLost: @Sendable (EtcdError) -> Void) {
        if !lost.exchange(true, ordering: .acquiringAndReleasing) { onLost(error) }
    }

    private func run(
        store: any KeyValueService, logger: Logger, onKeptAlive: @Sendable () -> Void, onLost: @Sendable (EtcdError) -> Void
    ) {
        let clock = ContinuousClock()
        let ttlDuration = Duration.seconds(ttl)
        let interval = ttlDuration / 3
        // After TTL minus this margin without a confirmed keep-alive, the lease may already
        // be gone on the server (clock skew, queued requests): count it lost.
        let margin = min(Duration.seconds(1), ttlDuration / 4)
        // The caller granted the lease just before starting us, so its clock starts now.
        var lastConfirmedSend = clock.now
        var nextSend = clock.now
        let description = EtcdClient.describeLease(leaseID)

        // Why the keep-alives failed (etcd gone, a port-forward ended): said with the loss.
        var lastFailure: EtcdError?
        while !stopRequested.withLock({ $0 }) && !isLost {
            let now = clock.now
            if now >= nextSend {
                let sentAt = now
                // A keep-alive answered after the deadline is useless; keep the call short.
                let deadline = lastConfirmedSend + ttlDuration - margin
                let timeout = max(.milliseconds(200), min(interval, deadline - sentAt))
                do {
                    if let newTTL = try store.leaseKeepAliveOnce(id: leaseID, timeout: timeout) {
                        lastConfirmedSend = sentAt
                        nextSend = sentAt + interval
                        logger.trace("lease kept alive", metadata: ["lease": "\(description)", "ttl": "\(newTTL)"])
                        onKeptAlive()
                    } else {
                        markLost(
                            EtcdError(
                                .leaseNotFound,
                                "The \(description) has expired or was revoked; "
                                    + "etcd no longer knows it, so anything held under it (locks, keys) is gone."
                            ),
                            onLost: onLost)
                        return
                    }
                } catch {
                    if error.code == .leaseNotFound {
                        markLost(error, onLost: onLost)
                        return
                    }
                    logger.warning("lease keep-alive failed; retrying", metadata: ["lease": "\(description)", "error": "\(error)"])
                    lastFailure = error
                    nextSend = clock.now + min(interval, .milliseconds(500))
                }
            }
            let presumedLost = lastConfirmedSend + ttlDuration - margin
            if clock.now >= presumedLost {
                markLost(
                    EtcdError(
                        .leaseNotFound,
                        "No keep-alive for \(description) succeeded for \(ttlDuration - margin) (TTL \(ttl) s); the lease must be presumed expired"
                            + (lastFailure.map { ". The last keep-alive failed: \($0.message)" } ?? ".")),
                    onLost: onLost)
                return
            }
            // Asleep until the next keep-alive is due or the lease would be presumed lost;
            // `stop()` wakes it at once.
            stopRequested.wait(until: { $0 }, timeout: min(nextSend, presumedLost) - clock.now)
        }
    }
}
