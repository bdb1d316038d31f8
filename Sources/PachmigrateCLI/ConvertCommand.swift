import ArgumentParser
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

            Exit status: 0 every record converted; 8 some records failed (all are listed; \
            OUT keeps their original values); 5 unsupported version path; 2 usage error.

            Example:
              pachmigrate convert --from 1.4.8 --to 1.5.0 prod-backup.jsonl prod-1.5.jsonl
            """
    )

    @Option(name: .long, help: "The release the dump was taken from: 1.4.0 … 1.4.9, or 1.4.x.")
    public var from: String

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

    public init() {}

    public func validate() throws {
        if input == output { throw ValidationError("IN and OUT must be different files") }
    }

    public func run() throws {
        let plan: MigrationPlan
        do {
            plan = try VersionPlanner.plan(from: from, to: to)
        } catch {
            printError("pachmigrate convert: \(error.message)")
            // Any version path the planner refuses (≤1.3, unknown release, downgrade) is status 5.
            throw ExitCode(5)
        }
        print(plan.summary)
        let converter = OfflineConverter(
            layout: PachydermLayout(pfsPrefix: pfsPrefix, ppsPrefix: ppsPrefix), plan: plan,
            writeOpenCommits: writeOpenCommits)
        let report: ConversionReport
        do {
            report = try converter.convertDump(inputPath: input, outputPath: output, overwrite: overwrite)
        } catch {
            printError("pachmigrate convert: \(error)")
            throw ExitCode(error.code == .alreadyExists ? 2 : 1)
        }
        print(report)
        guard report.succeeded else {
            printError("pachmigrate convert: \(report.failures.count) record(s) could not be converted:")
            for failure in report.failures { printError("  \(failure.key)") }
            throw ExitCode(8)
        }
        print("wrote \(output) and \(output).sha256")
    }

    private func printError(_ text: String) {
        var stderr = StandardError()
        print(text, to: &stderr)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func writeToStandardError(_ string: String) {
    var bytes = Array(string.utf8)
    bytes.withUnsafeMutableBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let n = write(2, buffer.baseAddress! + offset, buffer.count - offset)
            if n <= 0 { return }
            offset += n
        }
    }
}

private struct StandardError: TextOutputStream {
    mutating func write(_ string: String) { writeToStandardError(string) }
}
