import EtcdGateway
import Logging
import Synchronization

import PlatformShim

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public struct MigrationOptions: Sendable {
    public enum BackupChoice: Sendable, Hashable {
        /// `--no-backup`, chosen explicitly.
        case none
        case file(String)
    }
    /// Read, convert and check everything; write nothing, not even the lock.
    public var dryRun = false
    public var backup: BackupChoice
    public var lock = LockOptions()
    /// Writers at the same time, each over its own connection and with its own share of the
    /// lanes, whose next records it packs into shared txns.
    public var concurrency = 4
    public var pageSize = 1000
    /// Entries sorted in memory at a time before they go to the on-disk sort (the scan's
    /// memory bound); small values exercise the merge in tests.
    public var sortChunk = 20_000
    /// For the lock holder record and the history.
    public var command = "migrate"
    public var toolVersion = "dev"
    /// Who the lock holder record names: the caller knows where it runs (a pod, say).
    public var identity = HolderIdentity.thisProcess
    /// etcd's space quota, and whether to compact behind the writes.
    public var space = SpacePolicy()
    /// Measure the latencies a time forecast needs (about thirty requests that change
    /// nothing); off, the run makes no forecast.
    public var measureForecast = true
    /// Migrate a cluster that a stopped restore left half restored (`RestoreInProgress`),
    /// from what it holds now, instead of refusing until the restore is run again to its end.
    public var abandonRestore = false
    /// Called once the scan, the space check and the backup are done, before the first write,
    /// with what is known then (`scan`, `space`, `backup`, `unfinishedRun`): so that the
    /// operator reads the plan while the records are written, and an interrupted run has
    /// said what it was doing. Not called by a dry run.
    public var beforeFirstWrite: (@Sendable (MigrationResult) -> Void)?

    public init(backup: BackupChoice) {
        self.backup = backup
    }
}

/// What a run (or a restore) is doing. A string on the wire (the lock's holder record and
/// the run's state), as these names: a record a newer tool wrote with a step this one does
/// not know still decodes.
public struct MigrationStep: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let starting = MigrationStep(rawValue: "starting")
    public static let scan = MigrationStep(rawValue: "scan")
    public static let backup = MigrationStep(rawValue: "backup")
    public static let rewrite = MigrationStep(rawValue: "rewrite")
    public static let check = MigrationStep(rawValue: "check")
    public static let done = MigrationStep(rawValue: "done")
    public static let restore = MigrationStep(rawValue: "restore")
}

public struct ProgressEvent: Sendable {
    public var step: MigrationStep
    public var done: Int
    public var total: Int
}

public struct MigrationResult: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// Nothing to do: the cluster is already stamped with the target version.
        case alreadyMigrated(to: String)
        case dryRun
        case migrated
    }
    public var outcome: Outcome
    public var scan: ClusterScan?
    public var backup: BackupInfo?
    /// True when this run continued an interrupted one.
    public var resumed = false
    /// The interrupted run this one continues (or, for a dry run, would continue): its id,
    /// first attempt's backup and how far it got.
    public var unfinishedRun: UnfinishedRun?
    /// Records written by this invocation.
    public var written = 0
    /// Of `written`, records re-put unchanged only to keep their group's order.
    public var keptInOrder = 0
    /// The txns that wrote them: records of different ordering groups share txns, so as few
    /// as the longest group has records (`ClusterScan.longestLane`).
    public var txns = 0
    /// The run's revision fence: the revision it first read the cluster at.
    public var startRevision: Int64 = 0
    /// The space preflight; nil where etcd would not report its size (`spaceUnavailable` says why).
    public var space: SpaceEstimate?
    public var spaceUnavailable: String?
    /// Physical compactions made behind the writes (`SpacePolicy.compactEvery`).
    public var compactions = 0
    /// What the space guard did (nil where etcd would not say its size, or nothing was written).
    public var spaceGuard: SpaceGuardReport?
    /// How long the run takes from here (`plan`, a dry run, and `migrate` before its first
    /// write); nil where the latencies could not be measured (`forecastUnavailable` says why).
    public var forecast: TimeForecast?
    public var forecastUnavailable: String?
    /// What each phase of this invocation took, in seconds (nil: not run).
    public var took = PhaseTimes()
    /// How the check after the writes knew no one else wrote (nil: it did not run).
    public var check: ForeignWriteCheck?
}

/// How the check after the writes knew that no one else wrote while the run did.
public struct ForeignWriteCheck: Sendable, Hashable, Codable {
    /// etcd's revisions since the run started (one a write, anywhere in this etcd).
    public var revisionsSinceStart: Int64
    /// Nil when every one of those revisions was the run's own write, so no key needed
    /// reading again; else the keys read again (some revision was not known to be the run's:
    /// another writer anywhere in this etcd, or an earlier attempt's writes).
    public var keysRead: Int?
}

/// Seconds each phase of a run took.
public struct PhaseTimes: Sendable, Hashable, Codable {
    public var scan: Double?
    public var backup: Double?
    public var write: Double?
    /// The check after the writes, for writes by others (`MigrationResult.check` says how).
    public var check: Double?
}

