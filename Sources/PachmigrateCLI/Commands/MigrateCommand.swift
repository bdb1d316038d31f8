import ArgumentParser
import EtcdGateway
import Glibc
import Logging
import MigrationEngine
import PachydermMigrations
import PlatformShim
import Synchronization

struct MigrationReport: CommandReport {
    /// What the command did; `outcome` in JSON.
    enum Outcome: String, Encodable {
        case migrated
        case nothingToDo = "nothing-to-do"
        case dryRun = "dry-run"
        case plan
    }
    /// Which etcd the run talks to.
    var etcd: EtcdSummary?
    var outcome: Outcome
    var from: String?
    var to: String?
    var detected: DetectedVersion
    var plan: String?
    var scan: ScanSummary?
    /// The records' state and what another migration left in them (once scanned).
    var state: LeftoverSummary?
    var forecast: [ReprocessingForecast]?
    /// The space preflight (nil where etcd reported no size).
    var space: SpaceEstimate?
    var spaceUnavailable: String?
    var compactions: Int?
    /// What the space guard did while the run wrote.
    var spaceGuard: SpaceGuardReport?
    /// `--compact` was given (said where etcd reports no size).
    var compactRequested = false
    /// No `--etcd-quota` was given: `space` compares with etcd's default quota.
    var quotaAssumed = false
    /// How long the run takes from here, and what this invocation's phases took.
    var timeForecast: TimeForecast?
    var timeForecastUnavailable: String?
    var took: PhaseTimes?
    /// How the check after the writes knew no one else wrote.
    var check: ForeignWriteCheck?
    var backup: BackupInfo?
    var snapshot: String?
    var resumed: Bool
    /// The interrupted run this one resumed (or, for plan and a dry run, would resume).
    var resuming: UnfinishedRun?
    /// A `--backup` given to a resumed run, which keeps its first attempt's backup instead.
    var backupNotWritten: String?
    var written: Int
    /// Of `written`, records re-put unchanged only to keep their group's order.
    var keptInOrder = 0
    /// The txns that wrote them, and the floor on that number: the records of the longest
    /// ordering group (records of different groups share txns).
    var txns: Int?
    var longestGroup: Int?
    /// From the command's start to its report: the run's wall-clock time.
    var elapsedSeconds: Double?
    /// `preflightText` was printed before the first write: the final text is the summary.
    var preflightShown = false
    var message: String?
    var verbose: Bool

    var exitStatus: ExitStatus {
        if outcome == .migrated || outcome == .nothingToDo { return .ok }
        let status = scan?.status ?? .ok
        if status == .ok, let space, !space.fits { return .outOfSpace }
        return status
    }

    enum CodingKeys: String, CodingKey {
        case etcd, outcome, from, to, detected, plan, state, scan, forecast, space, quotaAssumed, spaceUnavailable, compactions,
            spaceGuard, backup, snapshot,
            timeForecast, timeForecastUnavailable, took, check, resumed, resuming, backupNotWritten, written, keptInOrder, txns,
            longestGroup, elapsedSeconds, message
    }

    /// What a run's result says of the cluster, its scan, space and backup: the same early
    /// (before the first write) and at the end.
    mutating func fill(from result: MigrationResult) {
        scan = result.scan.map(ScanSummary.init)
        resuming = result.unfinishedRun
        if let scan = result.scan { state = LeftoverSummary(scan.pachyderm.census.result, resuming: result.unfinishedRun) }
        backup = result.backup
        space = result.space
        spaceUnavailable = result.spaceUnavailable
        spaceGuard = result.spaceGuard
        timeForecast = result.forecast
        timeForecastUnavailable = result.forecastUnavailable
    }

