import PachydermSchema

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What another migration can leave in a record that 1.5.0 reads: Pachyderm 1.5.0's own
/// routine (which encoded with the 1.4.8 messages and skipped what it could not parse), or a
/// 1.5 pachd started on 1.4 data. One classification serves `plan`, `migrate` (through the
/// step, which repairs each) and `verify` (which names each as a problem), so the three never
/// disagree about what is broken.
public enum LeftoverProblem: String, Sendable, Hashable, Codable, CodingKeyRepresentable, CaseIterable, Comparable {
    /// 1.5 binary still carrying `PipelineInfo.stopped`, `JobInfo.stopped` or
    /// `ParallelismSpec.strategy`, fields 1.5.0 removed.
    case removedFields = "removed-fields"
    /// `constant` and `coefficient` both set: 1.5.0 rejects it ("Unable to interpret ParallelismSpec").
    case staleParallelismSpec = "stale-parallelism-spec"
    /// A spec whose meaning depends on the strategy Pachyderm's binary still carries: CONSTANT
    /// (absent on the wire) with constant 0 and a coefficient set ran one worker per node in
    /// 1.4.8; 1.5.0, which has no strategy, would read the coefficient.
    case strategyDependentParallelismSpec = "strategy-dependent-parallelism-spec"
    /// 1.4 text in a cluster otherwise in 1.5 binary (Pachyderm's routine skipped what its
    /// 1.4.8 parser rejected, e.g. records of older 1.4 releases).
    case leftoverText = "leftover-text"
    /// An open commit in 1.5 binary without the `openCommits/<id>` entry 1.5.0 needs to put
    /// files into it or finish it (Pachyderm's routine wrote none).
    case openCommitWithoutEntry = "open-commit-without-entry"

    public static func < (a: Self, b: Self) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// What `migrate` does about it: the same policy as for a 1.4 record.
    public var remedy: String {
        switch self {
        case .removedFields: "re-encoded without them (stopped is derived from state; strategy is folded into the spec)"
        case .staleParallelismSpec, .strategyDependentParallelismSpec:
            "normalized by the strategy the record carries (absent: CONSTANT): CONSTANT n → {constant: n}, CONSTANT 0 → {}, "
                + "COEFFICIENT c → {coefficient: c}"
        case .leftoverText: "converted like any 1.4 record"
        case .openCommitWithoutEntry:
            "refused as not at rest, or with --allow-open-commits its openCommits entry is written with the commit"
        }
    }

    public var summary: String {
        switch self {
        case .removedFields: "1.5 binary still carrying fields 1.5.0 removed (stopped, ParallelismSpec.strategy)"
        case .staleParallelismSpec: "ParallelismSpec with both constant and coefficient set, which 1.5.0 rejects"
        case .strategyDependentParallelismSpec: "ParallelismSpec whose meaning depends on the removed strategy field"
        case .leftoverText: "1.4 text left among 1.5 binary records"
        case .openCommitWithoutEntry: "open commit without its openCommits entry"
        }
    }

    /// The problems of one decoded 1.5 binary record. `hasOpenCommitEntry` says whether the
    /// `openCommits/<id>` entry of an open commit exists. Text records are classified by the
    /// caller (`leftoverText` only means something among binary ones).
    public static func found(in record: Decoded14Record, hasOpenCommitEntry: (Read14_Commit) -> Bool) -> Set<LeftoverProblem> {
        var problems: Set<LeftoverProblem> = []
        switch record {
        case .pipeline(let info):
            problems.formUnion(found(stopped: info.stopped, spec: info.hasParallelismSpec ? info.parallelismSpec : nil))
        case .job(let info):
            problems.formUnion(found(stopped: info.stopped, spec: info.hasParallelismSpec ? info.parallelismSpec : nil))
        case .commit(let info) where info.isOpen && !hasOpenCommitEntry(info.commit):
            problems.insert(.openCommitWithoutEntry)
        default:
            break
        }
        return problems
    }

