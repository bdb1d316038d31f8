import Synchronization

/// Set from a signal handler (or a test) to stop a run. Before the run's first write the
/// engine stops at its next check (a page of the scan, a batch of the backup, a step of the
/// preflight) and throws `.stoppedBeforeWriting` with nothing written; once writing has begun
/// it stops after the txn in flight (`.interrupted`, resumable).
public final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    private let number = Atomic<Int32>(0)
    private let writing = Atomic<Bool>(false)
    private let lockHeld = Atomic<Bool>(false)
    private let parent: StopSignal?
    public init() { parent = nil }
    /// A stop that is also stopped whenever `parent` is: the writers' own, which the first
    /// failure among them stops too, while a signal reaches their txn in flight at once.
    init(following parent: StopSignal) { self.parent = parent }
    /// `signal`: the signal that asked (SIGINT, SIGTERM, SIGHUP), 0 for a request from code.
    public func stop(signal: Int32 = 0) {
        number.store(signal, ordering: .relaxed)
        flag.store(true, ordering: .sequentiallyConsistent)
    }
    public var isStopped: Bool { flag.load(ordering: .acquiring) || parent?.isStopped == true }
    /// The signal that asked the run to stop, if one did.
    public var signal: Int32? {
        let n = number.load(ordering: .relaxed)
        return n == 0 ? nil : n
    }
    /// Whether the run has begun writing (its first fenced write to etcd was sent): a stop
    /// then finishes the txn in flight instead of ending at once.
    public var hasBegunWriting: Bool { writing.load(ordering: .sequentiallyConsistent) }
    /// Whether the run holds the migration lock (`MigrationLock` keeps it): a process that
    /// quits at once leaves the lock held until its lease runs out.
    public internal(set) var holdsLock: Bool {
        get { lockHeld.load(ordering: .acquiring) }
        set { lockHeld.store(newValue, ordering: .releasing) }
    }
    /// Marks the run as writing, unless a stop was asked for first (then throws
    /// `.stoppedBeforeWriting`). Sequentially consistent with `stop(signal:)`: a stop either
    /// sees the run writing or is seen here, never neither.
    func beginWriting() throws(MigrationError) {
        writing.store(true, ordering: .sequentiallyConsistent)
        guard flag.load(ordering: .sequentiallyConsistent) else { return }
        writing.store(false, ordering: .sequentiallyConsistent)
        try checkBeforeWriting("the preflight")
    }

    /// Throws `.stoppedBeforeWriting` when a stop was asked for; `phase` says where the run was.
    public func checkBeforeWriting(_ phase: String) throws(MigrationError) {
        guard isStopped else { return }
        throw stoppedBeforeWriting(phase)
    }

    /// The error of a stop before the first write, `phase` saying where the run was.
    func stoppedBeforeWriting(_ phase: String) -> MigrationError {
        var error = MigrationError(.stoppedBeforeWriting, "stopped on request during \(phase), before the first write; nothing was written")
        error.signal = signal
        return error
    }
}