    /// Connects and resolves the versions against the cluster; the migration is nil when
    /// there is nothing to do (the report then says why).
    static func start(
        connection: ConnectionOptions, versions: VersionOptions, allowOpenCommits: Bool, abandonRestore: Bool, verbose: Bool,
        logger: Logger
    ) throws -> (EtcdClient, MigrationReport, PachydermRecordMigration?) {
        // Before the client: a path the flags alone rule out exits 5 even with etcd unreachable.
        _ = try versions.explicitPlan()
        let client = try connection.makeClient(logger: logger)
        // Before the versions are matched with the records: a half restored cluster holds
        // either, and what to do is finish the restore, whatever --from says.
        if !abandonRestore { try JournalReader(store: client, namespace: connection.namespace).refuseIfHalfRestored() }
        let resolved = try ResolvedMigration.resolve(
            store: client, layout: connection.layout, namespace: connection.namespace, from: versions.from, to: versions.to,
            allowOpenCommits: allowOpenCommits)
        var report = MigrationReport(
            outcome: .nothingToDo, from: resolved.plan?.from.description, to: resolved.plan?.to.description,
            detected: resolved.detected, plan: resolved.plan?.summary, resumed: false, written: 0, verbose: verbose)
        report.etcd = EtcdSummary(client)
        if let reason = resolved.nothingToDo { report.message = "Nothing to do: \(resolved.text(of: reason))" }
        return (client, report, resolved.migration)
    }

    func renderText() -> String { render(preflight: !preflightShown, summary: true) }

    /// What is known before the first write (the cluster, the plan, the scan, the space, the
    /// backup): `migrate` prints it then, and its final report only the summary.
    var preflightText: String { render(preflight: true, summary: false) }

    private func render(preflight: Bool, summary: Bool) -> String {
        var lines: [String] = []
        if preflight {
            if let etcd { lines.append(etcd.text) }
            lines.append("Cluster: \(detected.version ?? "empty") (\(detected.detail))")
            if let plan { lines.append("Plan: \(plan)") }
            if let resuming { lines.append(resuming.text) }
        }
        if summary, let backupNotWritten {
            lines.append(
                "Backup: --backup \(backupNotWritten) was not written: a resumed run keeps its first attempt's backup, the only one "
                    + "taken before any record changed (a backup now would hold half-migrated records)")
        }
        if preflight, let state { lines.append(state.renderText()) }
        if summary, let message { lines.append(message) }
        if preflight { lines += preflightDetails() }
        if summary, let compactions, compactions > 0 { lines.append("Compacted etcd's history \(compactions) time(s) behind the run.") }
        if summary, let spaceGuard { lines.append(spaceGuard.text) }
        guard summary else { return lines.joined(separator: "\n") }
        switch outcome {
        case .migrated:
            let kept = keptInOrder > 0 ? ", \(keptInOrder) of them re-put unchanged only to keep their group's order" : ""
            let took = elapsedSeconds.map { " in \(formatSeconds($0))" } ?? ""
            lines.append(
                "Migrated: \(written) record(s) written\(took)\(kept)\(resumed ? " (resumed an interrupted run)" : ""). "
                    + "Check with `pachmigrate verify`.")
            if let txns {
                // Records that must keep their order (one repo's commits, one pipeline's jobs) go
                // one per etcd transaction; the largest such group sets how few there can be.
                lines.append(
                    "  \(txns) etcd transaction(s)"
                        + (longestGroup.map {
                            "; at least \($0) were needed: the largest set of records that must be written in order (one repo's "
                                + "commits, one pipeline's jobs) has \($0), written one per transaction"
                        } ?? ""))
            }
            if let phases = self.took, let write = phases.write {
                var parts: [String] = []
                if let scan = phases.scan { parts.append("scan \(formatSeconds(scan))") }
                if let backup = phases.backup { parts.append("backup \(formatSeconds(backup))") }
                let forecastText = timeForecast.map { " (forecast: \(formatSeconds($0.writeSeconds)))" } ?? ""
                parts.append("writing \(formatSeconds(write))\(forecastText)")
                if let check = phases.check { parts.append("check \(formatSeconds(check))") }
                lines.append("  took: " + parts.joined(separator: ", "))
            }
            if let check {
                lines.append(
                    check.keysRead.map {
                        "  check: \($0) key(s) read again for writes by others: some of the \(check.revisionsSinceStart) revision(s) "
                            + "since the run started were not known to be its own (another writer in this etcd, or an earlier attempt's writes)"
                    } ?? "  check: all \(check.revisionsSinceStart) revision(s) since the run started are the run's own writes: no one else wrote")
            }
            if let backup { lines.append("  backup: \(backup.path)") }
        case .dryRun, .plan:
            switch exitStatus {
            case .ok:
                let kept = scan?.keptInOrder.values.reduce(0, +) ?? 0
                lines.append(
                    "Would rewrite \(scan?.toRewrite.values.reduce(0, +) ?? 0) record(s)"
                        + (kept > 0 ? " and re-put \(kept) unchanged to keep their groups' order" : "") + ". Nothing was written.")
            case .notAtRest: lines.append("A migration would refuse: the cluster is not at rest. Nothing was written.")
            case .outOfSpace: lines.append("A migration would refuse: etcd would run out of space. Nothing was written.")
            default: lines.append("A migration would fail: some records cannot be converted. Nothing was written.")
            }
        case .nothingToDo:
            break
        }
        return lines.joined(separator: "\n")
    }

