import EtcdGateway
import EtcdModel
import Logging

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The run's state record. It is written in txns fenced on the lock, so it never
/// disagrees with the data: `running` means records may be half-way; re-running the same
/// command resumes from the lane cursors.
public struct RunState: Codable, Sendable, Hashable {
    public enum Status: String, Codable, Sendable {
        case idle, running, failed, done

        /// The status as operators read it: "interrupted" for a run stopped on request (which
        /// the journal records as failed), otherwise the recorded one.
        public func name(stoppedOnRequest: Bool) -> String { stoppedOnRequest ? "interrupted" : rawValue }
    }
    public var status: Status
    public var runID: String
    public var from: String
    public var to: String
    /// Revision at which the run first read the cluster: any later write to a record that
    /// the run did not make is someone else's.
    public var startRevision: Int64
    public var startedAt: String
    public var updatedAt: String
    public var step: MigrationStep
    /// The backup the run's first attempt took, as an absolute path on `backupHost` (the
    /// host or pod that wrote it: a resume may run elsewhere).
    public var backupPath: String?
    public var backupHost: String?
    public var backupSHA256: String?
    public var records: Int
    /// Why the run failed, as `code: message` (`Migrator.recordFailure`).
    public var message: String?

    /// The code of the error that stopped a `failed` run (`message`'s first part): an
    /// interrupted run (`.interrupted`) is recorded as failed too.
    public var failureCode: MigrationError.Code? {
        guard status == .failed, let message, let colon = message.firstIndex(of: ":") else { return nil }
        return MigrationError.Code(recorded: String(message[..<colon]))
    }

    /// A run stopped by SIGINT, SIGTERM or SIGHUP: recorded as failed with the code `interrupted`.
    public var stoppedOnRequest: Bool { failureCode == .interrupted }

    /// The run's status as `plan`, `migrate` and `status` name it.
    public var statusName: String { status.name(stoppedOnRequest: stoppedOnRequest) }

    public init(
        status: Status, runID: String, from: String, to: String, startRevision: Int64, startedAt: String,
        updatedAt: String, step: MigrationStep, backupPath: String? = nil, backupHost: String? = nil, backupSHA256: String? = nil,
        records: Int = 0, message: String? = nil
    ) {
        self.status = status
        self.runID = runID
        self.from = from
        self.to = to
        self.startRevision = startRevision
        self.startedAt = startedAt
        self.updatedAt = updatedAt
        self.step = step
        self.backupPath = backupPath
        self.backupHost = backupHost
        self.backupSHA256 = backupSHA256
        self.records = records
        self.message = message
    }
}

/// How far one lane got. `written` counts records written by this run (over all its
/// resumptions); `lastKey` is the last one, and `lastRevision` its mod revision before the
/// run: a resumed run writes every record of the lane still at or after it (the order rule).
public struct LaneCursor: Codable, Sendable, Hashable {
    public var written: Int
    public var lastKey: String
    public var lastRevision: Int64
    /// Of `written`, records re-put unchanged only to keep the lane's order (absent in
    /// cursors of earlier versions).
    public var keptInOrder: Int?

    public init(written: Int, lastKey: String, lastRevision: Int64, keptInOrder: Int? = nil) {
        self.written = written
        self.lastKey = lastKey
        self.lastRevision = lastRevision
        self.keptInOrder = keptInOrder
    }
}

/// What a history entry records. A string on the wire; an entry a newer tool wrote with an
/// event this one does not know still decodes.
public struct HistoryEvent: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// A completed migration (its `counts` are `HistoryCount`s).
    public static let migrate = HistoryEvent(rawValue: "migrate")
    public static let restore = HistoryEvent(rawValue: "restore")
    public static let lockBreak = HistoryEvent(rawValue: "lock-break")
    /// A run stopped on request before its first write: it wrote nothing but this entry.
    public static let stoppedBeforeWriting = HistoryEvent(rawValue: "stopped-before-writing")
}

/// One key of a migration's history `counts`: records of a kind written by the run
/// (`repos`), re-put unchanged only to keep their group's order (`kept-in-order-repos`),
/// or found already migrated (`already-migrated-repos`). The kind is the lane's
/// (`LaneID.kind`).
public struct HistoryCount: Sendable, Hashable, CustomStringConvertible {
    public enum Category: String, Sendable, Hashable, CaseIterable {
        case written = ""
        case keptInOrder = "kept-in-order-"
        case alreadyMigrated = "already-migrated-"
    }
    public var category: Category
    public var kind: String

