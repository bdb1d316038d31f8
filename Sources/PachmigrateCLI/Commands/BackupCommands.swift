import ArgumentParser
import EtcdGateway
import Logging
import MigrationEngine
import PachydermMigrations
import PlatformShim

struct BackupReport: CommandReport {
    var backup: BackupInfo
    var snapshot: String?
    var snapshotBytes: Int64?

    func renderText() -> String {
        var lines = ["Backup: \(backup.path) (\(backup.keys) keys at revision \(backup.revision), sha256 \(backup.sha256))"]
        if let origin = backup.origin {
            lines.append(
                "Origin: cluster \(origin.clusterID ?? "unknown"), member \(origin.memberID ?? "unknown"), "
                    + "\(origin.endpoints.joined(separator: ",")) (in \(backup.path)\(BackupOrigin.fileSuffix); restore checks it)")
        }
        if let snapshot, let snapshotBytes {
            lines.append("etcd snapshot: \(snapshot) (\(snapshotBytes) bytes; restore with `etcdctl snapshot restore`)")
        }
        return lines.joined(separator: "\n")
    }
}

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Write a logical backup of Pachyderm's keys (and optionally etcd's own snapshot).",
        discussion: """
            The backup holds every key under the PFS and PPS roots at one revision, one JSON \
            line per key in etcd's own form, in mod-revision order, with PATH.sha256 beside it \
            (mode 0600) and PATH.origin.json: the cluster's ID, the revision and a fingerprint of \
            its keys, which `pachmigrate restore PATH` checks before it puts the backup back.

            Examples:
              pachmigrate backup --endpoints http://etcd:2379 /backups/pre-1.5.jsonl
              pachmigrate backup --snapshot /backups/etcd.db /backups/pre-1.5.jsonl

            \(ExitStatus.helpLine(Self.exitStatuses))
            """)

    static let exitStatuses: [ExitStatus] = [.ok, .failure, .usage, .stoppedBySIGHUP, .stoppedBySIGINT, .stoppedBySIGTERM]

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("Where to write the backup.", valueName: "path"))
    var path: String

    @Option(name: .long, help: ArgumentHelp("Also save etcd's own snapshot here.", valueName: "path"))
    var snapshot: String?

    func run() throws {
        try runCommand("backup", output, connection: connection) { context in
            let client = try connection.makeClient(logger: context.logger)
            let layout = connection.layout
            let prefixes = layout.roots
            // Ctrl-C deletes the unfinished file rather than leave one that looks like a backup.
            let signals = SignalHandlers { signal, _ in
                (
                    .stoppedBy(signal),
                    "quit at once on a second \(signalName(signal)): if \(path) has no \(path).sha256 beside it, it is unfinished: "
                        + "delete it, then run the same command again"
                )
            } onSignal: { signal, _ in
                context.progress.interrupt("\(signalName(signal)): stopping; the unfinished file is deleted; \(SignalHandlers.quitHint(signal))")
            }
            let info = try Backup.take(
                store: client, prefixes: prefixes, to: path, toolVersion: toolVersion, stop: signals.stop, logger: context.logger)
            var report = BackupReport(backup: info)
            if let snapshot {
                do {
                    report.snapshotBytes = try signals.saveSnapshot(client, to: snapshot)
                } catch let error as MigrationError where error.code == .stoppedBeforeWriting {
                    // The finished backup is kept, so the same command would refuse its path.
                    throw CLIError(
                        describe(error).status,
                        """
                        stopped on request during etcd's snapshot: the unfinished file \(snapshot) was deleted; the backup \(path) \
                        is complete and kept (sha256 \(info.sha256)). For the snapshot alone, run `etcdctl snapshot save \(snapshot)`, \
                        or this command again with another backup path
                        """, kind: "stoppedBeforeWriting")
                }
                report.snapshot = snapshot
            }
            return report
        }
    }
}

struct RestoreReport: CommandReport {
    var path: String
    var sha256: String
    var dryRun: Bool
    var plan: RestorePlan
    var restored: Int
    var removed: [String]
    /// A dry run that a real restore would refuse says so in its status, as `plan` does.
    var exitStatus: ExitStatus { dryRun && !plan.refusals.isEmpty ? .notAtRest : .ok }