    private func preflightDetails() -> [String] {
        var lines: [String] = []
        if let scan { lines.append(scan.renderText(verbose: verbose)) }
        if let forecast { lines.append(renderForecast(forecast)) }
        if let space { lines += space.textLines(quotaAssumed: quotaAssumed, revision: scan?.revision) }
        if let spaceUnavailable {
            lines.append(
                "etcd space: not checked (\(spaceUnavailable)): the quota could not be compared, and the run cannot stop "
                    + "itself before it (a user with the root role can read each member's size)"
                    + (compactRequested
                        ? "; --compact compacts every \(SpacePolicy.defaultCompactionInterval) writes, "
                            + "but cannot defragment" : ""))
        }
        if let timeForecast { lines.append(timeForecast.text) }
        if let timeForecastUnavailable { lines.append("Time forecast: not made (\(timeForecastUnavailable))") }
        if let backup { lines.append("Backup: \(backup.path) (\(backup.keys) keys, sha256 \(backup.sha256))") }
        if let snapshot { lines.append("etcd snapshot: \(snapshot)") }
        return lines
    }
}

extension ResolvedMigration {
    /// Why there is nothing to do, in the operator's words.
    func text(of reason: NothingToDo) -> String {
        switch reason {
        case .noRecords: "the cluster holds no Pachyderm records (\(detected.detail))"
        case .noRecordToRewrite: plan?.summary ?? "no record needs rewriting"
        }
    }
}

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Migrate the cluster's metadata in place, under the migration lock.",
        discussion: """
            Takes the lock, checks the cluster is at rest, writes a backup, then rewrites every \
            record in its original order, each write fenced on the lock. If it stops for any \
            reason (signal, crash, lost lock, etcd down), run the same command again: it resumes. \
            On a migrated cluster it does nothing and exits 0.

            Examples:
              pachmigrate migrate --endpoints http://etcd:2379 --backup pre-1.5.jsonl
              pachmigrate migrate --from 1.4.8 --etcd-quota 8Gi --compact --wait-lock 2m
              pachmigrate migrate --dry-run -w json

            \(ExitStatus.helpLine(Self.exitStatuses))
            """)

    /// What this command can exit with, for its help (a test holds the code to it).
    static let exitStatuses: [ExitStatus] = [
        .ok, .failure, .usage, .lockHeld, .notAtRest, .unsupportedVersion, .interrupted, .conversionFailed, .outOfSpace,
        .stoppedBySIGHUP, .stoppedBySIGINT, .stoppedBySIGTERM,
    ]

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var versions: VersionOptions
    @OptionGroup var space: SpaceOptions
    @OptionGroup var output: OutputOptions

    @Flag(name: .long, help: "Read, convert and check everything; write nothing (not even the lock).")
    var dryRun = false

    @Option(name: .long, help: ArgumentHelp("Where to write the backup (default: pachmigrate-backup-<from>-<time>.jsonl here).", valueName: "path"))
    var backup: String?

    @Flag(name: .long, help: "Skip the backup. Must be said explicitly.")
    var noBackup = false

    @Option(
        name: .long,
        help: ArgumentHelp("Also save etcd's own snapshot here before the first write (etcdctl snapshot restore reads it).", valueName: "path"))
    var snapshot: String?

    @Flag(name: .long, help: "Migrate open commits too, writing the openCommits entries 1.5.0 needs, instead of refusing.")
    var allowOpenCommits = false

    @Flag(
        name: .long,
        help: ArgumentHelp(
            "Migrate a cluster that a stopped restore left half restored, from what it holds now, instead of refusing "
                + "(only if that restore's backup is lost)."))
    var abandonRestore = false

    @Option(name: .long, help: ArgumentHelp("Wait this long for a held lock (e.g. 30s, 5m) instead of failing at once.", valueName: "duration"))
    var waitLock: DurationArgument?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "How long the lock outlives this process if it dies (30s, 2m; a bare number is seconds; etcd counts whole seconds).",
            valueName: "duration"))
    var lockTTL = DurationArgument(.seconds(30))

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Writers at the same time, each over its own connection, each packing the next record of each of its ordering groups into shared txns.",
            valueName: "n"))
    var concurrency = 4

    @Flag(name: .long, help: "List every conversion note, not the first 20.")
    var verbose = false

    func validate() throws {
        if backup != nil && noBackup { throw ValidationError("--backup and --no-backup exclude each other") }
        if lockTTL.duration < .seconds(5) { throw ValidationError("--lock-ttl must be at least 5 seconds") }
        if concurrency < 1 || concurrency > 64 { throw ValidationError("--concurrency must be between 1 and 64") }
    }

    func run() throws {
        let started = ContinuousClock.now
        try runCommand("migrate", output, connection: connection) { context in
            var (client, report, migration) = try MigrationReport.start(
                connection: connection, versions: versions, allowOpenCommits: allowOpenCommits, abandonRestore: abandonRestore, verbose: verbose,
                logger: context.logger)
            guard let migration else { return report }
            var options = MigrationOptions(
                backup: noBackup ? .none : .file(absolutePath(backup ?? defaultBackupPath(from: migration.fromVersion))))
            options.dryRun = dryRun
            options.lock = LockOptions(ttl: lockTTL.wholeSecondsRoundedUp, wait: waitLock?.duration ?? .zero)
            options.concurrency = concurrency
            options.abandonRestore = abandonRestore
            options.space = space.policy
            report.compactRequested = space.compact
            report.quotaAssumed = space.quotaAssumed
            options.command = "pachmigrate migrate"
            options.toolVersion = toolVersion
            options.identity = .fromEnvironment()
            if report.detected.source == .journal, let backup, !dryRun {
                // Said before the run, not only in the report at its end.
                context.logger.notice(
                    """
                    resuming an interrupted run: --backup \(backup) will not be written; the run keeps its first attempt's backup \
                    (see `pachmigrate status`), the only one taken before any record changed
                    """)
            }
            let ttl = options.lock.ttl
            let signals = SignalHandlers { signal, stop in
                let writing = stop.hasBegunWriting
                let what =
                    writing
                    ? "quit at once on a second \(signalName(signal)), during the writes: the txn in flight may or may not have landed "
                        + "(the next run finds out)"
                    : "quit at once on a second \(signalName(signal)), before the first write: nothing was written"
                let unfinishedBackup =
                    writing || backup == nil
                    ? "" : "; a backup file left without its .sha256 beside it is unfinished: delete it before running again"
                return (
                    writing ? .interrupted : .stoppedBy(signal),
                    "\(what). Run the same command again to \(writing ? "resume" : "start over")\(unfinishedBackup); "
                        + SignalHandlers.lockLeft(by: stop, ttl: ttl)
                )
            } onSignal: { signal, writing in
                let notice =
                    switch (writing, context.progress.step) {
                    case (true, .check?):
                        "\(signalName(signal)): every record is written; stopping the check after the writes at its next page of keys "
                            + "(run the same command again to check and finish)"
                    case (true, _): "\(signalName(signal)): finishing the txn in flight, then stopping (run the same command again to resume)"
                    case (false, _): "\(signalName(signal)): stopping now; nothing has been written"
                    }
                context.progress.interrupt("\(notice); \(SignalHandlers.quitHint(signal))")
            }
            if let snapshot, !dryRun {
                let bytes = try signals.saveSnapshot(client, to: snapshot)
                context.logger.notice("etcd snapshot saved", metadata: ["path": "\(snapshot)", "bytes": "\(bytes)"])
                report.snapshot = snapshot
            }
            // The plan and the space check as soon as they are known, before the first write:
            // read while the records are written, and said even if the run is then interrupted.
            // `--output json` keeps its one document for the end.
            let shown = PreflightShown()
            if output.output == .text {
                let before = report
                let logFormat = output.logFormat
                let logger = context.logger
                options.beforeFirstWrite = { partial in
                    var early = before
                    early.fill(from: partial)
                    early.forecast = partial.scan?.pachyderm.forecast.pipelines
                    endBarLine()
                    switch logFormat {
                    case .text: print(early.preflightText)
                    case .json:
                        print(
                            JSONLogHandler.line(
                                level: .notice, label: logger.label, message: "migrate plan", source: "PachmigrateCLI",
                                metadata: ["event": "plan", "text": "\(early.preflightText)"]))
                    }
                    fflush(nil)
                    shown.set()
                }
            }
            let migrator = Migrator(store: client, migration: migration, namespace: connection.namespace, logger: context.logger)
            let result = try migrator.run(options: options, stop: signals.stop) { context.progress.update($0) }
            report.fill(from: result)
            report.preflightShown = shown.isSet
            report.resumed = result.resumed
            if result.resumed, !dryRun, let backup, absolutePath(backup) != result.unfinishedRun?.backupPath {
                report.backupNotWritten = absolutePath(backup)
            }
            report.written = result.written
            report.compactions = result.compactions
            report.spaceGuard = result.spaceGuard
            report.took = result.took
            report.check = result.check
            report.keptInOrder = result.keptInOrder
            if result.written > 0 {
                report.txns = result.txns
                report.longestGroup = result.scan?.longestLane
            }
            switch result.outcome {
            case .alreadyMigrated(let version):
                report.message = "Nothing to do: the cluster is already migrated to \(version)"
            case .dryRun:
                report.outcome = .dryRun
                report.forecast = result.scan?.pachyderm.forecast.pipelines
            case .migrated where migration.plan.purpose == .repair && result.written == 0 && !result.resumed:
                // Every record was read and found clean; the cluster is now stamped.
                report.message = "Nothing to do: every record is clean 1.5.0 binary; the cluster is now stamped \(migration.toVersion)"
            case .migrated:
                report.outcome = .migrated
                report.forecast = result.scan?.pachyderm.forecast.pipelines
            }
            report.elapsedSeconds = (seconds(ContinuousClock.now - started) * 10).rounded() / 10
            return report
        }
    }
}

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what a migration would do. Writes nothing.",
        discussion: """
            Detects the cluster's version, finds the path of steps, counts records per kind, \
            lists what keeps the cluster from being at rest, every conversion note, and which \
            pipelines will reprocess their data on their first 1.5 job (and how much).

            Exits 0 when migrate would proceed, 4 when it would refuse (not at rest), 8 when a \
            record cannot be converted, 5 when there is no path, 9 when etcd would run out of \
            space (see --etcd-quota and --compact).

            Examples:
              pachmigrate plan --endpoints http://etcd:2379
              pachmigrate plan --etcd-quota 8GiB --verbose

            \(ExitStatus.helpLine(Self.exitStatuses))
            """)

    static let exitStatuses: [ExitStatus] = [
        .ok, .failure, .usage, .notAtRest, .unsupportedVersion, .conversionFailed, .outOfSpace, .stoppedBySIGHUP, .stoppedBySIGINT, .stoppedBySIGTERM,
    ]

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var versions: VersionOptions
    @OptionGroup var space: SpaceOptions
    @OptionGroup var output: OutputOptions

    @Flag(name: .long, help: "Plan as if open commits were allowed (migrate --allow-open-commits).")
    var allowOpenCommits = false

    @Flag(name: .long, help: "Plan as if a stopped restore were abandoned (migrate --abandon-restore).")
    var abandonRestore = false

    @Flag(name: .long, help: "List every conversion note, not the first 20.")
    var verbose = false

    func run() throws {
        try runCommand("plan", output, connection: connection) { context in
            var (client, report, migration) = try MigrationReport.start(
                connection: connection, versions: versions, allowOpenCommits: allowOpenCommits, abandonRestore: abandonRestore, verbose: verbose,
                logger: context.logger)
            guard let migration else { return report }
            var options = MigrationOptions(backup: .none)
            options.dryRun = true
            options.abandonRestore = abandonRestore
            options.space = space.policy
            let migrator = Migrator(store: client, migration: migration, namespace: connection.namespace, logger: context.logger)
            let result = try migrator.run(options: options) { context.progress.update($0) }
            if case .alreadyMigrated(let version) = result.outcome {
                report.message = "Nothing to do: the cluster is already migrated to \(version)"
                return report
            }
            report.outcome = .plan
            report.fill(from: result)
            report.forecast = result.scan?.pachyderm.forecast.pipelines
            report.compactRequested = space.compact
            report.quotaAssumed = space.quotaAssumed
            return report
        }
    }
}

