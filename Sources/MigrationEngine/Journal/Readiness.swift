import EtcdGateway

/// Whether a cluster is ready for the release it was migrated to: stamped with it, no run
/// in progress, the lock free. What an init container of the new release waits for
/// (`wait`); the first condition that does not hold is the one reported.
public enum Readiness: Sendable, Hashable {
    case ready
    /// Stamped with another version, or (nil) with none.
    case stampedOther(String?)
    /// A run is `running` or `failed` (resumable): the records may be half-way.
    case runUnfinished(RunState.Status)
    /// The migration lock is held (a run is starting, or finishing).
    case locked(LockHolder)

    public var isReady: Bool { self == .ready }
}

extension JournalReader {
    /// Whether the cluster is ready for a release that reads the metadata of any of the
    /// `accepted` stamps (releases sharing one format, e.g. every 1.5.x; see `Readiness`).
    public func readiness(for accepted: Set<String>) throws(MigrationError) -> Readiness {
        let stamped = try stampedVersion()
        guard let stamped, accepted.contains(stamped) else { return .stampedOther(stamped) }
        if let state = try state(), state.status == .running || state.status == .failed {
            return .runUnfinished(state.status)
        }
        if let held = try lockHolder() { return .locked(held.holder) }
        return .ready
    }
}

/// How a wait for readiness ended.
public struct ReadinessWait: Sendable {
    /// The last look: `.success(.ready)` when the wait succeeded.
    public var last: Result<Readiness, MigrationError>
    public var waited: Duration
    public var isReady: Bool { if case .success(.ready) = last { true } else { false } }
}

extension JournalReader {
    /// Looks every `interval` until the cluster is ready for `accepted` or `timeout` passes
    /// (nil: never). An etcd failure counts as not ready yet. `changed` hears every look
    /// whose outcome differs from the one before.
    public func waitUntilReady(
        for accepted: Set<String>, timeout: Duration?, interval: Duration,
        changed: (Result<Readiness, MigrationError>) -> Void = { _ in }
    ) -> ReadinessWait {
        let start = ContinuousClock.now
        // What a look saw, compared with the look before: the readiness itself, or the
        // failure's code and message (an error is news when either differs).
        enum Seen: Equatable {
            case readiness(Readiness)
            case failure(MigrationError.Code, String)
        }
        var previous: Seen?
        while true {
            let look = Result { () throws(MigrationError) in try readiness(for: accepted) }
            let waited = ContinuousClock.now - start
            if case .success(.ready) = look { return ReadinessWait(last: look, waited: waited) }
            let seen: Seen =
                switch look {
                case .success(let readiness): .readiness(readiness)
                case .failure(let error): .failure(error.code, error.message)
                }
            if seen != previous {
                changed(look)
                previous = seen
            }
            if let timeout, waited >= timeout { return ReadinessWait(last: look, waited: waited) }
            ContinuousClockSleep.sleep(for: min(interval, timeout.map { $0 - waited } ?? interval))
        }
    }
}