    func renderText() -> String {
        var lines: [String] = []
        let target = plan.target.endpoints.isEmpty ? "the target" : plan.target.endpoints.joined(separator: ",")
        lines.append("Cluster check: " + Self.verdict(plan, target: target))
        if let unfinished = plan.unfinishedRestore {
            let begun = "begun at \(unfinished.startedAt) by \(unfinished.who)"
            lines.append(
                unfinished.backupSHA256 == sha256
                    ? "Finishing the restore of this backup \(begun), which stopped half way."
                    : "A restore of another backup, \(unfinished.backupPath) (sha256 \(unfinished.backupSHA256)), \(begun), stopped half "
                        + "way here: this restore replaces what it wrote. Go on only if \(path) is the backup to go back to.")
        }
        if dryRun {
            lines.append(
                "Would restore \(plan.backupKeys) keys from \(path) (sha256 \(sha256) verified) and remove \(plan.toRemove) "
                    + "of the \(plan.targetKeys) key(s) under the roots that the backup does not hold.")
            lines += plan.removeSample.map { "  - would remove \($0)" }
            if plan.toRemove > plan.removeSample.count { lines.append("  … \(plan.toRemove - plan.removeSample.count) more") }
        } else {
            lines.append(
                "Restored \(restored) keys from \(path) (sha256 \(sha256) verified); removed \(removed.count) key(s) the backup did not hold.")
            lines += removed.prefix(50).map { "  - removed \($0)" }
            if removed.count > 50 { lines.append("  … \(removed.count - 50) more (--output json)") }
        }
        // Newer writes are looked for where the target may be the backup's own cluster.
        if plan.verdict == .sameCluster || plan.verdict == .originUnknown {
            let through =
                (plan.migrationWrites.map { "; pachmigrate's own migration wrote revisions \($0.lowerBound)–\($0.upperBound)" } ?? "")
                + (plan.lastRestoreWrites.map { "; its last restore wrote revisions \($0.lowerBound)–\($0.upperBound)" } ?? "")
                + (plan.unfinishedRestoreWrites.map { "; the unfinished restore wrote revisions \($0.lowerBound)–\($0.upperBound)" } ?? "")
            lines.append(
                "Written after the backup (revision \(plan.backupRevision)) by something other than pachmigrate: "
                    + "\(plan.newerWrites) key(s)\(through)" + (dryRun || plan.newerWrites == 0 ? "." : "; discarded (--discard-newer-writes)."))
            lines += plan.newerWriteSample.map { "  - \($0)" }
            if plan.newerWrites > plan.newerWriteSample.count { lines.append("  … \(plan.newerWrites - plan.newerWriteSample.count) more") }
        }
        if dryRun {
            if plan.refusals.isEmpty {
                lines.append("Dry run: nothing was written. The restore would proceed.")
            } else {
                lines.append("Dry run: nothing was written. The restore would be refused: \(plan.refusalReasons(backup: path))")
            }
        } else {
            lines.append("The migration state was reset; the history keeps this restore.")
        }
        return lines.joined(separator: "\n")
    }

