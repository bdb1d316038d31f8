import EtcdGateway
import Logging

/// A key and the revision it was last written at: the unit of ordering. Values are not
/// kept in memory; they are fetched again, in batches, when needed.
public struct KeyRevision: Sendable, Hashable {
    public init(key: [UInt8], modRevision: Int64) {
        self.key = key
        self.modRevision = modRevision
    }

    public var key: [UInt8]
    public var modRevision: Int64
}

/// One pass over everything under the migration's roots at one pinned revision: what
/// would change, what cannot convert, what makes the cluster not at rest, and, per lane,
/// the records to rewrite in their original mod-revision order.
public struct ClusterScan: Sendable {
    /// The pinned revision the scan read.
    public var revision: Int64
    /// The order of things, held on disk: every key under the roots (group `backupGroup`,
    /// only when the scan was asked to keep them, for a backup) and, per lane, the records
    /// still to rewrite; each read back in (mod revision, key) order.
    public let order: RevisionOrderSpill
    static let backupGroup = "\u{0}backup"
    /// Every key under the roots, in mod-revision order (ties by key), for backups.
    public func allKeys() -> SpillReader { order.reader(for: Self.backupGroup) }
    public var allKeysCount: Int { order.count(of: Self.backupGroup) }
    /// How many keys the scan read under the roots (whether or not `allKeys` kept them).
    public var keysScanned = 0
    /// Per lane, how many records are still to rewrite; `pending(lane)` reads them in order.
    public var pendingCounts: [String: Int]
    public func pending(_ lane: String) -> SpillReader { order.reader(for: lane) }
    /// Per lane kind (`jobs`, `commits`, …): records that need rewriting.
    public var toRewrite: [String: Int]
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

    public var pendingCount: Int { pendingCounts.values.reduce(0, +) }
    public var blockingFindings: [AtRestFinding] { findings.filter(\.blocking) }

    /// The kind of a lane: its name up to the first `/` (`commits/images` → `commits`).
    public static func kind(ofLane lane: String) -> String {
        lane.split(separator: "/", maxSplits: 1).first.map(String.init) ?? lane
    }

    /// Scans `migration.backupPrefixes` at the current revision (or `revision`).
    /// `keepAllKeys`: fill `allKeys` (only a backup needs them; without one, memory then grows
    /// with the records to rewrite, not with every index key).
    /// `runStartRevision`: when resuming, the revision the interrupted run started at;
    /// records rewritten after it are counted as this run's, and any record still in the
    /// old form but modified after it was written by someone else.
    public static func scan(
        store: any KeyValueService, migration: any RecordMigration, revision: Int64 = 0,
        runStartRevision: Int64? = nil, pageSize: Int = 1000, keepAllKeys: Bool = true, sortChunk: Int = 20_000,
        logger: Logger, progress: (Int) -> Void = { _ in }
    ) throws(MigrationError) -> ClusterScan {
        var result = ClusterScan(
            revision: revision, order: try RevisionOrderSpill(chunk: sortChunk), pendingCounts: [:], toRewrite: [:],
            alreadyMigrated: [:], rewrittenByThisRun: [:], untouched: 0, notes: [], failures: [], findings: [],
            companions: 0)
        var pinned = revision
        // Every root at the same pinned revision: the first page pins it.
        for root in migration.backupPrefixes {
            var pages = store.pages(prefix: root, revision: pinned, pageSize: pageSize)
            while let page = try etcd("reading \(root.printable) at revision \(pinned)", { () throws(EtcdError) in try pages.next() }) {
                pinned = pages.revision
                for kv in page {
                    try result.add(kv, migration: migration, runStartRevision: runStartRevision, keepKey: keepAllKeys)
                }
                progress(result.keysScanned)
            }
        }
        result.revision = pinned
        try result.order.finish()
        logger.debug(
            "scan done",
            metadata: ["revision": "\(pinned)", "keys": "\(result.keysScanned)", "pending": "\(result.pendingCount)"])
        return result
    }

    static func revisionOrder(_ a: KeyRevision, _ b: KeyRevision) -> Bool {
        a.modRevision != b.modRevision ? a.modRevision < b.modRevision : a.key.lexicographicallyPrecedes(b.key)
    }

    private mutating func add(
        _ kv: KeyValue, migration: any RecordMigration, runStartRevision: Int64?, keepKey: Bool
    ) throws(MigrationError) {
        keysScanned += 1
        if keepKey { try order.append(KeyRevision(key: kv.key, modRevision: kv.modRevision), to: Self.backupGroup) }
        guard let lane = migration.lane(of: kv.key) else {
            migration.inspect(kv, findings: &findings)
            untouched += 1
            return
        }
        let kind = Self.kind(ofLane: lane)
        let conversion: RecordConversion
        do {
            conversion = try migration.examine(kv, findings: &findings)
        } catch {
            failures.append(error)
            return
        }
        switch conversion.action {
        case .alreadyMigrated:
            if let start = runStartRevision, kv.modRevision > start {
                rewrittenByThisRun[kind, default: 0] += 1
            } else {
                alreadyMigrated[kind, default: 0] += 1
            }
        case .rewrite(let value):
            writeBytes += Int64(kv.key.count + value.count)
            for companion in conversion.companions { writeBytes += Int64(companion.key.count + companion.value.count) }
            if let start = runStartRevision, kv.modRevision > start {
                findings.append(
                    AtRestFinding(
                        kind: .foreignWrite, key: kv.key.printable,
                        detail: "written at revision \(kv.modRevision), after this migration started at \(start), and not by it",
                        blocking: true))
            }
            toRewrite[kind, default: 0] += 1
            companions += conversion.companions.count
            for note in conversion.notes {
                noteCounts[note.kind, default: 0] += 1
                if notes.count < Self.noteLimit { notes.append(note) }
            }
            pendingCounts[lane, default: 0] += 1
            try order.append(KeyRevision(key: kv.key, modRevision: kv.modRevision), to: lane)
        }
    }
}
