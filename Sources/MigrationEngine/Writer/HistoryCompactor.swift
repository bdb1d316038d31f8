import EtcdGateway
import Logging
import Synchronization

/// Compacts etcd's history behind the writes (`SpacePolicy.compactEvery`): physical
/// compaction up to the run's latest write frees the old values it replaced, and bbolt
/// reuses the freed pages, so the backend stops growing by a copy of every record. History
/// before the run is gone with it (the backup keeps every original value).
final class HistoryCompactor: Sendable {
    private struct State {
        var sinceLast = 0
        var latest: Int64 = 0
        var busy = false
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

    /// Called after each landed txn with the records it wrote; every `every` records (record
    /// writes, not txns: what grows the backend), the caller's writer compacts up to the
    /// latest revision seen while the other writers go on. A failure is logged, not fatal:
    /// NOSPACE remains the backstop and stops the run resumably.
    func wrote(revision: Int64, records: Int = 1) {
        let due: Int64? = state.withLock { s in
            s.latest = max(s.latest, revision)
            s.sinceLast += records
            guard s.sinceLast >= every, !s.busy else { return nil }
            s.sinceLast = 0
            s.busy = true
            return s.latest
        }
        guard let due else { return }
        defer { state.withLock { $0.busy = false } }
        do {
            try compactNow(to: due)
        } catch {
            logger.warning("compaction failed; going on", metadata: ["revision": "\(due)", "error": "\(error.message)"])
        }
    }
}
