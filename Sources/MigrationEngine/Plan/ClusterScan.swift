import EtcdGateway
import EtcdModel
import Logging

/// A key and the revision it was last written at: the unit of ordering, with what the
/// step that reads it back needs (`payload`, opaque to the sort): the value to write
/// (`PendingWrite`) for a lane, the whole record as read (`KeyValue.spilled`) for the
/// backup. The scan converts and reads each record once; nothing reads it from etcd again.
public struct KeyRevision: Sendable, Hashable {
    public init(key: [UInt8], modRevision: Int64, payload: [UInt8] = []) {
        self.key = key
        self.modRevision = modRevision
        self.payload = payload
    }

    public var key: [UInt8]
    public var modRevision: Int64
    public var payload: [UInt8]
}

/// One pass over everything under the migration's roots at one pinned revision: what
/// would change, what cannot convert, what makes the cluster not at rest, and, per lane,
/// the records to rewrite in their original mod-revision order.
public struct ClusterScan: Sendable {
    /// The pinned revision the scan read.
    public var revision: Int64
    /// The order of things, held on disk: every key under the roots with its value as read
    /// (group `backupGroup`, only when the scan was asked to keep them, for a backup) and,
    /// per lane, the records still to rewrite with the value to write (`PendingWrite`);
    /// each read back in (mod revision, key) order.
    public let order: RevisionOrderSpill
    static let backupGroup = "\u{0}backup"
    /// Every key under the roots with its value as read (`KeyValue(spilled:)`), in
    /// mod-revision order (ties by key), for backups.
    public func allKeys() -> SpillReader { order.reader(for: Self.backupGroup) }
    public var allKeysCount: Int { order.count(of: Self.backupGroup) }
    /// How many keys the scan read under the roots (whether or not `allKeys` kept them).
    public var keysScanned = 0
    /// Keys and values read, in bytes: what a backup of them writes (before its encoding).
    public var bytesRead: Int64 = 0
    /// Per lane, how many records are still to write (those that change, and every record
    /// after the first of them: the order rule); `pending(lane)` reads them in order.
    public var pendingCounts: [LaneID: Int]
    public func pending(_ lane: LaneID, readBudget: Int = 256 * 1024) -> LaneTail {
        LaneTail(order.reader(for: lane.name, budget: readBudget), from: orderThresholds[lane] ?? Int64.max)
    }
    /// Per lane, the mod revision from which every record is written (see `pendingCounts`).
    public var orderThresholds: [LaneID: Int64] = [:]
    /// Per lane kind (`jobs`, `commits`, …): records that need rewriting.
    public var toRewrite: [String: Int]
    /// Per lane kind: records whose value does not change but that are re-put, after a record
    /// of their group that does, only so that the group's mod-revision order stays as it was.
    public var keptInOrder: [String: Int] = [:]
    /// Per lane kind: records already in the target form before this run started.
    public var alreadyMigrated: [String: Int]
    /// Per lane kind: records this run (an earlier, interrupted attempt) already rewrote.
    public var rewrittenByThisRun: [String: Int]
    /// Keys under the roots that are not records (indexes, counters, scratch …): left untouched.
    public var untouched: Int
    /// The first `noteLimit` conversion notes; `noteCounts` counts them all. A cluster of
    /// millions of records can carry a note on most of them, and memory must not grow with it.
    public var notes: [ConversionNote]
    public var noteCounts: [ConversionNote.Kind: Int] = [:]
    public static let noteLimit = 1000
    public var failures: [RecordConversionError]
    public var findings: [AtRestFinding]
    /// Companion keys (e.g. `openCommits/…`) the rewrite will create.
    public var companions: Int
    /// Bytes of keys and new values the rewrite will write (records and companions), for
    /// the space preflight.
    public var writeBytes: Int64 = 0
    /// Bytes of keys and old values of the records that change: what the rewrite replaces,
    /// so what a defragmentation after it no longer holds.
    public var replacedBytes: Int64 = 0
    /// What the product counted over the records (`RecordMigration.Tally`): this scan's
    /// alone, so a scan restarted after a compaction counts every record once.
    public var tally: any ScanTally = NoScanTally()

    public var pendingCount: Int { pendingCounts.values.reduce(0, +) }
    /// The most records any one lane has to write: the floor on the write phase's txns
    /// (records of one lane need one txn each; records of different lanes share them).
    public var longestLane: Int { pendingCounts.values.max() ?? 0 }
    /// The record kind of the longest lane (`jobs`, `commits`, …).
    public var longestLaneKind: String {
        pendingCounts.max { $0.value != $1.value ? $0.value < $1.value : $0.key.name > $1.key.name }?.key.kind ?? ""
    }
    public var blockingFindings: [AtRestFinding] { findings.filter(\.blocking) }

