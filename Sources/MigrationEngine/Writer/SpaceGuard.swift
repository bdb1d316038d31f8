import EtcdGateway
import Logging
import Synchronization

import PlatformShim

/// How a run keeps etcd's backend under its quota: chosen from `--compact` and what the
/// etcd user may do (`SpacePolicy.mode(permitsDefragmentation:)`).
public enum SpaceMode: String, Sendable, Hashable, Codable {
    /// History grows with every write; the guard stops the run before the quota.
    case plain
    /// Physical compaction behind the writes: bbolt reuses the freed pages, but the file
    /// never shrinks (the user may not defragment), so the guard may still stop the run.
    case compaction
    /// When a member nears the guard's limit: compaction to the latest write, then each
    /// member defragmented (followers first, the leader last), which shrinks every file to
    /// what is in use. Needs the root role where auth is on.
    case compactionAndDefragmentation
}

/// The line the guard holds every member's backend under.
public struct SpaceLimits: Sendable, Hashable, Encodable {
    /// etcd's `--quota-backend-bytes`.
    public var quotaBytes: Int64
    /// Kept free below the quota when the guard stops a run: the run's last journal writes
    /// and pachd's own fit in it, and etcd never raises NOSPACE.
    public var reserveBytes: Int64
    /// The least room below the limit worth compacting and defragmenting for: a run left
    /// with less after doing so needs more room than the quota gives, and stops.
    public var minimumWindowBytes: Int64

    public var limitBytes: Int64 { quotaBytes - reserveBytes }

    public init(quotaBytes: Int64) {
        self.quotaBytes = quotaBytes
        reserveBytes = max(256 << 10, quotaBytes / 100)
        minimumWindowBytes = max(128 << 10, quotaBytes / 200)
    }
}

/// What the guard did during a run.
public struct SpaceGuardReport: Sendable, Hashable, Encodable {
    public var mode: SpaceMode
    public var limits: SpaceLimits
    /// Times every member's size was read.
    public var measurements = 0
    /// Compaction-and-defragmentation rounds (`compactionAndDefragmentation` only).
    public var rounds = 0
    /// Members defragmented, counting each round.
    public var defragmentations = 0
    /// The largest backend any member reported during the run.
    public var peakBytes: Int64 = 0
}

/// Keeps a writing run's growth under etcd's space quota, so that etcd never raises its
/// NOSPACE alarm (which makes the cluster read-only for everyone, pachd included).
///
/// Every txn asks `admit` for its expected growth (`SpaceEstimate.growth`) before it is
/// sent. Admissions draw on a budget of half the room last measured below the limit
/// (`SpaceLimits`), minus what was admitted too recently to show in a member's size; when
/// the budget runs out, every member's size is read again. So the reads come more often
/// as the room shrinks, and a growth twice the model's still lands under the limit. When
/// the room is gone, the run makes more (`compactionAndDefragmentation`) or stops with
/// `.outOfSpace`, resumable, the reserve still free.
final class SpaceGuard: Sendable {
    private struct State {
        /// Bytes of growth admitted until the next measurement.
        var budget: Int64 = 0
        var inFlight = 0
        var latestRevision: Int64
        /// Modelled growth admitted lately, with when: etcd commits its backend in batches
        /// (every 100 ms by default) and followers apply after the leader, so a member's
        /// size does not show it yet.
        var recent: [(at: ContinuousClock.Instant, bytes: Int64)] = []
        /// Modelled growth admitted since the run began.
        var admitted: Int64 = 0
        /// The last measurement: the largest backend, and the modelled growth it shows.
        var baseline: (largest: Int64, shown: Int64)?
        /// The backend's growth per byte of modelled growth, the most seen since the run
        /// began or the last round; `initialGrowthRatio` until one is seen (`learned`).
        var growthRatio = SpaceGuard.initialGrowthRatio
        var learned = false
        /// Records landed since the last compaction of a round: what the next one costs.
        var uncompactedRecords: Int64 = 0
        var report: SpaceGuardReport
    }
    /// Before a measurement shows it (the guard then admits little at a time): the model
    /// counts the growth of a backend with free pages; a freshly defragmented one grows
    /// faster (measured: 1.7× to 4.3× on 3.1.4).
    static let initialGrowthRatio = 2.0
    /// Growth between two measurements too small to tell a ratio from a page split.
    static let leastGrowthToLearnFrom: Int64 = 64 << 10
    /// A ratio past this is a measurement's noise, not the backend's growth.
    static let largestGrowthRatio = 8.0
    /// What compacting one rewritten record's old revision away grows the backend by, for a
    /// moment: the old revisions lie scattered through the file, so the compaction rewrites
    /// about a page for each, and with no free page (after a defragmentation) each goes to
    /// the file's end until the compaction's commit frees them. Measured on 3.1.4: 5.2 MB
    /// for 1,400 records compacted at once, 3.7 KB a record.
    static let compactionGrowthPerRecord: Int64 = 4096
    /// How long admitted growth may take to show in every member's size: etcd's default
    /// batch interval (100 ms) and a follower's apply, with room to spare.
    static let defaultReportingLag: Duration = .milliseconds(250)
    /// How many admissions `recent` holds before the expired ones are dropped.
    static let recentTrimCount = 1024
    /// Admissions still held for the reporting lag (for tests: it stays bounded).
    var recentAdmissions: Int { state.withLock { $0.recent.count } }

