import ArgumentParser
import EtcdGateway
import Logging
import MigrationEngine
import PachydermMigrations

struct BackupReport: CommandReport {
    var backup: BackupInfo
    var snapshot: String?
    var snapshotBytes: Int64?

    func renderText() -> String {
        var lines = ["Backup: \(backup.path) (\(backup.keys) keys at revision \(backup.revision), sha256 \(backup.sha256))"]
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
            (mode 0600). `pachmigrate restore PATH` puts it back exactly.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("Where to write the backup.", valueName: "path"))
    var path: String

    @Option(name: .long, help: ArgumentHelp("Also save etcd's own snapshot here.", valueName: "path"))
    var snapshot: String?

    func run() throws {
        try runCommand("backup", output) { context in
            let client = try connection.makeClient(logger: context.logger)
            let layout = connection.layout
            let prefixes = [Array("\(layout.pfsPrefix)/".utf8), Array("\(layout.ppsPrefix)/".utf8)]
            let info = try Backup.take(store: client, prefixes: prefixes, to: path, logger: context.logger)
            var report = BackupReport(backup: info)
            if let snapshot {
                report.snapshotBytes = try client.snapshot(toFile: snapshot)
                report.snapshot = snapshot
            }
            return report
        }
    }
}

struct RestoreReport: CommandReport {
    var path: String
    var sha256: String
    var restored: Int
    var removed: [String]

    func renderText() -> String {
        var lines = ["Restored \(restored) keys from \(path) (sha256 \(sha256) verified); removed \(removed.count) key(s) the backup did not hold."]
        lines += removed.prefix(50).map { "  - removed \($0)" }
        if removed.count > 50 { lines.append("  … \(removed.count - 50) more (--output json)") }
        lines.append("The migration state was reset; the history keeps this restore.")
        return lines.joined(separator: "\n")
    }
}

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Put a backup back: exact values, original order, extra keys removed, state reset.",
        discussion: """
            Checks the backup's sha256 first, refuses while a migration holds the lock, then \
            takes the lock itself. Safe to run again if interrupted.

            \(ExitStatus.helpText)
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("The backup to restore (PATH.sha256 must be beside it).", valueName: "path"))
    var path: String

    @Option(name: .long, help: ArgumentHelp("Wait this long for a held lock.", valueName: "duration"))
    var waitLock: DurationArgument?

    func run() throws {
        try runCommand("restore", output) { context in
            let client = try connection.makeClient(logger: context.logger)
            let layout = connection.layout
            var options = MigrationOptions(backup: .none)
            options.command = "pachmigrate restore"
            options.toolVersion = toolVersion
            options.lock = LockOptions(wait: waitLock?.duration ?? .zero)
            let restorer = Restorer(
                store: client, namespace: connection.namespace,
                prefixes: [Array("\(layout.pfsPrefix)/".utf8), Array("\(layout.ppsPrefix)/".utf8)], logger: context.logger)
            let result = try restorer.restore(from: path, options: options) { context.progress.update($0) }
            return RestoreReport(path: path, sha256: result.sha256, restored: result.restored, removed: result.removed)
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
            match the journal. Exits 6 with every problem listed.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Option(name: .long, help: ArgumentHelp("Check against this version instead of the stamped one.", valueName: "version"))
    var version: String?

    func run() throws {
        try runCommand("verify", output) { context in
            let client = try connection.makeClient(logger: context.logger)
            let journal = JournalReader(store: client, namespace: connection.namespace)
            let detected = try ClusterInspection.detectVersion(store: client, layout: connection.layout, namespace: connection.namespace)
            guard let expected = version ?? detected.version else {
                throw CLIError(.failure, "nothing to verify: \(detected.detail)")
            }
            let counts = try journal.history(limit: 20).last { $0.event == .migrate && $0.to == expected }?.counts
            return VerifyReport(
                report: try PachydermVerifier(layout: connection.layout).verify(
                    store: client, expectedVersion: expected, journalCounts: counts))
        }
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print pachmigrate's version and the migrations it knows.")

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