    public init(_ category: Category, kind: String) {
        self.category = category
        self.kind = kind
    }

    /// The key as written in the history.
    public var key: String { category.rawValue + kind }
    public var description: String { key }

    /// Parses a history counts key; every key parses (a bare kind is `written`).
    public init(parsing key: String) {
        for category in Category.allCases where category != .written && key.hasPrefix(category.rawValue) {
            self.init(category, kind: String(key.dropFirst(category.rawValue.count)))
            return
        }
        self.init(.written, kind: key)
    }
}

/// One line of the history: a completed migration, a restore or a lock break.
public struct HistoryEntry: Codable, Sendable, Hashable {
    public var event: HistoryEvent
    public var at: String
    public var who: String
    public var from: String?
    public var to: String?
    public var counts: [String: Int]?
    /// Of `counts`, the records written per kind (`HistoryCount.Category.written`).
    public var writtenCounts: [String: Int]? {
        counts.map { counts in
            var written: [String: Int] = [:]
            for (key, n) in counts {
                let count = HistoryCount(parsing: key)
                if count.category == .written { written[count.kind, default: 0] += n }
            }
            return written
        }
    }
    public var backupPath: String?
    public var backupSHA256: String?
    public var detail: String?
    /// A restore's first write (of its first attempt); its history key, put in its last
    /// txn, has the last one as its mod revision. A later restore counts what lies between
    /// as pachmigrate's own writes (`JournalReader.lastRestoreWrites`).
    public var wroteFromRevision: Int64?

    public init(
        event: HistoryEvent, at: String, who: String, from: String? = nil, to: String? = nil,
        counts: [String: Int]? = nil, backupPath: String? = nil, backupSHA256: String? = nil,
        detail: String? = nil, wroteFromRevision: Int64? = nil
    ) {
        self.event = event
        self.at = at
        self.who = who
        self.from = from
        self.to = to
        self.counts = counts
        self.backupPath = backupPath
        self.backupSHA256 = backupSHA256
        self.detail = detail
        self.wroteFromRevision = wroteFromRevision
    }
}

/// A restore that has begun writing: the record `Restorer` puts in the txn of its first
/// write and deletes in the txn of its last. Found by a later command, it means the keys
/// under the roots are part backup, part what was there before: `restore` must be run again.
public struct RestoreInProgress: Codable, Sendable, Hashable {
    public var backupPath: String
    public var backupSHA256: String
    /// The keys the backup holds.
    public var keys: Int
    public var startedAt: String
    public var who: String

    /// What to run to finish it, for an operator to paste into a shell.
    public var command: String { "pachmigrate restore \(Self.shellWord(backupPath))" }

    /// `word` as a POSIX shell reads it back: as it is when no character in it is special to
    /// a shell, else single-quoted (a path with a space or a quote in it is still one argument).
    static func shellWord(_ word: String) -> String {
        let plain =
            !word.isEmpty
            && word.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "@%+=:,./_-".unicodeScalars.contains($0)
            }
        return plain ? word : "'" + word.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }
}

enum JSONCoding {
    /// Our own plain Codable structs (strings, integers, no floats) cannot fail to encode;
    /// were one to, writing an empty journal record would hide it, so it stops the process.
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return Array(try encoder.encode(value))
        } catch {
            preconditionFailure("cannot encode \(T.self) as JSON: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], key: [UInt8]) throws(MigrationError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw MigrationError(
                .invalidState,
                "the journal record \(key.printable) is not valid JSON of the expected shape (\(error)); "
                    + "inspect it with `etcdctl get \(key.printable)`"
            )
        }
    }
}

/// ISO 8601 UTC time, for humans reading the journal.
func timestamp(_ date: Date = Date()) -> String {
    date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false))
}

/// The lock as read: its holder, and the key-value it was read from (its lease and create
/// revision, which a lock break compares).
public struct HeldLock: Sendable, Hashable {
    public var holder: LockHolder
    public var record: KeyValue
}

/// Reads the journal records of a namespace. Writes go through `FencedTxn`, fenced on the lock.
public struct JournalReader: Sendable {
    public let store: any KeyValueService
    public let namespace: Namespace

    public init(store: any KeyValueService, namespace: Namespace) {
        self.store = store
        self.namespace = namespace
    }

    public func state() throws(MigrationError) -> RunState? {
        guard let kv = try get(namespace.stateKey, "reading pachmigrate's record of its last run") else { return nil }
        return try JSONCoding.decode(RunState.self, kv.value, key: kv.key)
    }