/// An interrupted run as the journal records it, when a later invocation picks it up.
public struct UnfinishedRun: Sendable, Hashable, Encodable {
    public var runID: String
    public var startedAt: String
    public var status: RunState.Status
    /// Its last attempt was interrupted (a stop on request, or etcd away for too long: exit
    /// 7), which the journal records as `failed` with the code `interrupted`.
    public var interrupted: Bool
    /// Records its earlier attempts wrote, of `records`.
    public var written: Int
    public var records: Int
    /// The backup its first attempt took (nil with `--no-backup`): only that one holds the
    /// records before any was rewritten, so a resume takes none.
    public var backupPath: String?
    public var backupHost: String?
    public var backupSHA256: String?

    init(_ state: RunState, cursors: [LaneID: LaneCursor]) {
        runID = state.runID
        startedAt = state.startedAt
        status = state.status
        interrupted = state.stoppedOnRequest
        written = cursors.values.reduce(0) { $0 + $1.written }
        records = state.records
        backupPath = state.backupPath
        backupHost = state.backupHost
        backupSHA256 = state.backupSHA256
    }
}

/// Runs one migration against a live cluster: lock, preflight scan, backup, fenced
/// lane writes, journal, completion stamp. See docs/architecture.md, "How a migration runs".
public struct Migrator: Sendable {
    public let store: any KeyValueService
    public let migration: any RecordMigration
    public let namespace: Namespace
    public let logger: Logger

    public init(store: any KeyValueService, migration: any RecordMigration, namespace: Namespace, logger: Logger) {
        self.store = store
        self.migration = migration
        self.namespace = namespace
        self.logger = logger
    }

