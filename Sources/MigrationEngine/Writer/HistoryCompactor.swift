import EtcdGateway
import Logging

import PlatformShim

/// Compacts etcd's history behind the writes (`SpacePolicy.compactEvery`): physical
/// compaction up to the run's latest write frees the old values it replaced where bbolt can
/// reuse their pages. History before the run is gone with it (the backup keeps every
/// original value).
///
/// The compactions run on a thread of their own beside the writers (`run()`): a
/// physical compaction returns only once etcd has deleted the old revisions (about half a
/// second each on a 100k-key cluster, measured), which a writer waiting for it added to
/// the run once per interval: 2.5× a plain run.
final class HistoryCompactor: Sendable {
    private struct State {
        var sinceLast = 0
        var latest: Int64 = 0
        var count = 0
        /// The writers are done: `run()` returns.
        var finished = false
    }
    private let store: any KeyValueService
    private let every: Int
    private let logger: Logger
    private let state = ConditionLock(State())

    init(store: any KeyValueService, every: Int, logger: Logger) {
        self.store = store
        self.every = max(1, every)
        self.logger = logger
    }

    /// Compactions made so far.
    var count: Int { state.withLock { $0.count } }

    /// Compacts to `revision` now; a refusal (permission) stops the run.
    func compactNow(to revision: Int64) throws(MigrationError) {
        do {
            try store.compact(revision: revision, physical: true)
        } catch {
            // `.compacted`: someone compacted past it already, which is as good.
            guard error.code == .compacted else {
                throw MigrationError.store(error, while: "compacting etcd's history to revision \(revision)")
            }
        }
        state.withLock { $0.count += 1 }
    }

    /// Called by the writers after each landed txn with the records it wrote (record writes,
    /// not txns: what grows the backend). Only counts, and wakes `run()` when a compaction is due.
    func wrote(revision: Int64, records: Int = 1) {
        let due = state.withLock { s in
            s.latest = max(s.latest, revision)
            s.sinceLast += records
            return s.sinceLast >= every
        }
        if due { state.wakeWaiters() }
    }

    /// The writes are over: `run()` returns (without a last compaction).
    func writersFinished() {
        state.withLockWakingWaiters { $0.finished = true }
    }

    /// Compacts up to the latest landed write each time `every` records have landed since the
    /// last compaction, until `writersFinished()`; asleep in between. A failure is logged,
    /// not fatal: NOSPACE remains the backstop and stops the run resumably.
    func run() {
        while true {
            let due: Int64? = state.wait(
                until: { $0.finished || $0.sinceLast >= every },
                then: { s in
                    guard !s.finished else { return nil }
                    s.sinceLast = 0
                    return s.latest
                })
            guard let due else { return }
            do {
                try compactNow(to: due)
            } catch {
                logger.warning("compaction failed; going on", metadata: ["revision": "\(due)", "error": "\(error.message)"])
            }
        }
    }
}