    private static func found(stopped: Bool, spec: Read14_ParallelismSpec?) -> Set<LeftoverProblem> {
        var problems: Set<LeftoverProblem> = []
        let pachydermBinary = carriesRemovedFields(stopped: stopped, spec: spec)
        if pachydermBinary { problems.insert(.removedFields) }
        if let spec {
            if spec.constant != 0 && spec.coefficient != 0 { problems.insert(.staleParallelismSpec) }
            if pachydermBinary && spec.strategy == .constant && spec.constant == 0 && spec.coefficient != 0 {
                problems.insert(.strategyDependentParallelismSpec)
            }
        }
        return problems
    }

    /// A binary record carrying `stopped` or `strategy` was written with the 1.4.8 messages
    /// (Pachyderm's routine), so its spec means what it meant in 1.4.8: an absent strategy is
    /// CONSTANT. Without them the record may be 1.5.0's own, where a lone coefficient is a
    /// coefficient; it is left as 1.5.0 reads it.
    static func carriesRemovedFields(stopped: Bool, spec: Read14_ParallelismSpec?) -> Bool {
        stopped || (spec.map { $0.strategy != .constant } ?? false)
    }
}

/// The state a cluster's records are in, as the scan found them.
public enum ClusterCondition: String, Sendable, Hashable, Codable {
    case empty
    /// Every record is 1.4 text: an ordinary upgrade.
    case release14 = "1.4"
    /// 1.4 text and 1.5 binary side by side: another migration (Pachyderm's own routine, or a
    /// 1.5 pachd on 1.4 data) got part of the way.
    case partlyMigrated = "partly-migrated"
    /// Every record is 1.5 binary, but some carry what another migration left (`LeftoverProblem`).
    case halfDone15 = "1.5-half-done"
    /// Every record is 1.5 binary as 1.5.0 reads it: nothing to repair.
    case clean15 = "1.5-clean"

    public var summary: String {
        switch self {
        case .empty: "no Pachyderm records"
        case .release14: "every record is 1.4 text: an ordinary upgrade"
        case .partlyMigrated:
            "1.4 text and 1.5 binary side by side: another migration (Pachyderm's own, or a 1.5 pachd on 1.4 data) left it half done"
        case .halfDone15: "every record is 1.5 binary, but some still carry what Pachyderm's own migration left behind"
        case .clean15: "every record is clean 1.5.0 binary: nothing to repair"
        }
    }
}

/// Counts, per record kind, how records are stored and what another migration left in them.
/// Filled by the scan (one `count` per record, `PachydermScanTally`), read by `plan` and
/// `migrate` for their report.
public struct LeftoverCensus: Sendable {
    public struct Tally: Sendable, Hashable, Codable {
        /// Per record kind (`repo`, `job`, …).
        public var text14: [String: Int] = [:]
        public var binary15: [String: Int] = [:]
        /// Per problem, per record kind. A record can have several problems.
        public var problems: [LeftoverProblem: [String: Int]] = [:]
        /// Binary records whose value the policy changes.
        public var binaryToRepair: [String: Int] = [:]

        public var condition: ClusterCondition {
            let text = text14.values.reduce(0, +), binary = binary15.values.reduce(0, +)
            if text == 0 && binary == 0 { return .empty }
            if binary == 0 { return .release14 }
            if text > 0 { return .partlyMigrated }
            return problems.isEmpty && binaryToRepair.isEmpty ? .clean15 : .halfDone15
        }
    }
    private var tally = Tally()

    public init() {}

    mutating func count(_ record: ConvertedValue, problems: Set<LeftoverProblem>, changes: Bool) {
        let kind = record.source.kind.rawValue
        switch record.sourceEncoding {
        case .text14:
            tally.text14[kind, default: 0] += 1
        case .binary15:
            tally.binary15[kind, default: 0] += 1
            if changes { tally.binaryToRepair[kind, default: 0] += 1 }
            for problem in problems { tally.problems[problem, default: [:]][kind, default: 0] += 1 }
        }
    }

    /// What the scan found; text records among binary ones are counted as `leftoverText`.
    public var result: Tally {
        var result = tally
        if result.condition == .partlyMigrated { result.problems[.leftoverText] = result.text14 }
        return result
    }
}