    private let store: any KeyValueService
    private let compactor: HistoryCompactor?
    private let reportingLag: Duration
    /// How long a measurement waits for etcd to come back.
    private let patience: Duration
    private let logger: Logger
    /// Held by one admission at a time, and through a measurement or a round of
    /// compaction and defragmentation: the other writers wait at it.
    private let gate = Mutex(())
    /// Its condition wakes a round waiting for the txns in flight to land.
    private let state: ConditionLock<State>

    /// `compactor`: required for the compacting modes; `startRevision`: the run's fence, the
    /// revision compacted to if a round comes before any write landed.
    init(
        store: any KeyValueService, mode: SpaceMode, limits: SpaceLimits, compactor: HistoryCompactor?, startRevision: Int64,
        reportingLag: Duration = defaultReportingLag, patience: Duration = .seconds(30), logger: Logger
    ) {
        precondition(mode == .plain || compactor != nil, "the compacting modes compact through the run's compactor")
        self.store = store
        self.compactor = compactor
        self.reportingLag = reportingLag
        self.patience = patience
        self.logger = logger
        state = ConditionLock(State(latestRevision: startRevision, report: SpaceGuardReport(mode: mode, limits: limits)))
    }

    var report: SpaceGuardReport { state.withLock { $0.report } }

    /// Whether the run's compactor should also compact behind the writes: not where rounds
    /// compact, whose compaction of what accumulated is reserved for (`uncompactedRecords`).
    var compactsInRounds: Bool { state.withLock { $0.report.mode == .compactionAndDefragmentation } }

    /// Waits until a txn of `records` records that grows the backend by `modelled` bytes
    /// (`SpaceEstimate.growth`) fits under the limit, measuring, or compacting and
    /// defragmenting, as needed; throws `.outOfSpace` when it cannot. Every admission is
    /// followed by `landed` or `abandoned`.
    func admit(_ modelled: Int64, records: Int) throws(MigrationError) {
        try gate.withLock { _ throws(MigrationError) in
            if take(modelled, records: records, force: false) { return }
            try refill(for: modelled, records: records)
            _ = take(modelled, records: records, force: true)
        }
    }

    /// The admitted txn landed at `revision`.
    func landed(revision: Int64) {
        let none = state.withLock { s in
            s.inFlight -= 1
            s.latestRevision = max(s.latestRevision, revision)
            return s.inFlight == 0
        }
        if none { state.wakeWaiters() }
    }