/// Whether `migrate` printed its report's first part before the first write (set on the
/// writing thread, read after the run).
final class PreflightShown: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
}

extension SpaceEstimate {
    /// The space preflight: the numbers, the mode the run takes and why, and what it means.
    /// `quotaAssumed`: no `--etcd-quota` was given, so `quotaBytes` is etcd's default.
    /// `revision`: the scan's, to compact up to.
    func textLines(quotaAssumed: Bool, revision: Int64?) -> [String] {
        let inUse = inUseBytes.map { " (\(ByteSize.describe($0)) in use)" } ?? ""
        let assumed = quotaAssumed ? ", etcd's default (etcd does not tell its quota: give --etcd-quota if yours is set)" : ""
        var lines = [
            "etcd space: backend \(ByteSize.describe(currentBytes))\(inUse), expected growth \(ByteSize.describe(expectedGrowthBytes)), "
                + "projected peak \(ByteSize.describe(projectedBytes)) of a \(ByteSize.describe(quotaBytes)) quota\(assumed) "
                + "(the run stops itself \(ByteSize.describe(reserveBytes)) below it): \(fits ? "fits" : "DOES NOT FIT")"
        ]
        switch mode {
        case .plain:
            lines.append(
                "  no compaction (no --compact): every member's size is watched as the run writes, and it stops "
                    + "(exit 9, resumable, the cluster writable) before the quota if the estimate is off")
        case .compaction:
            lines.append(
                "  --compact compacts etcd's history every \(SpacePolicy.defaultCompactionInterval) writes, but this etcd "
                    + "user may not defragment (it needs the root role), so the backend never shrinks; the run stops (exit 9, "
                    + "resumable, the cluster writable) before the quota if compaction frees too little")
        case .compactionAndDefragmentation:
            let rounds = expectedRounds.map { $0 == 0 ? "none expected" : "about \($0) expected" } ?? "unknown"
            lines.append(
                "  --compact compacts etcd's history as the run goes and, when a member nears the limit, compacts to the "
                    + "latest write and defragments every member, followers first and the leader last (each stalls its member "
                    + "while it rewrites its file): \(rounds); about \(ByteSize.describe(liveBytes ?? 0)) stays in use")
        }
        if !fits { lines.append(spaceRemedy(OutOfSpace(estimate: self, compactTo: revision))) }
        if fitsOnlyIfCompactionFrees, let uncompacted = uncompactedProjectedBytes {
            lines.append(
                "  fits only if compaction frees enough of the old values' pages: were it to free nothing, "
                    + "the backend would reach \(ByteSize.describe(uncompacted)). How much it frees depends on what shares "
                    + "their pages (24–68% of the growth remained in our measurements); the run stops before the quota "
                    + "(exit 9, resumable) if it frees too little. Compacting and defragmenting first leaves the most room.")
        }
        return lines
    }
}