    static func verdict(_ plan: RestorePlan, target: String) -> String {
        switch plan.verdict {
        case .emptyTarget:
            return "\(target) holds no keys under the roots (disaster recovery): nothing to lose."
        case .originUnknown:
            return "the backup records no origin (an earlier pachmigrate's, or `convert`'s); \(target) cannot be checked against it."
        case .sameCluster:
            var text = "\(target) is the cluster the backup was taken from"
            if let id = plan.origin?.clusterID { text += " (cluster ID \(id)" + (plan.otherMember ? ", answered by another member" : "") + ")" }
            text += plan.sameKeys ? "; its keys are exactly the backup's." : "."
            return text
        case .otherCluster:
            let signals = plan.mismatches.map { m -> String in
                switch m.signal {
                case .clusterID: "cluster ID \(m.target), the backup's \(m.backup)"
                case .revision: "revision \(m.target), below the backup's \(m.backup)"
                case .keys: m.target
                }
            }
            return "\(target) is NOT the cluster the backup was taken from: " + signals.joined(separator: "; ") + "."
        }
    }
}

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Put a backup back: exact values, original order, extra keys removed, state reset.",
        discussion: """
            Checks the backup's sha256 first, then that the target is the cluster the backup was \
            taken from: etcd's cluster ID, a revision not below the backup's, and no key created \
            before the backup's revision that the backup does not hold (PATH.origin.json, beside \
            the backup, records them). Onto another cluster that holds keys under the roots, or \
            with a backup that records no origin (an earlier version's, `convert`'s), it refuses \
            with exit 4 unless --onto-other-cluster; onto an empty etcd it needs no flag. It also \
            refuses (exit 4) when keys were written after the backup by something other than \
            pachmigrate (a 1.5 pachd started after the migration), unless --discard-newer-writes. \
            Then it refuses while a migration holds the lock, and takes the lock itself. Safe to \
            run again if interrupted; another backup may also be restored over one that stopped \
            half way (it says whose half restore it replaces).

            Examples:
              pachmigrate restore --endpoints http://etcd:2379 --dry-run pre-1.5.jsonl
              pachmigrate restore --endpoints http://etcd:2379 pre-1.5.jsonl

            \(ExitStatus.helpLine(Self.exitStatuses))
            """)

    static let exitStatuses: [ExitStatus] = [
        .ok, .failure, .usage, .lockHeld, .notAtRest, .interrupted, .outOfSpace, .stoppedBySIGHUP, .stoppedBySIGINT, .stoppedBySIGTERM,
    ]

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var space: SpaceOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("The backup to restore (PATH.sha256 must be beside it).", valueName: "path"))
    var path: String

    @Option(name: .long, help: ArgumentHelp("Wait this long for a held lock.", valueName: "duration"))
    var waitLock: DurationArgument?

    @Flag(
        name: .long,
        help: "Check and say what would be restored and removed; write nothing (not even the lock). Exit 4 if the restore would be refused.")
    var dryRun = false

    @Flag(name: .long, help: "Restore although the target is not the backup's cluster (or the backup does not say) and holds keys under the roots.")
    var ontoOtherCluster = false

    @Flag(name: .long, help: "Restore although keys were written after the backup by something other than pachmigrate; those writes are lost.")
    var discardNewerWrites = false

    /// Shell completion readily offers the files beside a backup: name the backup instead of
    /// reporting a checksum file that has no checksum of its own.
    func validate() throws {
        for (suffix, what) in [(".sha256", "checksum file"), (BackupOrigin.fileSuffix, "origin record")] where path.hasSuffix(suffix) {
            let backup = String(path.dropLast(suffix.count))
            if Posix.exists(backup) {
                throw ValidationError("\(path) is the \(what) beside the backup \(backup); restore the backup itself: pachmigrate restore \(backup)")
            }
        }
    }

    func run() throws {
        try runCommand("restore", output, connection: connection) { context in
            let client = try connection.makeClient(logger: context.logger)
            let layout = connection.layout
            var options = RestoreOptions(dryRun: dryRun, ontoOtherCluster: ontoOtherCluster, discardNewerWrites: discardNewerWrites)
            options.command = "pachmigrate restore"
            options.toolVersion = toolVersion
            options.identity = .fromEnvironment()
            options.lock = LockOptions(wait: waitLock?.duration ?? .zero)
            options.space = space.policy
            let restorer = Restorer(
                store: client, namespace: connection.namespace,
                prefixes: layout.roots, logger: context.logger)
            let ttl = options.lock.ttl
            let signals = SignalHandlers { signal, stop in
                stop.hasBegunWriting
                    ? (
                        .interrupted,
                        "quit at once on a second \(signalName(signal)): the cluster is half restored. Run the same restore command "
                            + "again to finish; \(SignalHandlers.lockLeft(by: stop, ttl: ttl))"
                    )
                    : (
                        .stoppedBy(signal),
                        "quit at once on a second \(signalName(signal)), before the first write: nothing was written; "
                            + SignalHandlers.lockLeft(by: stop, ttl: ttl)
                    )
            } onSignal: { signal, writing in
                context.progress.interrupt(
                    (writing
                        ? "\(signalName(signal)): finishing the txn in flight, then stopping (run the same restore command again to finish)"
                        : "\(signalName(signal)): stopping now; nothing has been written") + "; \(SignalHandlers.quitHint(signal))")
            }
            let result: RestoreResult
            do throws(MigrationError) {
                // Absolute: the record of a restore under way names the file for whoever finishes it.
                result = try restorer.restore(from: absolutePath(path), options: options, stop: signals.stop) { context.progress.update($0) }
            } catch var error {
                if let plan = error.refusedRestore { error.message = plan.refusalMessage(backup: path) }
                throw error
            }
            return RestoreReport(
                path: path, sha256: result.sha256, dryRun: result.dryRun, plan: result.plan, restored: result.restored,
                removed: result.removed)
        }
    }
}