    /// The admitted txn was not sent, or failed.
    func abandoned() {
        let none = state.withLock { s in
            s.inFlight -= 1
            return s.inFlight == 0
        }
        if none { state.wakeWaiters() }
    }

    /// A txn's cost against the room: its modelled growth at the ratio seen, and in rounds
    /// mode the compaction of its records' old revisions to come.
    private static func cost(_ s: State, modelled: Int64, records: Int) -> Int64 {
        let compaction = s.report.mode == .compactionAndDefragmentation ? Int64(records) * compactionGrowthPerRecord : 0
        return Int64(s.growthRatio * Double(modelled)) + compaction
    }

    private func take(_ modelled: Int64, records: Int, force: Bool) -> Bool {
        state.withLock { s in
            let cost = Self.cost(s, modelled: modelled, records: records)
            guard force || s.budget >= cost else { return false }
            s.budget -= cost
            s.inFlight += 1
            s.admitted += modelled
            s.uncompactedRecords += Int64(records)
            let now = ContinuousClock.now
            // Only the last `reportingLag` counts (`measureRoom`), and measurements can be
            // minutes apart: without this, an entry a txn (155k at 1M keys, MiBs of RSS).
            if s.recent.count >= Self.recentTrimCount { s.recent.removeAll { now - $0.at > reportingLag } }
            s.recent.append((now, modelled))
            return true
        }
    }

    private func refill(for modelled: Int64, records: Int) throws(MigrationError) {
        let (mode, limits) = state.withLock { ($0.report.mode, $0.report.limits) }
        // Half the room, always: a txn that grows the backend twice as much again as
        // measured still lands under the limit.
        var (room, members) = try measureRoom()
        var needed = 2 * state.withLock { Self.cost($0, modelled: modelled, records: records) }
        if mode == .compactionAndDefragmentation && room < max(needed, limits.minimumWindowBytes) {
            try compactAndDefragment()
            (room, members) = try measureRoom()
            needed = 2 * state.withLock { Self.cost($0, modelled: modelled, records: records) }
            guard room >= max(needed, limits.minimumWindowBytes) else {
                throw stopped(members, limits: limits, mode: mode, afterRound: true)
            }
        }
        guard room >= needed else { throw stopped(members, limits: limits, mode: mode, afterRound: false) }
        state.withLock { s in
            // Until the ratio is known (right after a defragmentation, full pages split on
            // every insert), little at a time.
            let cap = s.learned ? Int64.max : max(needed / 2, Int64(2 * s.growthRatio * Double(Self.leastGrowthToLearnFrom)))
            s.budget = min(cap, room / 2)
        }
    }

    /// The room below the limit: the limit less the largest member's backend, what was
    /// admitted too recently to show in it, and in rounds mode the compaction still to come
    /// of what landed since the last round. Updates the ratio seen.
    private func measureRoom() throws(MigrationError) -> (room: Int64, members: [MemberStatus]) {
        let members = try memberStatuses()
        let largest = members.map(\.dbSize).max() ?? 0
        return state.withLock { s in
            let now = ContinuousClock.now
            s.recent.removeAll { now - $0.at > reportingLag }
            s.report.measurements += 1
            s.report.peakBytes = max(s.report.peakBytes, largest)
            let unseen = s.recent.reduce(0) { $0 + $1.bytes }
            let shown = s.admitted - unseen
            if let baseline = s.baseline, shown - baseline.shown >= Self.leastGrowthToLearnFrom {
                let ratio = min(Self.largestGrowthRatio, max(1, Double(largest - baseline.largest) / Double(shown - baseline.shown)))
                s.growthRatio = s.learned ? max(s.growthRatio, ratio) : ratio
                s.learned = true
            }
            s.baseline = (largest, shown)
            let pendingCompaction =
                s.report.mode == .compactionAndDefragmentation ? s.uncompactedRecords * Self.compactionGrowthPerRecord : 0
            logger.debug(
                "space guard: measured",
                metadata: [
                    "largest": "\(largest)", "unseen": "\(unseen)", "limit": "\(s.report.limits.limitBytes)", "ratio": "\(s.growthRatio)",
                    "pendingCompaction": "\(pendingCompaction)",
                ])
            return (s.report.limits.limitBytes - largest - Int64(s.growthRatio * Double(unseen)) - pendingCompaction, members)
        }
    }