    /// Scans `migration.backupPrefixes` at the current revision (or `revision`).
    /// `keepAllKeys`: fill `allKeys`, every key with its value as read at the pinned
    /// revision (only a backup needs them; without one, the temp file holds only the records).
    /// `runStartRevision`: when resuming, the revision the interrupted run started at;
    /// records rewritten after it are counted as this run's, and any record still in the
    /// old form but modified after it was written by someone else.
    /// `resumeCursors`: when resuming, per lane, the original mod revision of the last record
    /// the interrupted run wrote (its journal cursor). Every record of that lane still at or
    /// after it is written, changed or not: the run had started re-putting that lane's tail,
    /// and a record left behind would now sort before the ones already written.
    public static func scan(
        store: any KeyValueService, migration: any RecordMigration, revision: Int64 = 0,
        runStartRevision: Int64? = nil, resumeCursors: [LaneID: Int64] = [:], pageSize: Int = 1000,
        keepAllKeys: Bool = true, sortChunk: Int = 20_000, stop: StopSignal = StopSignal(),
        logger: Logger, progress: (Int) -> Void = { _ in }
    ) throws(MigrationError) -> ClusterScan {
        try scan(
            store: store, opened: migration, revision: revision, runStartRevision: runStartRevision, resumeCursors: resumeCursors,
            pageSize: pageSize, keepAllKeys: keepAllKeys, sortChunk: sortChunk, stop: stop, logger: logger, progress: progress)
    }

    /// `scan` with the migration's type known, so its tally can be kept.
    private static func scan<Migration: RecordMigration>(
        store: any KeyValueService, opened migration: Migration, revision: Int64, runStartRevision: Int64?,
        resumeCursors: [LaneID: Int64], pageSize: Int, keepAllKeys: Bool, sortChunk: Int, stop: StopSignal, logger: Logger,
        progress: (Int) -> Void
    ) throws(MigrationError) -> ClusterScan {
        var result = ClusterScan(
            revision: revision, order: try RevisionOrderSpill(chunk: sortChunk), pendingCounts: [:], toRewrite: [:],
            alreadyMigrated: [:], rewrittenByThisRun: [:], untouched: 0, notes: [], failures: [], findings: [],
            companions: 0)
        var pinned = revision
        var lanes = LaneTally()
        var tally = Migration.Tally()
        // Every root at the same pinned revision: the first page pins it.
        for root in migration.backupPrefixes {
            // Read one page ahead: etcd answers the next page while this one is converted.
            let pages = PrefetchingPages(store.pages(prefix: root, revision: pinned, pageSize: pageSize))
            while let (page, revision) = try etcd("reading \(root.printable) at revision \(pinned)", { () throws(EtcdError) in try pages.next() }) {
                pinned = revision
                for kv in page {
                    try result.add(
                        kv, migration: migration, runStartRevision: runStartRevision, keepKey: keepAllKeys, lanes: &lanes,
                        tally: &tally)
                }
                progress(result.keysScanned)
                try stop.checkBeforeWriting("the scan")
            }
        }
        result.revision = pinned
        result.tally = tally
        try result.order.finish()
        try stop.checkBeforeWriting("the scan")
        try result.applyOrderRule(lanes, resumeCursors: resumeCursors)
        logger.debug(
            "scan done",
            metadata: ["revision": "\(pinned)", "keys": "\(result.keysScanned)", "pending": "\(result.pendingCount)"])
        return result
    }

    static func revisionOrder(_ a: KeyRevision, _ b: KeyRevision) -> Bool {
        a.modRevision != b.modRevision ? a.modRevision < b.modRevision : a.key.lexicographicallyPrecedes(b.key)
    }

    /// Per lane, what the order rule needs from the scan: the earliest record that changes,
    /// and how many change.
    struct LaneTally {
        var firstChange: [LaneID: Int64] = [:]
        var changes: [LaneID: Int] = [:]
        /// Unchanged records' keys and values, for the size of those put back to keep order.
        var unchangedBytes: Int64 = 0
        var unchangedCount = 0
    }

