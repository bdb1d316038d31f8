import ArgumentParser
import EtcdModel
import MigrationEngine
import PachydermMigrations

/// `pachmigrate convert`: offline conversion of a dump file, no etcd involved.
public struct ConvertCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a dump of a Pachyderm 1.4.x etcd to 1.5.0, offline (no etcd needed).",
        discussion: """
            IN is a dump: one etcd KeyValue per line in etcd's JSON form (each line shaped \
            like an entry of `kvs` in a v3 JSON gateway range response). \
            OUT is written with mode 0600, together with OUT.sha256 (check it with \
            `sha256sum -c OUT.sha256`).

            Records (repos, commits, branches, pipelines, jobs) are decoded from 1.4 gogo text \
            — written by ANY 1.4.x patch release, whatever --from says — and written as 1.5.0 \
            protobuf binary. Fields 1.5.0 has no place for are dropped and reported \
            (1.4.0–1.4.1 JobInfo.error, ≤1.4.3 PipelineInfo.gc_policy, `stopped`); \
            ParallelismSpec is normalized to what 1.4.8 meant. Index keys, repoRefCounts, \
            scratch and workers are copied unchanged. OUT is ordered by mod revision.

            Use it to rehearse a migration on a copy of production: the report lists every \
            drop, normalization, disagreement and every key that could not be converted.

            Without --from, the version is detected from the dump's records as `migrate` \
            detects a cluster's: 1.4 text means 1.4.x.

            When some records fail (exit 8) all are listed and OUT keeps their original values.

            Examples:
              pachmigrate convert prod-backup.jsonl prod-1.5.jsonl
              pachmigrate convert --from 1.4.8 --to 1.5.0 prod.jsonl prod-1.5.jsonl

            \(ExitStatus.helpLine(Self.exitStatuses))
            """
    )

    static let exitStatuses: [ExitStatus] = [.ok, .failure, .usage, .unsupportedVersion, .conversionFailed]

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The release the dump was taken from: 1.4.0 … 1.4.9, or 1.4.x. Default: detected from the dump's records.",
            valueName: "version"))
    public var from: String?

    @Option(name: .long, help: "The release to convert to: 1.5.0 (1.5.x patch levels need no rewrite).")
    public var to: String = "1.5.0"

    @Flag(name: .long, help: "Add the openCommits/<id> entry 1.5.0 needs for each open commit (otherwise each is a warning).")
    public var writeOpenCommits = false

    @Flag(name: .long, help: "Replace OUT if it exists.")
    public var overwrite = false

    @Option(name: .long, help: "Root of Pachyderm's PFS keys (PFS_ETCD_PREFIX).")
    public var pfsPrefix = "pachyderm_pfs"

    @Option(name: .long, help: "Root of Pachyderm's PPS keys (PPS_ETCD_PREFIX).")
    public var ppsPrefix = "pachyderm_pps"

    @Argument(help: ArgumentHelp("The dump to read (JSON lines of etcd KeyValues).", valueName: "IN"))
    public var input: String

    @Argument(help: ArgumentHelp("The dump to write (created with mode 0600, plus OUT.sha256).", valueName: "OUT"))
    public var output: String

    @OptionGroup var outputOptions: OutputOptions

    public init() {}

    public func validate() throws {
        if input == output { throw ValidationError("IN and OUT must be different files") }
    }

    public func run() throws {
        try runCommand("convert", outputOptions) { context in
            let layout = PachydermLayout(pfsPrefix: pfsPrefix, ppsPrefix: ppsPrefix)
            var detected: DetectedVersion?
            if from == nil {
                do throws(DumpError) {
                    detected = try OfflineConverter.detectVersion(dumpPath: input, layout: layout)
                } catch {
                    throw CLIError(.failure, error.description)
                }
            }
            // 1.4.x is the one release a dump can be converted from: a dump detected at 1.5.0
            // (or empty) goes through the same converter, which copies binary records as they
            // are and counts them, as `--from 1.4.x` would; the report says what was detected.
            let source = from ?? "1.4.x"
            // Any version path the planner refuses (≤1.3, unknown release, downgrade) is status 5.
            let plan = try VersionPlanner.plan(from: source, to: to)
            let converter = OfflineConverter(
                layout: layout, plan: plan,
                writeOpenCommits: writeOpenCommits, logger: context.logger)
            do throws(DumpError) {
                let report = try converter.convertDump(inputPath: input, outputPath: output, overwrite: overwrite)
                return ConvertReport(plan: plan.summary, detected: detected, output: output, report: report)
            } catch {
                throw CLIError(error.code == .alreadyExists ? .usage : .failure, error.description)
            }
        }
    }
}

/// The conversion report, for text and JSON.
struct ConvertReport: CommandReport {
    var plan: String
    /// What the dump's records said, when --from was left out.
    var detected: DetectedVersion?
    var output: String
    var report: ConversionReport

    var exitStatus: ExitStatus { report.succeeded ? .ok : .conversionFailed }

    func encode(to encoder: any Encoder) throws {
        struct Note: Encodable { var kind: String, key: String, field: String?, message: String }
        struct Failure: Encodable { var key: String, code: String, field: String?, byteOffset: Int?, message: String }
        struct Body: Encodable {
            var plan: String, detected: DetectedVersion?, output: String, keysRead: Int, recordsRead: Int, copiedUnchanged: Int
            var converted: [String: Int], alreadyBinary: [String: Int], openCommitsWritten: Int
            var notes: [Note], failures: [Failure]
        }
        try Body(
            plan: plan, detected: detected, output: output, keysRead: report.keysRead, recordsRead: report.recordsRead,
            copiedUnchanged: report.copiedUnchanged,
            converted: Dictionary(uniqueKeysWithValues: report.converted.map { ($0.key.rawValue, $0.value) }),
            alreadyBinary: Dictionary(uniqueKeysWithValues: report.alreadyBinary.map { ($0.key.rawValue, $0.value) }),
            openCommitsWritten: report.openCommitsWritten,
            notes: report.notes.map { Note(kind: $0.kind.description, key: $0.key, field: $0.field, message: $0.message) },
            failures: report.failures.map {
                Failure(
                    key: $0.key, code: $0.error.code.description, field: $0.error.field, byteOffset: $0.error.byteOffset, message: $0.error.message)
            }
        ).encode(to: encoder)
    }

    func renderText() -> String {
        var text = ""
        if let detected { text += "Dump: \(detected.version ?? "empty") (detected: \(detected.detail))\n" }
        text += plan + "\n" + report.description
        if report.succeeded {
            text += "\nwrote \(output) and \(output).sha256"
        } else {
            text += "\n\(report.failures.count) record(s) could not be converted; \(output) keeps their original values"
        }
        return text
    }
}
