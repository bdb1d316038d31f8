import EtcdGateway
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
    /// Filled by the scan (`examine`), which reads every pipeline and job anyway.
    public let forecast = ReprocessingForecaster()
    /// Filled by the scan: what state the records are in, and what another migration left.
    public let census = LeftoverCensus()

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
    public var backupPrefixes: [[UInt8]] { [Array("\(layout.pfsPrefix)/".utf8), Array("\(layout.ppsPrefix)/".utf8)] }

    public func lane(of key: [UInt8]) -> String? {
        if case .record(_, let group) = layout.classify(key) { return group }
        return nil
    }

    public func convert(_ record: KeyValue) throws(RecordConversionError) -> RecordConversion {
        try convertAlongThePlan(record).conversion
    }

    public func examine(_ record: KeyValue, findings: inout [AtRestFinding]) throws(RecordConversionError) -> RecordConversion {
        let (conversion, first) = try convertAlongThePlan(record)
        guard let first else { return conversion }
        forecast.observe(first.source)
        let problems = problems(of: first)
        census.count(first, problems: problems, changes: { if case .rewrite = conversion.action { true } else { false } }())
        let fromText = first.sourceEncoding == .text14
        switch first.source {
        case .job(let info) where fromText && info.isStartingOrRunning:
            findings.append(AtRestFinding(
                kind: .runningJob, key: record.key.printable,
                detail: "job \(info.jobID ?? "?") of pipeline \(info.pipelineName ?? "?") is \(info.stateName)", blocking: true))
        // A binary open commit without its entry (Pachyderm's routine wrote none) is handled
        // as an open 1.4 commit is; one with its entry is 1.5.0's own, in use.
        case .commit(let info) where fromText ? info.isOpen : problems.contains(.openCommitWithoutEntry):
            findings.append(AtRestFinding(
                kind: .openCommit, key: record.key.printable,
                detail: allowOpenCommits
                    ? "open commit \(info.repoName)@\(info.commitID): migrated open, with its openCommits entry"
                    : "commit \(info.repoName)@\(info.commitID) is open (not finished) and has no openCommits entry",
                blocking: !allowOpenCommits))
        default:
            break
        }
        return conversion
    }

    /// The record through every step of the plan; also the first step's result, which
    /// holds the record as it was read (nil when the plan has no steps).
    private func convertAlongThePlan(_ record: KeyValue) throws(RecordConversionError) -> (conversion: RecordConversion, first: ConvertedValue?) {
        guard case .record(let kind, _) = layout.classify(record.key) else {
            throw RecordConversionError(key: record.key.printable, message: "not a record key")
        }
        guard !plan.steps.isEmpty else { return (RecordConversion(action: .alreadyMigrated), nil) }
        var value = record.value
        var notes: [ConversionNote] = []
        var first: ConvertedValue?
        for step in plan.steps {
            let converted: ConvertedValue
            do {
                converted = try step.transform(kind, record.key, value)
            } catch {
                throw RecordConversionError(key: record.key.printable, message: error.description)
            }
            if first == nil { first = converted }
            value = converted.value
            notes += converted.notes.map(ConversionNote.init)
        }
        // 1.5 binary that already means what the policy makes of it (our own earlier output,
        // or a clean 1.5 record): nothing to do. Another tool's 1.5 binary (e.g. Pachyderm's own
        // routine, which keeps removed fields) is repaired, and so is an open binary commit
        // without its entry (when open commits are allowed; otherwise the scan refuses it).
        let needsEntry = first.map { $0.sourceEncoding == .text14 || problems(of: $0).contains(.openCommitWithoutEntry) } ?? false
        if let first, first.sourceEncoding == .binary15, !first.changesRecord, !(allowOpenCommits && needsEntry) {
            return (RecordConversion(action: .alreadyMigrated), first)
        }
        var companions: [(key: [UInt8], value: [UInt8])] = []
        if allowOpenCommits, needsEntry, let open = first?.openCommit {
            do {
                let entry = try layout.openCommitEntry(forOpen: open)
                companions.append(entry)
                notes.append(ConversionNote(
                    kind: .normalized, key: record.key.printable,
                    message: "open commit: writes \(entry.key.printable) so 1.5.0 can put files into and finish it"))
            } catch {
                throw RecordConversionError(key: record.key.printable, message: error.description)
            }
        }
        return (RecordConversion(action: .rewrite(value), companions: companions, notes: notes), first)
    }

    /// What another migration left in the record as read: the classification `verify` uses,
    /// with open commits checked against the entries that exist.
    private func problems(of converted: ConvertedValue) -> Set<LeftoverProblem> {
        guard converted.sourceEncoding == .binary15 else { return [] }
        return LeftoverProblem.found(in: converted.source) { openCommitEntries.contains(layout.openCommitKey(forOpen: $0)) }
    }

    public func inspect(_ kv: KeyValue, findings: inout [AtRestFinding]) {
        switch layout.classify(kv.key) {
        case .scratch:
            findings.append(AtRestFinding(
                kind: .inFlightPutFile, key: kv.key.printable, detail: "a put-file is in flight", blocking: true))
        case .worker:
            findings.append(AtRestFinding(
                kind: .liveWorker, key: kv.key.printable,
                detail: "a worker pod is registered; stop pipelines before upgrading", blocking: false))
        default:
            return
        }
    }
}

/// What keeps a Pachyderm cluster from being at rest.
extension AtRestFinding.Kind {
    public static let runningJob = Self(rawValue: "running-job")
    public static let openCommit = Self(rawValue: "open-commit")
    public static let inFlightPutFile = Self(rawValue: "in-flight-put-file")
    public static let liveWorker = Self(rawValue: "live-worker")
}

extension ConversionNote {
    init(_ note: MigrationNote) {
        let kind: ConversionNote.Kind =
            note.kind == .droppedField ? .dropped : note.kind == .normalized ? .normalized : .warning
        self.init(kind: kind, key: note.key, message: (note.field.map { "\($0): " } ?? "") + note.message)
    }
}
