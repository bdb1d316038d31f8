import EtcdModel
import PachydermSchema

/// One record along a plan's steps, under one policy. The offline `convert`
/// (`OfflineConverter`) and the live `plan` and `migrate` (`PachydermRecordMigration`) both
/// convert through it, so they say the same thing about the same record.
public struct RecordConverter: Sendable {
    public let layout: PachydermLayout
    public let plan: MigrationPlan
    /// Write the `openCommits/<id>` entry 1.5.0 needs with each open commit that has none;
    /// otherwise such a commit gets a warning (and the live scan refuses it).
    public let writeOpenCommits: Bool

    public init(layout: PachydermLayout, plan: MigrationPlan, writeOpenCommits: Bool) {
        self.layout = layout
        self.plan = plan
        self.writeOpenCommits = writeOpenCommits
    }

    /// What converting one record came to.
    public struct Converted: Sendable {
        public enum Action: Sendable, Hashable {
            /// Write this value in place of the old one.
            case rewrite([UInt8])
            /// The value already means what the policy makes of it (our own earlier output,
            /// or a clean 1.5 record): leave it as it is.
            case alreadyMigrated
        }
        public var kind: RecordKind
        public var action: Action
        /// The first step's result: the record as it was read (decoded once), its encoding.
        public var read: ConvertedValue
        /// What another migration left in the record (1.5 binary only; see `LeftoverProblem`).
        public var problems: Set<LeftoverProblem>
        /// The `openCommits/<id>` entry to create with the record (`writeOpenCommits`).
        public var openCommitEntry: KeyValue?
        /// An open commit that has no `openCommits/<id>` entry, written or existing.
        public var openCommitLacksEntry: Bool
        /// Every note of every step, then the converter's own, in that order.
        public var notes: [MigrationNote]
    }

    /// Converts the record at `key`. Nil when `key` is not a record key, or no step of the
    /// plan applies to its kind (nothing to do). `hasEntry` tells whether an open commit's
    /// `openCommits/<id>` entry exists.
    public func convert(
        key: [UInt8], value: [UInt8], hasEntry: (Read14_Commit) -> Bool
    ) throws(RecordCodecError) -> Converted? {
        guard case .record(let kind, _) = layout.classify(key) else { return nil }
        return try convert(kind, key: key, value: value, hasEntry: hasEntry)
    }

    /// Converts a record of `kind` (its key already classified). Nil when no step of the
    /// plan applies to its kind (nothing to do).
    public func convert(
        _ kind: RecordKind, key: [UInt8], value: [UInt8], hasEntry: (Read14_Commit) -> Bool
    ) throws(RecordCodecError) -> Converted? {
        let steps = plan.steps.filter { $0.kinds.contains(kind) }
        guard let firstStep = steps.first else { return nil }
        let read = try firstStep.transform(kind, key, value)
        var current = read.value
        var notes = read.notes
        for step in steps.dropFirst() {
            let converted = try step.transform(kind, key, current)
            current = converted.value
            notes += converted.notes
        }
        let problems =
            read.sourceEncoding == .binary15 ? LeftoverProblem.found(in: read.source, hasOpenCommitEntry: hasEntry) : []
        let open = read.openCommit.flatMap { hasEntry($0) ? nil : $0 }
        var entry: KeyValue?
        if let open {
            if writeOpenCommits {
                entry = try layout.openCommitEntry(forOpen: open)
                notes.append(
                    MigrationNote(
                        kind: .normalized, key: key.printable,
                        message: "open commit: writes \(entry!.key.printable) so 1.5.0 can put files into it and finish it"))
            } else {
                notes.append(
                    MigrationNote(
                        kind: .warning, key: key.printable,
                        message: "open commit (no `finished`) without its openCommits entry: 1.5.0 can neither put files into it "
                            + "nor finish it; finish it first, or migrate it with its entry written"))
            }
        }
        let unchanged = read.sourceEncoding == .binary15 && !read.changesRecord && entry == nil
        return Converted(
            kind: kind, action: unchanged ? .alreadyMigrated : .rewrite(current), read: read, problems: problems,
            openCommitEntry: entry, openCommitLacksEntry: open != nil, notes: notes)
    }
}
