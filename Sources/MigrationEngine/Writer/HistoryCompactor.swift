import EtcdGateway
import Glibc
import Logging
import Synchronization

import PlatformShim

/// Compacts etcd's history behind the writes (`SpacePolicy.compactEvery`): physical
/// compaction up to the run's latest write frees the old values it replaced where bbolt can
/// reuse their pages. History before the run is gone with it (the backup keeps every
/// original value).
///
/// The compactions run on a thread of their own beside the writers (`run(until:)`): a
/// physical compaction returns only once etcd has deleted the old revisions (about half a
/// second each on a 100k-key cluster, measured), which a writer waiting for it added to
/// the run once per interval: 2.5× a plain run.
final class HistoryCompactor: Sendable {
    private struct State {
        var sinceLast = 0
        var latest: Int64 = 0
        var count = 0
    }
    private let store: any KeyValueService
    private let every: Int
    private let logger: Logger
    private let state = Mutex(State())

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
    /// not txns: what grows the backend). Only counts; `run(until:)` compacts.
    func wrote(revision: Int64, records: Int = 1) {
        state.withLock { s in
            s.latest = max(s.latest, revision)
            s.sinceLast += records
        }
    }

    /// Compacts up to the latest landed write each time `every` records have landed since the
    /// last compaction, until `writersFinished` says the writes are over. A failure is logged,
    /// not fatal: NOSPACE remains the backstop and stops the run resumably.
    func run(until writersFinished: () -> Bool) {
        while !writersFinished() {
            let due: Int64? = state.withLock { s in
                guard s.sinceLast >= every else { return nil }
                s.sinceLast = 0
                return s.latest
            }
            guard let due else {
                usleep(20_000)
                continue
            }
            do {
                try compactNow(to: due)
            } catch {
                logger.warning("compaction failed; going on", metadata: ["revision": "\(due)", "error": "\(error.message)"])
            }
        }
    }
}