    public func stampedVersion() throws(MigrationError) -> String? {
        guard let kv = try get(namespace.versionKey, "reading the version pachmigrate stamped") else { return nil }
        return String(decoding: kv.value, as: UTF8.self)
    }

    /// Each lane's cursor, by the lane its key names.
    public func laneCursors() throws(MigrationError) -> [LaneID: LaneCursor] {
        let response = try etcd("reading the lane cursors") { () throws(EtcdError) in
            try store.range(.prefix(namespace.lanesPrefix))
        }
        var cursors: [LaneID: LaneCursor] = [:]
        for kv in response.kvs {
            cursors[namespace.lane(ofCursorKey: kv.key)] = try JSONCoding.decode(LaneCursor.self, kv.value, key: kv.key)
        }
        return cursors
    }

    /// The newest `limit` history entries, oldest first.
    public func history(limit: Int = 10) throws(MigrationError) -> [HistoryEntry] {
        try newestHistory(limit: limit).reversed().map(\.entry)
    }

    /// The revisions the newest finished restore wrote, if the history still holds it.
    public func lastRestoreWrites() throws(MigrationError) -> ClosedRange<Int64>? {
        for (entry, kv) in try newestHistory(limit: 20) where entry.event == .restore {
            if let from = entry.wroteFromRevision, from <= kv.modRevision { return from...kv.modRevision }
        }
        return nil
    }

    /// The newest `limit` history entries, newest first, with their records.
    private func newestHistory(limit: Int) throws(MigrationError) -> [(entry: HistoryEntry, record: KeyValue)] {
        let response = try etcd("reading the history") { () throws(EtcdError) in
            try store.range(
                RangeRequest(
                    key: namespace.historyPrefix, rangeEnd: prefixRangeEnd(namespace.historyPrefix),
                    limit: Int64(limit), sortOrder: .descend, sortTarget: .key))
        }
        var entries: [(entry: HistoryEntry, record: KeyValue)] = []
        for kv in response.kvs {
            entries.append((try JSONCoding.decode(HistoryEntry.self, kv.value, key: kv.key), kv))
        }
        return entries
    }

    /// The restore that began writing and has not finished, if any (`RestoreInProgress`).
    public func restoreInProgress() throws(MigrationError) -> RestoreInProgress? {
        guard let kv = try get(namespace.restoreKey, "checking for a restore stopped half way") else { return nil }
        return try JSONCoding.decode(RestoreInProgress.self, kv.value, key: kv.key)
    }

    /// Refuses a cluster that a stopped restore left half restored: the operator was rolling
    /// back, and a migration would go the other way (`MigrationOptions.abandonRestore`).
    public func refuseIfHalfRestored() throws(MigrationError) {
        guard let restore = try restoreInProgress() else { return }
        throw MigrationError(
            .restoreUnfinished,
            "a restore of \(restore.backupPath) (\(restore.keys) keys, sha256 \(restore.backupSHA256.prefix(12))…), begun at "
                + "\(restore.startedAt) by \(restore.who), did not finish, so the cluster is half restored: part backup, part what it "
                + "held before. Run `\(restore.command)` again, with the flags it was first run with, "
                + "to finish the rollback (it is safe to repeat); only if that backup is lost, add --abandon-restore to migrate "
                + "from what the cluster holds now")
    }

    public func lockHolder() throws(MigrationError) -> HeldLock? {
        guard let kv = try get(namespace.lockKey, "reading the migration lock") else { return nil }
        return HeldLock(holder: try JSONCoding.decode(LockHolder.self, kv.value, key: kv.key), record: kv)
    }

    /// `doing`: what the read is for, in the operator's words, for the error when etcd fails
    /// (the key itself says nothing to someone who never looked inside pachmigrate).
    func get(_ key: [UInt8], _ doing: String? = nil) throws(MigrationError) -> KeyValue? {
        try etcd(doing ?? "reading \(key.printable)") { () throws(EtcdError) in try store.range(RangeRequest(key: key)) }.kvs.first
    }

    /// A history key that sorts by time and never collides with a concurrent writer's.
    func newHistoryKey(runID: String) -> [UInt8] {
        let nanos = UInt64(Date().timeIntervalSince1970 * 1_000_000_000)
        let digits = String(nanos)
        return namespace.historyPrefix + Array((String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "-" + runID).utf8)
    }
}
