import EtcdGateway
import MigrationEngine
import PachydermMigrations

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The parts of a scan an operator reads, for text and JSON.
struct ScanSummary: Encodable {
    var revision: Int64
    var keys: Int
    var toRewrite: [String: Int]
    /// Records re-put unchanged, after a changed record of their group, only to keep its order.
    var keptInOrder: [String: Int]
    var alreadyMigrated: [String: Int]
    var rewrittenByThisRun: [String: Int]
    var untouched: Int
    var companions: Int
    var findings: [AtRestFinding]
    var notes: [ConversionNote]
    /// All notes per kind; `notes` holds the first ClusterScan.noteLimit of them.
    var noteCounts: [String: Int]
    /// Every record that cannot be converted, as `convert` reports them.
    var failures: [RecordConversionError]

    init(_ scan: ClusterScan) {
        revision = scan.revision
        keys = scan.keysScanned
        toRewrite = scan.toRewrite
        keptInOrder = scan.keptInOrder
        alreadyMigrated = scan.alreadyMigrated
        rewrittenByThisRun = scan.rewrittenByThisRun
        untouched = scan.untouched
        companions = scan.companions
        findings = scan.findings
        notes = scan.notes
        noteCounts = Dictionary(uniqueKeysWithValues: scan.noteCounts.map { ($0.key.rawValue, $0.value) })
        failures = scan.failures
    }

    var status: ExitStatus {
        if !failures.isEmpty { return .conversionFailed }
        if findings.contains(where: \.blocking) { return .notAtRest }
        return .ok
    }

    func renderText(verbose: Bool) -> String {
        var lines: [String] = []
        func counts(_ d: [String: Int]) -> String {
            d.isEmpty ? "none" : d.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        }
        lines.append("Keys read at revision \(revision): \(keys)")
        lines.append("  to rewrite:         \(counts(toRewrite))")
        if !keptInOrder.isEmpty { lines.append("  re-put for order:   \(counts(keptInOrder)) (unchanged, after a changed record of their group)") }
        if !alreadyMigrated.isEmpty { lines.append("  already migrated:   \(counts(alreadyMigrated))") }
        if !rewrittenByThisRun.isEmpty { lines.append("  done by this run:   \(counts(rewrittenByThisRun))") }
        lines.append("  left untouched:     \(untouched) (indexes, counters, scratch, workers …)")
        if companions > 0 { lines.append("  openCommits to add: \(companions)") }
        let blocking = findings.filter(\.blocking)
        let warnings = findings.filter { !$0.blocking }
        if !blocking.isEmpty {
            lines.append("Not at rest (\(blocking.count)):")
            lines += blocking.map { "  - \($0.key): \($0.detail)" }
            if blocking.contains(where: { $0.kind != .foreignWrite }), let remedy = remedy(for: .notAtRest) {
                lines.append("  \(remedy).")
            }
        }
        if !warnings.isEmpty {
            lines.append("Warnings (\(warnings.count)):")
            lines += warnings.map { "  - \($0.key): \($0.detail)" }
        }
        if !notes.isEmpty {
            let total = noteCounts.values.reduce(0, +)
            lines.append("Conversion notes: " + noteCounts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
            let shown = verbose ? notes : Array(notes.prefix(20))
            lines += shown.map { "  - \($0)" }
            if shown.count < total {
                lines.append(
                    "  … \(total - shown.count) more"
                        + (verbose
                            ? " (only the first \(notes.count) are kept; `pachmigrate convert` on a backup lists them all)"
                            : " (--verbose, or --output json)"))
            }
        }
        if !failures.isEmpty {
            lines.append("Records that cannot be converted (\(failures.count)):")
            lines += failures.map { "  - \($0)" }
        }
        return lines.joined(separator: "\n")
    }
}

/// What the scan found the records' state to be, and what another migration left in them,
/// per problem and record kind, with what `migrate` does about each.
struct LeftoverSummary: Encodable {
    struct Problem: Encodable {
        var problem: LeftoverProblem
        var description: String
        var records: [String: Int]
        var remedy: String
    }
    var condition: ClusterCondition
    var description: String
    var text14: [String: Int]
    var binary15: [String: Int]
    /// Binary records whose value the repair changes.
    var binaryToRepair: [String: Int]
    var problems: [Problem]

    /// `resuming`: the cluster's own interrupted run, which this one continues. Its half-way
    /// state is then described as its own, not blamed on another migration.
    init(_ tally: LeftoverCensus.Tally, resuming: UnfinishedRun? = nil) {
        condition = tally.condition
        description = tally.condition.summary
        if let resuming, tally.condition == .partlyMigrated {
            description =
                "1.4 text and 1.5 binary side by side, as pachmigrate's own run \(resuming.runID) left them when it was "
                + "interrupted; this run resumes it"
        }
        text14 = tally.text14
        binary15 = tally.binary15
        binaryToRepair = tally.binaryToRepair
        problems = tally.problems.sorted { $0.key < $1.key }.map {
            Problem(problem: $0.key, description: $0.key.summary, records: $0.value, remedy: $0.key.remedy)
        }
    }

    func renderText() -> String {
        func counts(_ d: [String: Int]) -> String { d.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }
        var lines = ["State: \(condition.rawValue): \(description)"]
        for p in problems {
            lines.append("  - \(p.records.values.reduce(0, +)) \(p.problem.rawValue) (\(counts(p.records))): \(p.description)")
            lines.append("      migrate: \(p.remedy)")
        }
        return lines.joined(separator: "\n")
    }
}

func renderForecast(_ forecast: [ReprocessingForecast]) -> String {
    guard !forecast.isEmpty else { return "Reprocessing forecast: no pipeline sets environment variables; nothing reprocesses." }
    var lines = [
        "Reprocessing forecast: \(forecast.count) pipeline(s) set environment variables and will reprocess all their data on their first 1.5 job:"
    ]
    for f in forecast {
        let size = f.dataTotal.map { "\($0) datums (data_total of job \(f.newestFinishedJob ?? "?"))" } ?? "size unknown (no finished job)"
        lines.append("  - \(f.pipeline): env \(f.envNames.joined(separator: ", ")); \(size)")
    }
    return lines.joined(separator: "\n")
}
