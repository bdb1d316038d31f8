import EtcdModel
import MigrationEngine

/// Pachyderm's records for the engine: which keys are records and in which ordering group,
/// how each converts along the planned steps, and what makes a cluster not at rest.
public struct PachydermRecordMigration: RecordMigration {
    public let layout: PachydermLayout
    public let plan: MigrationPlan
    /// Migrate open commits (writing the `openCommits/<id>` entry 1.5.0 needs) instead of refusing.
    public let allowOpenCommits: Bool
    /// `openCommits/<id>` keys that exist (read before the scan: they sort after the commits).
    public let openCommitEntries: Set<[UInt8]>

    public init(
        layout: PachydermLayout, plan: MigrationPlan, allowOpenCommits: Bool = false, openCommitEntries: Set<[UInt8]> = []
    ) {
        self.layout = layout
        self.plan = plan
        self.allowOpenCommits = allowOpenCommits
        self.openCommitEntries = openCommitEntries
    }

    public var fromVersion: String { plan.from.description }
    public var toVersion: String { plan.to.description }
    public var backupPrefixes: [[UInt8]] { layout.roots }

    public func lane(of key: [UInt8]) -> LaneID? {
        guard case .record(let kind, let group) = layout.classify(key) else { return nil }
        return LaneID(kind: kind.collection, group: group)
    }

    /// The converter `convert` uses offline too, with this migration's policy.
    public var converter: RecordConverter { RecordConverter(layout: layout, plan: plan, writeOpenCommits: allowOpenCommits) }

    /// One record's conversion, outside a scan.
    public func convert(_ record: KeyValue) throws(RecordConversionError) -> RecordConversion {
        var findings: [AtRestFinding] = []
        var tally = PachydermScanTally()
        switch examine(record, findings: &findings, tally: &tally) {
        case .untouched: throw RecordConversionError(key: record.key.printable, message: "not a record key")
        case .record(_, let conversion): return try conversion.get()
        }
    }

    public func examine(_ record: KeyValue, findings: inout [AtRestFinding], tally: inout PachydermScanTally) -> Examination {
        guard case .record(let kind, let group) = layout.classify(record.key) else {
            inspect(record, findings: &findings)
            return .untouched
        }
        let lane = LaneID(kind: kind.collection, group: group)
        let converted: RecordConverter.Converted?
        do {
            converted = try converter.convert(kind, key: record.key, value: record.value) {
                openCommitEntries.contains(layout.openCommitKey(forOpen: $0))
            }
        } catch {
            return .record(lane, .failure(RecordConversionError(error)))
        }
        guard let converted else { return .record(lane, .success(RecordConversion(nil))) }
        let read = converted.read
        tally.forecast.observe(read.source)
        tally.census.count(read, problems: converted.problems, changes: converted.action != .alreadyMigrated)
        switch read.source {
        case .job(let info) where read.sourceEncoding == .text14 && info.isStartingOrRunning:
            findings.append(
                AtRestFinding(
                    kind: .runningJob, key: record.key.printable,
                    detail: "job \(info.jobID ?? "?") of pipeline \(info.pipelineName ?? "?") is \(info.stateName)", blocking: true))
        // An open commit without its entry (a 1.4 one, or binary Pachyderm's routine wrote
        // without one) is migrated open only when allowed; one with its entry is 1.5.0's own, in use.
        case .commit(let info) where converted.openCommitLacksEntry:
            findings.append(
                AtRestFinding(
                    kind: .openCommit, key: record.key.printable,
                    detail: allowOpenCommits
                        ? "open commit \(info.repoName)@\(info.commitID): migrated open, with its openCommits entry"
                        : "commit \(info.repoName)@\(info.commitID) is open (not finished) and has no openCommits entry",
                    blocking: !allowOpenCommits))
        default:
            break
        }
        return .record(lane, .success(RecordConversion(converted)))
    }

    /// What makes the cluster not at rest, as seen in a key that is not a record.
    private func inspect(_ kv: KeyValue, findings: inout [AtRestFinding]) {
        switch layout.classify(kv.key) {
        case .scratch:
            findings.append(
                AtRestFinding(
                    kind: .inFlightPutFile, key: kv.key.printable, detail: "a put-file is in flight", blocking: true))
        case .worker:
            findings.append(
                AtRestFinding(
                    kind: .liveWorker, key: kv.key.printable,
                    detail: "a worker pod is registered; stop pipelines before upgrading", blocking: false))
        default:
            return
        }
    }
}

/// What the scan counts of Pachyderm's records besides the engine's counts: the state the
/// records are in (and what another migration left), and the reprocessing forecast.
public struct PachydermScanTally: ScanTally {
    public var census = LeftoverCensus()
    public var forecast = ReprocessingForecaster()

    public init() {}
}

extension ClusterScan {
    /// What this scan counted of Pachyderm's records (empty for another product's scan).
    public var pachyderm: PachydermScanTally { tally as? PachydermScanTally ?? PachydermScanTally() }
}

/// What keeps a Pachyderm cluster from being at rest.
extension AtRestFinding.Kind {
    public static let runningJob = Self(rawValue: "running-job")
    public static let openCommit = Self(rawValue: "open-commit")
    public static let inFlightPutFile = Self(rawValue: "in-flight-put-file")
    public static let liveWorker = Self(rawValue: "live-worker")
}

extension RecordConversion {
    /// The engine's view of a conversion (nil: no step applies, nothing to do).
    init(_ converted: RecordConverter.Converted?) {
        guard let converted, case .rewrite(let value) = converted.action else {
            self.init(action: .alreadyMigrated)
            return
        }
        self.init(
            action: .rewrite(value), companions: converted.openCommitEntry.map { [Companion(key: $0.key, value: $0.value)] } ?? [],
            notes: converted.notes)
    }
}

extension RecordConversionError {
    init(_ error: RecordCodecError) {
        self.init(
            key: error.key, message: error.message, code: Code(rawValue: error.code.description), field: error.field,
            byteOffset: error.byteOffset)
    }
}