extension SpaceGuardReport {
    /// "Space guard: peak 41.2 MB of a 45.0 MB quota, 3 rounds of compaction and defragmentation (3 members each), 28 size reads."
    var text: String {
        let roundsText =
            mode == .compactionAndDefragmentation
            ? ", \(rounds) round(s) of compaction and defragmentation (\(defragmentations) member defragmentation(s))" : ""
        return "Space guard: peak backend \(ByteSize.describe(peakBytes)) of a \(ByteSize.describe(limits.quotaBytes)) quota"
            + "\(roundsText), \(measurements) size read(s)."
    }
}

extension TimeForecast {
    /// "Time forecast from here: about 7m15s: scan 40s, backup 35s, writing 6m, check 0s (…)".
    var text: String {
        let phases = [
            "scan \(formatSeconds(scanSeconds))", backupSeconds.map { "backup \(formatSeconds($0))" },
            "writing \(formatSeconds(writeSeconds))", "check \(formatSeconds(checkSeconds))",
        ].compactMap { $0 }
        let chain = longestChain > 0 ? "the longest chain is \(longestChain) \(longestChainKind), one txn after another, " : ""
        return "Time forecast from here: about \(formatSeconds(totalSeconds)): " + phases.joined(separator: ", ")
            + " (\(records) records to write; \(chain)\(String(format: "%.2f", fencedTxnSeconds * 1000)) ms a txn, "
            + "\(String(format: "%.2f", roundTripSeconds * 1000)) ms a round trip from here)"
    }
}