struct VerifyReport: CommandReport {
    var report: VerificationReport
    var exitStatus: ExitStatus { report.ok ? .ok : .verificationFailed }

    func encode(to encoder: any Encoder) throws { try report.encode(to: encoder) }

    func renderText() -> String {
        var lines = [
            "Checked against \(report.expectedVersion): "
                + report.counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        ]
        if !report.warnings.isEmpty {
            lines.append("Warnings (\(report.warnings.count)):")
            lines += report.warnings.prefix(50).map { "  - \($0)" }
        }
        if report.ok {
            lines.append("OK: every record decodes and every reference resolves.")
        } else {
            lines.append("FAILED: \(report.problems.count) problem(s):")
            lines += report.problems.map { "  - \($0)" }
        }
        return lines.joined(separator: "\n")
    }
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every record against the stamped version's schema and that references resolve.",
        discussion: """
            Commits and branches must point at existing repos and commits, parents and \
            provenance must exist, jobs should reference existing pipelines, and the counts must \
            match the journal. Exits 6 with every problem listed. A cluster that a stopped \
            restore left half restored is not checked: it exits 4, naming the restore to finish.

            Examples:
              pachmigrate verify --endpoints http://etcd:2379
              pachmigrate verify --endpoints http://etcd:2379 --version 1.5.0 -o json

            \(ExitStatus.helpLine(Self.exitStatuses))
            """)

    static let exitStatuses: [ExitStatus] = [
        .ok, .failure, .usage, .notAtRest, .verificationFailed, .stoppedBySIGHUP, .stoppedBySIGINT, .stoppedBySIGTERM,
    ]

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Option(name: .long, help: ArgumentHelp("Check against this version instead of the stamped one.", valueName: "version"))
    var version: String?

    func run() throws {
        try runCommand("verify", output, connection: connection) { context in
            let client = try connection.makeClient(logger: context.logger)
            let journal = JournalReader(store: client, namespace: connection.namespace)
            // Part backup, part what the cluster held before: its records could pass every
            // check, and "OK" would hide the rollback an operator believes finished.
            try journal.refuseIfHalfRestored()
            let detected = try ClusterInspection.detectVersion(store: client, layout: connection.layout, namespace: connection.namespace)
            guard let expected = version ?? detected.version else {
                throw CLIError(.failure, "nothing to verify: \(detected.detail)")
            }
            let counts = try journal.history(limit: 20).last { $0.event == .migrate && $0.to == expected }?.writtenCounts
            return VerifyReport(
                report: try PachydermVerifier(layout: connection.layout).verify(
                    store: client, expectedVersion: expected, journalCounts: counts))
        }
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Print pachmigrate's version and the migrations it knows.",
        discussion: """
            Examples:
              pachmigrate version
              pachmigrate version -o json
            """)

    @OptionGroup var output: OutputOptions

    struct Report: CommandReport {
        var version: String
        var migrations: [String]
        func renderText() -> String {
            "pachmigrate \(version)\nMigrations: " + migrations.joined(separator: ", ")
        }
    }

    func run() throws {
        try runCommand("version", output) { _ in
            Report(
                version: toolVersion,
                migrations: VersionStepRegistry.standard.steps.map { "\($0.from.lowerBound)…\($0.from.upperBound) → \($0.to)" })
        }
    }
}