    /// The order rule: in each lane, the first record that changes and every record after it
    /// (in mod-revision order) are written, so that no group is reordered by rewriting part
    /// of it. Counts them by reading each such lane's spilled order once.
    private mutating func applyOrderRule(_ lanes: LaneTally, resumeCursors: [LaneID: Int64]) throws(MigrationError) {
        var thresholds = lanes.firstChange
        // A cursor's lane the scan saw no record of has nothing left to write (its tail is
        // empty, below).
        for (lane, revision) in resumeCursors { thresholds[lane] = min(thresholds[lane] ?? Int64.max, revision) }
        for (lane, threshold) in thresholds {
            var tail = LaneTail(order.reader(for: lane.name), from: threshold)
            var count = 0
            while case let batch = try tail.next(max: 4096), !batch.isEmpty { count += batch.count }
            guard count > 0 else { continue }
            orderThresholds[lane] = threshold
            pendingCounts[lane] = count
            let kept = count - (lanes.changes[lane] ?? 0)
            if kept > 0 { keptInOrder[lane.kind, default: 0] += kept }
        }
        // Records put back only to keep order are written too: estimated at the unchanged
        // records' mean size, for the space preflight.
        let kept = keptInOrder.values.reduce(0, +)
        if kept > 0, lanes.unchangedCount > 0 { writeBytes += Int64(kept) * lanes.unchangedBytes / Int64(lanes.unchangedCount) }
    }

    private mutating func add<Migration: RecordMigration>(
        _ kv: KeyValue, migration: Migration, runStartRevision: Int64?, keepKey: Bool, lanes: inout LaneTally,
        tally: inout Migration.Tally
    ) throws(MigrationError) {
        keysScanned += 1
        bytesRead += Int64(kv.key.count + kv.value.count)
        // The backup is written from these reads: no second read of the cluster.
        if keepKey { try order.append(KeyRevision(key: kv.key, modRevision: kv.modRevision, payload: kv.spilled), to: Self.backupGroup) }
        let lane: LaneID
        let conversion: RecordConversion
        switch migration.examine(kv, findings: &findings, tally: &tally) {
        case .untouched:
            untouched += 1
            return
        case .record(_, .failure(let error)):
            failures.append(error)
            return
        case .record(let id, .success(let converted)):
            (lane, conversion) = (id, converted)
        }
        let kind = lane.kind
        let writtenSinceStart = runStartRevision.map { kv.modRevision > $0 } ?? false
        let pending: PendingWrite
        switch conversion.action {
        case .alreadyMigrated:
            if writtenSinceStart {
                rewrittenByThisRun[kind, default: 0] += 1
                return
            }
            alreadyMigrated[kind, default: 0] += 1
            lanes.unchangedBytes += Int64(kv.key.count + kv.value.count)
            lanes.unchangedCount += 1
            pending = PendingWrite(value: kv.value, lease: kv.lease, keptInOrder: true, companions: [])
        case .rewrite(let value):
            pending = PendingWrite(
                value: value, lease: kv.lease, keptInOrder: false,
                companions: conversion.companions.map { PendingWrite.Companion(key: $0.key, value: $0.value) })
            writeBytes += Int64(kv.key.count + value.count)
            replacedBytes += Int64(kv.key.count + kv.value.count)
            for companion in conversion.companions { writeBytes += Int64(companion.key.count + companion.value.count) }
            if writtenSinceStart {
                findings.append(
                    AtRestFinding(
                        kind: .foreignWrite, key: kv.key.printable,
                        detail: "written at revision \(kv.modRevision), after this migration started at \(runStartRevision!), and not by it",
                        blocking: true))
            }
            toRewrite[kind, default: 0] += 1
            companions += conversion.companions.count
            for note in conversion.notes {
                noteCounts[note.kind, default: 0] += 1
                if notes.count < Self.noteLimit { notes.append(note) }
            }
            lanes.firstChange[lane] = min(lanes.firstChange[lane] ?? Int64.max, kv.modRevision)
            lanes.changes[lane, default: 0] += 1
        }
        // Every record not yet written by this run goes into its lane's order, changed or not,
        // with what the writer will put: which of them must be written is known only once the
        // lane's first change is.
        try order.append(KeyRevision(key: kv.key, modRevision: kv.modRevision, payload: pending.encoded), to: lane.name)
    }
}

/// A lane's records in (mod revision, key) order from a mod revision on: the records the
/// order rule writes. Those before it stay where they are.
public struct LaneTail: KeyRevisionBatches {
    private var base: SpillReader
    private let threshold: Int64

    init(_ base: SpillReader, from threshold: Int64) {
        self.base = base
        self.threshold = threshold
    }

    public mutating func next(max: Int) throws(MigrationError) -> [KeyRevision] {
        while true {
            let batch = try base.next(max: max)
            guard let last = batch.last else { return [] }
            // Entries arrive in revision order: skip whole batches before the threshold.
            if last.modRevision < threshold { continue }
            return batch.first!.modRevision >= threshold ? batch : batch.filter { $0.modRevision >= threshold }
        }
    }
}
