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
    /// Whether the cluster is ready for `version` (see `Readiness`).
    public func readiness(for version: String) throws(MigrationError) -> Readiness {
        let stamped = try stampedVersion()
        if stamped != version { return .stampedOther(stamped) }
        if let state = try state(), state.status == .running || state.status == .failed {
            return .runUnfinished(state.status)
        }
        if let held = try lockHolder() { return .locked(held.holder) }
        return .ready
    }
}