    /// Every member's status, retried through etcd's restart or an election for as long as
    /// the writers would ride it out (`patience`: the lock's TTL); then the run stops
    /// resumably (`Migrator.resumableIfTransient`).
    private func memberStatuses() throws(MigrationError) -> [MemberStatus] {
        let deadline = ContinuousClock.now + patience
        var delay = Duration.milliseconds(100)
        while true {
            do {
                return try store.memberStatuses()
            } catch {
                guard error.isTransient, ContinuousClock.now + delay < deadline else {
                    throw MigrationError.store(error, while: "reading each member's backend size, which keeps the run under etcd's quota")
                }
                logger.warning("etcd unavailable; retrying", metadata: ["while": "reading each member's backend size", "error": "\(error.message)"])
                ContinuousClockSleep.sleep(for: delay)
                delay = min(delay * 2, .seconds(1))
            }
        }
    }

    /// Compacts to the latest landed write, then defragments every member, followers
    /// first and the leader last (a defragmenting leader stalls the whole cluster, a
    /// follower only itself). No txn is in flight meanwhile: the writers wait at the gate.
    /// The compaction grows the files while it deletes (`compactionGrowthPerRecord`): the
    /// admissions reserved room for it.
    private func compactAndDefragment() throws(MigrationError) {
        let revision = state.wait(until: { $0.inFlight == 0 }, then: { $0.latestRevision })
        let start = ContinuousClock.now
        try compactor?.compactNow(to: revision)
        let members = try memberStatuses().sorted { !$0.isLeader && $1.isLeader }
        for member in members {
            // A member rewrites its file at tens of MB/s; a timeout well past that.
            let timeout = Duration.seconds(max(120, member.dbSize / (4 << 20)))
            do {
                try store.defragment(memberID: member.memberID, timeout: timeout)
            } catch {
                throw MigrationError.store(error, while: "defragmenting member \(member.name) (\(member.endpoint))")
            }
            state.withLock { $0.report.defragmentations += 1 }
        }
        state.withLock { s in
            s.report.rounds += 1
            s.recent.removeAll()
            s.uncompactedRecords = 0
            // The files shrank: the next measurement starts a new baseline, and the growth
            // of freshly defragmented files is learnt again.
            s.baseline = nil
            s.learned = false
            s.growthRatio = Self.initialGrowthRatio
        }
        logger.info(
            "compacted and defragmented etcd to keep under its quota",
            metadata: [
                "revision": "\(revision)", "members": "\(members.map(\.name))", "leader": "\(members.last { $0.isLeader }?.name ?? "")",
                "seconds": "\(seconds(ContinuousClock.now - start))",
            ])
    }

    private func stopped(_ members: [MemberStatus], limits: SpaceLimits, mode: SpaceMode, afterRound: Bool) -> MigrationError {
        let largest = members.max { $0.dbSize < $1.dbSize }
        let why =
            afterRound
            ? "even after compacting and defragmenting every member, the largest backend (\(largest?.dbSize ?? 0) bytes) leaves "
                + "less than \(limits.minimumWindowBytes) bytes below the guard's limit: the run needs more room than the quota gives"
            : "the largest backend (member \(largest?.name ?? "?"), \(largest?.dbSize ?? 0) bytes) has reached the guard's limit"
        var error = MigrationError(
            .outOfSpace,
            "stopped before etcd's space quota: \(why). The limit keeps \(limits.reserveBytes) bytes of the quota's "
                + "\(limits.quotaBytes) free, so etcd raised no alarm and the cluster is writable; everything written so far is recorded"
        )
        error.space = OutOfSpace(
            compactTo: members.map(\.revision).max(), members: members, guardStopped: true, mode: mode)
        return error
    }
}