    public func run(
        options: MigrationOptions, stop: StopSignal = StopSignal(),
        progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in }
    ) throws(MigrationError) -> MigrationResult {
        let journal = JournalReader(store: store, namespace: namespace)
        let stamped = try journal.stampedVersion()
        let existing = try journal.state()
        if !options.abandonRestore { try journal.refuseIfHalfRestored() }
        if let stamped, existing?.status != .running && existing?.status != .failed {
            if stamped == migration.toVersion {
                return MigrationResult(outcome: .alreadyMigrated(to: stamped))
            }
            if stamped != migration.fromVersion {
                throw MigrationError(
                    .unsupportedVersion,
                    "the cluster is stamped \(stamped) by an earlier migration, not \(migration.fromVersion); "
                        + "refusing to migrate it from \(migration.fromVersion)"
                )
            }
        }

        try stop.checkBeforeWriting("the preflight")
        if options.dryRun {
            let scanStart = ContinuousClock.now
            let scan = try retryingCompaction { () throws(MigrationError) -> ClusterScan in
                let unfinished = existing.flatMap { $0.status == .done ? nil : $0 }
                return try scanCluster(
                    options: options, runStartRevision: unfinished?.startRevision,
                    resumeCursors: unfinished == nil ? [:] : try journal.laneCursors().mapValues(\.lastRevision),
                    keepAllKeys: false, stop: stop, progress: progress)
            }
            var result = MigrationResult(outcome: .dryRun, scan: scan, startRevision: scan.revision)
            result.took.scan = seconds(ContinuousClock.now - scanStart)
            let backupSeconds = Backup.calibratedSeconds(
                keys: scan.keysScanned, averageBytes: Int(scan.bytesRead / Int64(max(1, scan.keysScanned))))
            if options.measureForecast {
                forecast(
                    scan, scanSeconds: result.took.scan ?? 0, backupSeconds: backupSeconds,
                    resuming: existing?.status == .running || existing?.status == .failed, stop: stop,
                    into: &result)
            }
            if let unfinished = existing, unfinished.status == .running || unfinished.status == .failed {
                result.unfinishedRun = UnfinishedRun(unfinished, cursors: try journal.laneCursors())
            }
            switch estimateSpace(scan, options.space) {
            case .success(let space): result.space = space
            case .failure(let error): result.spaceUnavailable = error.message
            }
            return result
        }

        let holder = LockHolder.current(
            command: options.command, toolVersion: options.toolVersion, from: migration.fromVersion, to: migration.toVersion,
            identity: options.identity)
        let lock = try MigrationLock.acquire(
            store: store, namespace: namespace, holder: holder, options: options.lock, stop: stop, logger: logger)
        do {
            let result = try runLocked(options: options, lock: lock, holder: holder, stop: stop, progress: progress)
            lock.release()
            return result
        } catch {
            var error = Self.resumableIfTransient(error)
            // Asked to stop while etcd did not answer: the records of the stop below would each
            // wait out the request timeout too, and the next run needs none of them.
            let stoppedWhileEtcdWasAway = stop.isStopped && error.underlying?.isTransient == true
            // Before the first write, the run says it stopped (exit 130, 143 or 129) even when
            // what it was waiting on when the signal came was etcd, which then failed.
            if error.code == .interrupted, let underlying = error.underlying, stop.isStopped, !stop.hasBegunWriting {
                error = stop.stoppedBeforeWriting("a call etcd did not answer (\(underlying.message))")
            }
            if error.code == .stoppedBeforeWriting, let unfinished = existing, unfinished.status != .done {
                // This attempt wrote nothing, but an earlier one of the same run did.
                error.message +=
                    " by this attempt; the cluster is still partly migrated by run \(unfinished.runID) "
                    + "(started \(unfinished.startedAt)): run the same command again to resume it"
            }
            if error.code == .outOfSpace, error.space?.estimate == nil, error.space?.members.isEmpty ?? false {
                // Reads still work under NOSPACE: name the revision to compact to and the
                // members to defragment.
                let members = (try? store.memberStatuses()) ?? []
                error.space?.members = members
                error.space?.compactTo = members.map(\.revision).max() ?? (try? store.status().header.revision)
            }
            if !lock.isLost && error.code != .lockHeld && !stoppedWhileEtcdWasAway {
                recordFailure(error, lock: lock)
                if error.code == .stoppedBeforeWriting { recordStoppedBeforeWriting(error, lock: lock, holder: holder) }
            }
            if !lock.release() && !lock.isLost { error.lockLeftHeldSeconds = lock.ttl }
            throw error
        }
    }

    /// The run once the lock is held: what to resume, the scan and the backup, the run's
    /// state, the writes and their check, the completion stamp.
    private func runLocked(
        options: MigrationOptions, lock: MigrationLock, holder: LockHolder, stop: StopSignal,
        progress: @escaping @Sendable (ProgressEvent) -> Void
    ) throws(MigrationError) -> MigrationResult {
        let journal = JournalReader(store: store, namespace: namespace)
        // Re-read under the lock: another migrator may have finished while we waited.
        if let stamped = try journal.stampedVersion(), stamped == migration.toVersion,
            try journal.state()?.status == .done
        {
            return MigrationResult(outcome: .alreadyMigrated(to: stamped))
        }
        if !options.abandonRestore { try journal.refuseIfHalfRestored() }
        let state = try runToResume(journal)
        try requireWritePermission()
        if state == nil, case .file(let path) = options.backup { try Backup.requireCreatable(path) }
        if let state { logger.info("resuming an interrupted migration", metadata: ["run": "\(state.runID)"]) }

        lock.report(step: .scan)
        // A resumed run must finish every lane tail it started, changed or not (the order rule).
        let cursorsBefore = state == nil ? [:] : try journal.laneCursors()
        var result = MigrationResult(outcome: .migrated, resumed: state != nil)
        result.unfinishedRun = state.map { UnfinishedRun($0, cursors: cursorsBefore) }
        let scan = try scanAndBackUp(
            options: options, resuming: state, resumeCursors: cursorsBefore.mapValues(\.lastRevision), lock: lock, stop: stop,
            progress: progress, into: &result)
        result.scan = scan

        let run = try runState(continuing: state, scan: scan, backup: result.backup, lock: lock, holder: holder)
        result.startRevision = run.startRevision
        if options.measureForecast {
            forecast(
                scan, scanSeconds: result.took.scan ?? 0, backupSeconds: result.took.backup, resuming: state != nil, stop: stop,
                into: &result)
        }
        options.beforeFirstWrite?(result)
        // The last moment a stop ends the run with nothing written; from here on it finishes
        // the txn in flight and leaves the run resumable.
        try stop.beginWriting()
        // With --abandon-restore, the record of the stopped restore goes with the first write.
        let stateRevision = try fencedPut(
            lock, [(namespace.stateKey, JSONCoding.encode(run))], deleting: [namespace.restoreKey], doing: "recording the run's state")

        try writeAndCheck(
            scan, startRevision: run.startRevision, stateRevision: stateRevision, resumed: state != nil, options: options, lock: lock,
            stop: stop, progress: progress, into: &result)
        try recordCompletion(of: run, scan: scan, lock: lock, holder: holder)
        lock.report(step: .done)
        return result
    }

    /// The interrupted run the journal records, if any, to resume; refuses one between
    /// other versions.
    private func runToResume(_ journal: JournalReader) throws(MigrationError) -> RunState? {
        guard let s = try journal.state(), s.status != .done && s.status != .idle else { return nil }
        guard s.from == migration.fromVersion && s.to == migration.toVersion else {
            throw MigrationError(
                .invalidState,
                "an unfinished migration from \(s.from) to \(s.to) (run \(s.runID), started \(s.startedAt)) is recorded; "
                    + "resume it (from \(s.from) to \(s.to)), or restore its backup \(s.backupPath ?? "(none)")"
            )
        }
        return s
    }

    /// The scan, the refusals before any write, and the backup of a fresh run that asked for
    /// one. Nothing is written before the backup is complete: a compaction by someone else
    /// during the scan or the backup restarts both at a newer revision.
    private func scanAndBackUp(
        options: MigrationOptions, resuming state: RunState?, resumeCursors: [LaneID: Int64], lock: MigrationLock,
        stop: StopSignal, progress: @escaping @Sendable (ProgressEvent) -> Void, into result: inout MigrationResult
    ) throws(MigrationError) -> ClusterScan {
        // A backup is written only by a fresh run that asked for one; only it needs every key.
        let writesBackup = state == nil && options.backup != .none
        return try retryingCompaction { () throws(MigrationError) -> ClusterScan in
            let scanStart = ContinuousClock.now
            let scan = try scanCluster(
                options: options, runStartRevision: state?.startRevision, resumeCursors: resumeCursors,
                keepAllKeys: writesBackup, stop: stop, progress: progress)
            result.took.scan = seconds(ContinuousClock.now - scanStart)
            switch try refuseUnlessReady(scan, options.space) {
            case .success(let space): result.space = space
            case .failure(let error): result.spaceUnavailable = error.message
            }
            if writesBackup, case .file(let path) = options.backup {
                let backupStart = ContinuousClock.now
                defer { result.took.backup = seconds(ContinuousClock.now - backupStart) }
                result.backup = try backUp(scan, to: path, options: options, lock: lock, stop: stop, progress: progress)
            }
            return scan
        }
    }

    /// The backup of what `scan` read, or the complete one an earlier attempt left at `path`.
    private func backUp(
        _ scan: ClusterScan, to path: String, options: MigrationOptions, lock: MigrationLock, stop: StopSignal,
        progress: @escaping @Sendable (ProgressEvent) -> Void
    ) throws(MigrationError) -> BackupInfo {
        let total = scan.allKeysCount
        lock.report(step: .backup, done: 0, total: total)
        progress(ProgressEvent(step: .backup, done: 0, total: total))
        if let reused = try Backup.reuse(records: scan.allKeys(), revision: scan.revision, at: path, logger: logger) {
            return reused
        }
        let source = try migration.backupPrefixes.first.map { (prefix) throws(MigrationError) in
            try ClusterIdentity.read(store: store, probe: prefix)
        }
        return try Backup.write(
            records: scan.allKeys(), revision: scan.revision, source: source, toolVersion: options.toolVersion, to: path,
            stop: stop, logger: logger
        ) {
            progress(ProgressEvent(step: .backup, done: $0, total: total))
        }
    }

    /// The run's state as the writes begin: the resumed run's, running again, or a fresh
    /// run's, fenced at the scan's revision.
    private func runState(
        continuing state: RunState?, scan: ClusterScan, backup: BackupInfo?, lock: MigrationLock, holder: LockHolder
    ) throws(MigrationError) -> RunState {
        var run: RunState
        if let state {
            run = state
            run.status = .running
            run.updatedAt = timestamp()
            run.message = nil
        } else {
            try lock.checkHeld()
            let now = timestamp()
            run = RunState(
                status: .running, runID: holder.holderID, from: migration.fromVersion, to: migration.toVersion,
                startRevision: scan.revision, startedAt: now, updatedAt: now, step: .rewrite,
                backupPath: backup?.path, backupHost: backup.map { _ in holder.host }, backupSHA256: backup?.sha256,
                records: scan.pendingCount)
        }
        run.step = .rewrite
        return run
    }

    /// The write phase: the compactor and the space guard, the lanes written, then the check
    /// that no one else wrote meanwhile. `stateRevision`: the revision of the run's state put
    /// just before, one of the run's own writes.
    private func writeAndCheck(
        _ scan: ClusterScan, startRevision: Int64, stateRevision: Int64, resumed: Bool, options: MigrationOptions, lock: MigrationLock,
        stop: StopSignal, progress: @escaping @Sendable (ProgressEvent) -> Void, into result: inout MigrationResult
    ) throws(MigrationError) {
        let compactor = options.space.compactEvery.map { HistoryCompactor(store: store, every: $0, logger: logger) }
        // The first compaction, before the first record: it proves the user may compact
        // (a refusal then stops the run with nothing rewritten).
        try compactor?.compactNow(to: scan.revision)
        // Blind where etcd would not say its size (`spaceUnavailable`): the preflight said so.
        let space = result.space.map {
            SpaceGuard(
                store: store, mode: $0.mode, limits: options.space.limits, compactor: compactor, startRevision: scan.revision,
                patience: .seconds(max(5, lock.ttl)), logger: logger)
        }
        let writeStart = ContinuousClock.now
        let writes = try writeLanes(
            scan: scan, startRevision: startRevision, options: options, lock: lock, stop: stop,
            compactor: compactor, space: space, progress: progress)
        result.spaceGuard = space?.report
        result.took.write = seconds(ContinuousClock.now - writeStart)
        result.written = writes.written
        result.keptInOrder = writes.keptInOrder
        result.txns = writes.txns
        result.compactions = compactor?.count ?? 0
        lock.report(step: .check)
        let checkStart = ContinuousClock.now
        defer { result.took.check = seconds(ContinuousClock.now - checkStart) }
        var ours = writes.revisions
        ours.insert(stateRevision)
        progress(ProgressEvent(step: .check, done: 0, total: 0))
        let revisions = try revisionsSinceStart(startRevision, ours: ours, lock: lock)
        result.check = ForeignWriteCheck(revisionsSinceStart: revisions.count)
        guard !revisions.allOurs else { return }
        result.check?.keysRead = try checkForForeignWrites(
            startRevision: startRevision, ourRevisions: writes.revisions, resumed: resumed, keys: scan.keysScanned,
            stop: stop, progress: progress)
    }

    /// The check's quick answer. etcd gives every write (a put, a delete, a txn that
    /// changes something, anywhere in this etcd) a revision of its own, one after another:
    /// when each revision since the run started is one the run's own writes took, no one else
    /// changed any key, and none needs reading again. When some revision is not known to be
    /// the run's (another writer anywhere in etcd, an earlier attempt's writes for a resumed
    /// run, a write whose reply was lost), every key is read again.
    private func revisionsSinceStart(
        _ startRevision: Int64, ours: RevisionBitmap, lock: MigrationLock
    ) throws(MigrationError) -> (count: Int64, allOurs: Bool) {
        // With no heartbeat in flight: each one that landed before `now` is then counted.
        try lock.withPublicationsSettled { (published) throws(MigrationError) in
            let now = try etcd("reading etcd's revision") { () throws(EtcdError) in
                try store.range(RangeRequest(key: namespace.lockKey, countOnly: true)).header.revision
            }
            var all = ours
            for revision in published where revision > startRevision { all.insert(revision) }
            return (now - startRevision, Int64(all.count) == now - startRevision)
        }
    }

    /// Done: stamps the version, appends the history and clears the cursors in one txn.
    private func recordCompletion(
        of run: RunState, scan: ClusterScan, lock: MigrationLock, holder: LockHolder
    ) throws(MigrationError) {
        let journal = JournalReader(store: store, namespace: namespace)
        let cursors = try journal.laneCursors()
        var counts: [String: Int] = [:]
        for (lane, cursor) in cursors {
            let kind = lane.kind
            counts[HistoryCount(.written, kind: kind).key, default: 0] += cursor.written
            if let kept = cursor.keptInOrder, kept > 0 { counts[HistoryCount(.keptInOrder, kind: kind).key, default: 0] += kept }
        }
        for (kind, n) in scan.alreadyMigrated { counts[HistoryCount(.alreadyMigrated, kind: kind).key, default: 0] += n }
        var done = run
        done.status = .done
        done.step = .done
        done.updatedAt = timestamp()
        let entry = HistoryEntry(
            event: .migrate, at: done.updatedAt, who: holder.who, from: migration.fromVersion, to: migration.toVersion,
            counts: counts, backupPath: done.backupPath, backupSHA256: done.backupSHA256,
            detail: "run \(done.runID), started \(done.startedAt) at revision \(done.startRevision)")
        // Idempotent (same keys, same values), so safe to retry after a dropped connection.
        let doing = "recording the completed migration"
        try FencedTxn(store: store, lock: lock, logger: logger).write(
            [
                .put(PutRequest(key: namespace.stateKey, value: JSONCoding.encode(done))),
                .put(PutRequest(key: namespace.versionKey, value: Array(migration.toVersion.utf8))),
                .put(PutRequest(key: journal.newHistoryKey(runID: done.runID), value: JSONCoding.encode(entry))),
                .deleteRange(.prefix(namespace.lanesPrefix)),
            ], doing: doing, lockLost: { lostLock(doing: doing) })
    }

    /// Measures the latencies and makes the forecast; a failure to measure (a user who may
    /// not write, etcd away) leaves it out with the reason, never stops the run.
    /// `resuming`: the run continues an interrupted one, so its check reads every key again.
    private func forecast(
        _ scan: ClusterScan, scanSeconds: Double, backupSeconds: Double?, resuming: Bool, stop: StopSignal,
        into result: inout MigrationResult
    ) {
        do {
            let latency = try MeasuredLatency.measure(
                store: store, namespace: namespace, recordBytes: Int(scan.writeBytes / Int64(max(1, scan.pendingCount))), stop: stop,
                logger: logger)
            result.forecast = TimeForecast(
                roundTripSeconds: latency.roundTripSeconds, fencedTxnSeconds: latency.fencedTxnSeconds, scanSeconds: scanSeconds,
                backupSeconds: backupSeconds, records: scan.pendingCount, longestChain: scan.longestLane,
                longestChainKind: scan.longestLaneKind, checkReadsEveryKey: resuming, server: latency.server)
        } catch {
            result.forecastUnavailable = error.message
        }
    }

    private func scanCluster(
        options: MigrationOptions, runStartRevision: Int64?, resumeCursors: [LaneID: Int64], keepAllKeys: Bool,
        stop: StopSignal, progress: @escaping @Sendable (ProgressEvent) -> Void
    ) throws(MigrationError) -> ClusterScan {
        // A count-only range per root is cheap, and gives the scan's progress a total.
        var total = 0
        for root in migration.backupPrefixes {
            total += Int((try? store.range(.prefix(root, countOnly: true)).count) ?? 0)
        }
        progress(ProgressEvent(step: .scan, done: 0, total: total))
        return try ClusterScan.scan(
            store: store, migration: migration, runStartRevision: runStartRevision, resumeCursors: resumeCursors,
            pageSize: options.pageSize, keepAllKeys: keepAllKeys, sortChunk: options.sortChunk, stop: stop, logger: logger
        ) { progress(ProgressEvent(step: .scan, done: $0, total: max(total, $0))) }
    }

    /// Refuses, before any write, when a record cannot convert, the cluster is not at rest,
    /// or etcd would run out of space.
    private func refuseUnlessReady(_ scan: ClusterScan, _ policy: SpacePolicy) throws(MigrationError) -> Result<SpaceEstimate, EtcdError> {
        if !scan.failures.isEmpty {
            throw MigrationError(
                .conversionFailed,
                "\(scan.failures.count) record(s) cannot be converted from \(migration.fromVersion) to \(migration.toVersion); nothing was written",
                keys: scan.failures.map(MigrationError.InvolvedKey.conversion))
        }
        let blocking = scan.blockingFindings
        if !blocking.isEmpty {
            let foreign = blocking.contains { $0.kind == .foreignWrite }
            throw MigrationError(
                foreign ? .foreignWrite : .notAtRest,
                foreign
                    ? "records were changed by someone else since this migration started; nothing of theirs was overwritten"
                    : "the cluster is not at rest; nothing was written",
                keys: blocking.map(MigrationError.InvolvedKey.finding))
        }

        let estimate = estimateSpace(scan, policy)
        guard case .success(let space) = estimate else {
            logger.warning("cannot check etcd's space quota; going on", metadata: ["reason": "\(estimate)"])
            return estimate
        }
        if !space.fits {
            let why =
                space.mode == .compactionAndDefragmentation
                ? "even compacted and defragmented, its backend would hold about \(space.liveBytes ?? 0) bytes in use, "
                    + "too close to its quota of \(space.quotaBytes) bytes (less a reserve of \(space.reserveBytes) kept free) to go on"
                : "rewriting \(scan.pendingCount) records would grow its backend from \(space.currentBytes) to about "
                    + "\(space.projectedBytes) bytes, past its quota of \(space.quotaBytes) bytes less a reserve of \(space.reserveBytes) kept free"
            var error = MigrationError(.outOfSpace, "etcd would run out of space: \(why); nothing was written")
            error.space = OutOfSpace(estimate: space, compactTo: scan.revision)
            throw error
        }
        return estimate
    }

    /// Fails, before any record is written, when the etcd user may not write under every
    /// root: a txn whose compare never holds carries a put under each root. etcd checks the
    /// permissions of both branches before it evaluates the compare, so the txn writes
    /// nothing and is refused exactly when a write would be.
    private func requireWritePermission() throws(MigrationError) {
        let probe = TxnRequest(
            compare: [Compare(key: namespace.lockKey, .less, .version(0))],
            success: migration.backupPrefixes.map { .put(PutRequest(key: $0, value: [])) })
        do {
            _ = try store.txn(probe)
        } catch {
            guard error.code == .permissionDenied else { throw MigrationError.store(error, while: "checking write permission") }
            throw MigrationError(
                .store,
                "the etcd user has no write permission under \(migration.backupPrefixes.map(\.printable).joined(separator: " and ")); "
                    + "nothing was written. Grant its role readwrite on those prefixes",
                underlying: error)
        }
    }

    /// The space preflight for what `scan` leaves to write, from the largest member's
    /// backend; a failure where etcd will not say its size (no status permission on 3.1.4
    /// without root, or a store without status): the run's guard is then blind.
    func estimateSpace(_ scan: ClusterScan, _ policy: SpacePolicy) -> Result<SpaceEstimate, EtcdError> {
        Result { () throws(EtcdError) in
            let members = try store.memberStatuses()
            let largest = members.max { $0.dbSize < $1.dbSize }!
            // Only `--compact` asks whether the user may defragment (one request).
            let permitted = policy.compactEvery == nil ? nil : try store.defragmentPermitted()
            return SpaceEstimate(
                currentBytes: largest.dbSize, inUseBytes: members.compactMap(\.dbSizeInUse).max(), writeBytes: scan.writeBytes,
                replacedBytes: scan.replacedBytes, writes: scan.pendingCount, limits: policy.limits,
                mode: policy.mode(defragmentPermitted: permitted ?? false), defragmentPermitted: permitted,
                compactEvery: policy.compactEvery ?? SpacePolicy.defaultCompactionInterval)
        }
    }

    /// Runs `body` again (at most three times) when someone else's compaction removed the
    /// revision it was reading at. Only for work before the first write.
    private func retryingCompaction<T>(_ body: () throws(MigrationError) -> T) throws(MigrationError) -> T {
        var attempt = 1
        while true {
            do {
                return try body()
            } catch {
                guard error.underlying?.code == .compacted, attempt < 3 else { throw error }
                attempt += 1
                logger.warning(
                    "etcd was compacted while the cluster was being read; reading it again at a newer revision",
                    metadata: ["attempt": "\(attempt)", "error": "\(error.message)"])
            }
        }
    }

    /// After the writes: every key under the roots changed since the run started must be
    /// the run's own work. A record must have been written by one of our txns (known for
    /// this invocation; after a resume, earlier invocations' records are vouched for by the
    /// resume scan instead), and any other key (an index, a counter, a companion such as
    /// `openCommits/…`) must have changed in the same txn as one of our records.
    /// `keys`: how many the scan read, the check's progress total (a minute at a million keys
    /// on etcd 3.1: worth a progress line, and worth ending early on a stop: the run is then
    /// left resumable, every record written, and the next attempt checks again and stamps).
    /// Returns the keys read.
    private func checkForForeignWrites(
        startRevision: Int64, ourRevisions: RevisionBitmap, resumed: Bool, keys: Int, stop: StopSignal,
        progress: @Sendable (ProgressEvent) -> Void
    ) throws(MigrationError) -> Int {
        // Streamed page by page (keys only); revisions held as bits, not a set that grows with the cluster.
        // Records written in one txn share its revision: the bitmap holds the txns', and a
        // record at any of them is ours.
        var recordRevisions = RevisionBitmap(above: startRevision)
        var changedOthers: [KeyRevision] = []
        var foreign: [MigrationError.InvolvedKey] = []
        var read = 0
        progress(ProgressEvent(step: .check, done: 0, total: keys))
        for prefix in migration.backupPrefixes {
            var pages = store.pages(prefix: prefix, keysOnly: true)
            while true {
                if stop.isStopped {
                    throw MigrationError(
                        .interrupted,
                        "stopped on request during the check after the writes (\(read) of \(keys) keys read); "
                            + "every record is written, but the cluster is not stamped \(migration.toVersion) yet: "
                            + "run the same command again to check and finish")
                }
                guard let page = try etcd("checking for foreign writes", { () throws(EtcdError) in try pages.next() }) else { break }
                read += page.count
                progress(ProgressEvent(step: .check, done: read, total: max(keys, read)))
                for kv in page where kv.modRevision > startRevision {
                    if migration.lane(of: kv.key) == nil {
                        changedOthers.append(KeyRevision(key: kv.key, modRevision: kv.modRevision))
                    } else {
                        recordRevisions.insert(kv.modRevision)
                        if !resumed && !ourRevisions.contains(kv.modRevision) {
                            foreign.append(MigrationError.InvolvedKey(kv.key.printable, .changed(atRevision: kv.modRevision)))
                        }
                    }
                }
            }
        }
        for entry in changedOthers where !recordRevisions.contains(entry.modRevision) {
            foreign.append(MigrationError.InvolvedKey(entry.key.printable, .changed(atRevision: entry.modRevision)))
        }
        guard foreign.isEmpty else {
            throw MigrationError(
                .foreignWrite,
                "someone else wrote to the cluster during the migration; every record was migrated, fenced, and nothing of theirs was overwritten, "
                    + "but their writes happened while the cluster was meant to be at rest. "
                    + "Find the writer, then check these keys and verify the cluster",
                keys: foreign)
        }
        return read
    }

    /// Writes every lane. The lanes are dealt to `options.concurrency` writers (longest
    /// first, each to the writer with the fewest records so far), each writer over its own
    /// connection, packing its lanes' next records into shared txns (`LaneWriter`): the
    /// longest lane gets a writer of its own and sets the floor, the others finish beside
    /// it. Returns the revisions of the writes (all above `startRevision`; records of one
    /// txn share one), how many records they wrote, how many of them re-put a record
    /// unchanged only to keep its lane's order, and the txns.
    private func writeLanes(
        scan: ClusterScan, startRevision: Int64, options: MigrationOptions, lock: MigrationLock, stop: StopSignal,
        compactor: HistoryCompactor?, space: SpaceGuard?, progress: @escaping @Sendable (ProgressEvent) -> Void
    ) throws(MigrationError) -> (revisions: RevisionBitmap, written: Int, keptInOrder: Int, txns: Int) {
        let cursors = try JournalReader(store: store, namespace: namespace).laneCursors()
        let lanes = scan.pendingCounts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.name < $1.key.name }
        var dealt = Array(repeating: (lanes: [LaneID](), records: 0), count: max(1, min(options.concurrency, lanes.count)))
        for (lane, count) in lanes {
            let least = dealt.indices.min { dealt[$0].records < dealt[$1].records }!
            dealt[least].lanes.append(lane)
            dealt[least].records += count
        }
        let shares = dealt.map(\.lanes)
        logger.debug(
            "writers",
            metadata: [
                "records": "\(dealt.map(\.records))",
                "longestLanes": "\(dealt.map { $0.lanes.map { scan.pendingCounts[$0] ?? 0 }.max() ?? 0 })",
                "lanes": "\(dealt.map(\.lanes.count))",
            ])
        let total = scan.pendingCount
        let done = Atomic<Int>(0)
        let kept = Atomic<Int>(0)
        let revisions = Mutex(RevisionBitmap(above: startRevision))
        let firstError = Mutex<MigrationError?>(nil)
        // The writers' own stop: the first failure stops the others; a signal stops them all.
        let laneStop = StopSignal(following: stop)
        lock.report(step: .rewrite, done: 0, total: total)
        progress(ProgressEvent(step: .rewrite, done: 0, total: total))
        let writer = LaneWriter(store: store, lock: lock, namespace: namespace, stop: laneStop, space: space, logger: logger)
        let writersLeft = Atomic<Int>(shares.count)
        // One thread per writer, and the compactor's beside them, unless the guard's rounds
        // compact (and reserve room for it).
        let background = space?.compactsInRounds == true ? nil : compactor
        // Named so that `top -H` and a debugger tell them apart (writer 0 is this thread).
        let name = { (index: Int) in index < shares.count ? "writer-\(index)" : "compactor" }
        OSThread.forkJoin(shares.count + (background == nil ? 0 : 1), name: name) { index in
            guard index < shares.count else {
                background?.run()
                return
            }
            defer { if writersLeft.subtract(1, ordering: .releasing).newValue == 0 { background?.writersFinished() } }
            guard !shares[index].isEmpty else { return }
            do throws(MigrationError) {
                try writer.write(lanes: shares[index], scan: scan, cursors: cursors) { landed in
                    revisions.withLock { _ = $0.insert(landed.revision) }
                    background?.wrote(revision: landed.revision, records: landed.records)
                    kept.add(landed.keptInOrder, ordering: .relaxed)
                    let n = done.add(landed.records, ordering: .relaxed).newValue
                    lock.report(done: n)
                    progress(ProgressEvent(step: .rewrite, done: n, total: total))
                }
            } catch {
                firstError.withLock { if $0 == nil { $0 = error } }
                laneStop.stop()
            }
        }
        let written = done.load(ordering: .relaxed)
        // A stop on request is worded here, with the whole run's count: a writer knows only its own.
        let failure = firstError.withLock { $0 }
        if stop.isStopped && written < total && (failure == nil || failure?.code == .interrupted) {
            throw MigrationError(
                .interrupted, "stopped on request after \(written) of \(total) records; run the same command again to resume",
                underlying: failure?.underlying)
        }
        if let failure { throw failure }
        // Each landed txn has a revision of its own (a retried one that had landed is
        // recognized, not written again), so the bitmap's count is the txns.
        let landed = revisions.withLock { $0 }
        return (landed, written, kept.load(ordering: .relaxed), landed.count)
    }

    /// A transient etcd failure (etcd restarting, a member gone, no leader) once the lock
    /// is held leaves nothing half-done: the journal and the lane cursors say where to
    /// resume. Say so (`.interrupted`, exit 7) rather than fail like a wrong setting would.
    static func resumableIfTransient(_ error: MigrationError) -> MigrationError {
        guard error.code == .store, let underlying = error.underlying, underlying.isTransient else { return error }
        return MigrationError(
            .interrupted, "\(error.message) Nothing is lost: run the same command again to resume once etcd is back.",
            keys: error.keys, underlying: underlying)
    }

    /// Returns the revision the put took.
    @discardableResult
    private func fencedPut(
        _ lock: MigrationLock, _ puts: [([UInt8], [UInt8])], deleting deletes: [[UInt8]] = [], doing: String, retrying: Bool = true
    ) throws(MigrationError) -> Int64 {
        try FencedTxn(store: store, lock: lock, logger: logger).write(
            puts.map { .put(PutRequest(key: $0.0, value: $0.1)) } + deletes.map { .deleteRange(DeleteRangeRequest(key: $0)) },
            doing: doing, retrying: retrying, lockLost: { lostLock(doing: doing) })
    }

    private func lostLock(doing: String) -> MigrationError {
        MigrationError(.leaseLost, "the lock was lost before \(doing); nothing more was written. Run the same command again to resume.")
    }

    /// A fresh run stopped before its first write leaves no run state; a history entry says
    /// that it started and stopped, so `status` shows it. Best effort, like `recordFailure`.
    private func recordStoppedBeforeWriting(_ error: MigrationError, lock: MigrationLock, holder: LockHolder) {
        let journal = JournalReader(store: store, namespace: namespace)
        guard (try? journal.state())??.status != .running else { return }
        let entry = HistoryEntry(
            event: .stoppedBeforeWriting, at: timestamp(), who: holder.who, from: migration.fromVersion, to: migration.toVersion,
            detail: "run \(holder.holderID): \(error.message)")
        _ = try? fencedPut(
            lock, [(journal.newHistoryKey(runID: holder.holderID), JSONCoding.encode(entry))], doing: "recording the stop",
            retrying: false)
    }

    /// Records why the run stopped, so `status` can say so. Best effort: the run is
    /// resumable from the cursors whether or not this lands.
    private func recordFailure(_ error: MigrationError, lock: MigrationLock) {
        guard let state = try? JournalReader(store: store, namespace: namespace).state(), state.status == .running
        else { return }
        var failed = state
        failed.status = .failed
        failed.step = lock.step
        failed.updatedAt = timestamp()
        failed.message = "\(error.code): \(error.message)"
        // No retries: the run is failing already, often because etcd is away.
        _ = try? fencedPut(lock, [(namespace.stateKey, JSONCoding.encode(failed))], doing: "recording the failure", retrying: false)
    }
}
