import EtcdGateway
import Logging

public struct RestoreResult: Sendable {
    public var restored: Int
    public var removed: [String]
    public var sha256: String
}

/// Puts a backup back: the exact values, in their original relative mod-revision order,
/// and removes every key under the roots that the backup does not hold (such as the
/// `openCommits/` entries a migration created). Runs under the migration lock.
public struct Restorer: Sendable {
    public let store: any KeyValueService
    public let namespace: Namespace
    public let prefixes: [[UInt8]]
    public let logger: Logger

    public init(store: any KeyValueService, namespace: Namespace, prefixes: [[UInt8]], logger: Logger) {
        self.store = store
        self.namespace = namespace
        self.prefixes = prefixes
        self.logger = logger
    }

    public func restore(
        from path: String, options: MigrationOptions, progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in }
    ) throws(MigrationError) -> RestoreResult {
        let sha: String
        do {
            sha = try verifyDumpChecksum(path: path)
        } catch {
            throw MigrationError(.restoreFailed, "refusing to restore \(path): \(error)")
        }
        // First pass: the keys the backup holds, sorted on disk (memory does not grow with
        // the backup), and a check that every line parses and lies under the roots, before
        // anything is written.
        let backupKeys = try RevisionOrderSpill()
        var lines = 0
        do {
            let reader = try DumpReader(path: path)
            while let kv = try reader.read() {
                guard prefixes.contains(where: { kv.key.starts(with: $0) }) else {
                    throw MigrationError(
                        .restoreFailed,
                        "\(path) holds \(kv.key.printable), which is outside \(prefixes.map(\.printable).joined(separator: ", ")); "
                            + "is it a backup of this cluster's prefixes?"
                    )
                }
                // Revision 0 for all: the spill's (revision, key) order is then key order.
                try backupKeys.append(KeyRevision(key: kv.key, modRevision: 0), to: Self.keysGroup)
                lines += 1
            }
            try backupKeys.finish()
        } catch let error as MigrationError {
            throw error
        } catch {
            throw MigrationError(.restoreFailed, "cannot read the backup \(path): \(error)")
        }

        let holder = LockHolder.current(command: options.command, toolVersion: options.toolVersion, from: nil, to: nil)
        let lock = try MigrationLock.acquire(store: store, namespace: namespace, holder: holder, options: options.lock, logger: logger)
        defer { lock.release() }
        lock.report(step: .restore, done: 0, total: lines)

        // Remove what the backup does not hold: etcd lists keys in byte order, so one walk
        // over both sorted lists finds them.
        var held = SortedKeys(backupKeys.reader(for: Self.keysGroup))
        var extra: [[UInt8]] = []
        var doomed: [[UInt8]] = []
        func removeDoomed() throws(MigrationError) {
            guard !doomed.isEmpty else { return }
            try fenced(lock, doomed.map { .deleteRange(DeleteRangeRequest(key: $0)) }, doing: "removing keys the backup does not hold")
            extra += doomed
            doomed.removeAll(keepingCapacity: true)
        }
        for prefix in prefixes.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            var pages = store.pages(prefix: prefix, keysOnly: true)
            while let page = try etcd("listing \(prefix.printable)", { () throws(EtcdError) in try pages.next() }) {
                for kv in page where try !held.contains(kv.key) {
                    doomed.append(kv.key)
                    if doomed.count == 100 { try removeDoomed() }
                }
            }
        }
        try removeDoomed()

        // Write back in file order (mod-revision order). Keys that shared a revision
        // before share one again: they go in one txn.
        var restored = 0
        do {
            let reader = try DumpReader(path: path)
            var group: [KeyValue] = []
            func flush() throws(MigrationError) {
                guard !group.isEmpty else { return }
                // Leases of the backup's time are long gone: restore values without them.
                try fenced(lock, group.map { .put(PutRequest(key: $0.key, value: $0.value)) }, doing: "restoring values")
                restored += group.count
                lock.report(done: restored)
                progress(ProgressEvent(step: .restore, done: restored, total: lines))
                group.removeAll(keepingCapacity: true)
            }
            while let kv = try reader.read() {
                if let first = group.first, first.modRevision != kv.modRevision || group.count >= 100 {
                    try flush()
                }
                group.append(kv)
            }
            try flush()
        } catch let error as MigrationError {
            throw error
        } catch {
            throw MigrationError(.restoreFailed, "cannot read the backup \(path): \(error)")
        }

        // Reset the journal; keep the history and add this restore to it.
        let journal = JournalReader(store: store, namespace: namespace)
        let entry = HistoryEntry(
            event: .restore, at: timestamp(), who: holder.who, backupPath: path, backupSHA256: sha,
            detail: "\(restored) keys restored, \(extra.count) removed")
        try fenced(
            lock,
            [
                .deleteRange(DeleteRangeRequest(key: namespace.stateKey)),
                .deleteRange(DeleteRangeRequest(key: namespace.versionKey)),
                .deleteRange(.prefix(namespace.lanesPrefix)),
                .put(PutRequest(key: journal.newHistoryKey(runID: holder.holderID), value: JSONCoding.encode(entry))),
            ], doing: "resetting the migration state")
        return RestoreResult(restored: restored, removed: extra.map(\.printable), sha256: sha)
    }

    private static let keysGroup = "keys"

    /// A key-ordered list read forward once: `contains` must be asked in increasing key order.
    private struct SortedKeys {
        var source: SpillReader
        var batch: [KeyRevision] = []
        var index = 0

        init(_ source: SpillReader) { self.source = source }

        mutating func contains(_ key: [UInt8]) throws(MigrationError) -> Bool {
            while true {
                if index == batch.count {
                    batch = try source.next(max: 1000)
                    index = 0
                    if batch.isEmpty { return false }
                }
                let candidate = batch[index].key
                if candidate == key { return true }
                if !candidate.lexicographicallyPrecedes(key) { return false }
                index += 1
            }
        }
    }

    private func fenced(_ lock: MigrationLock, _ ops: [RequestOp], doing: String) throws(MigrationError) {
        let response = try etcd(doing) { () throws(EtcdError) in
            try store.txn(TxnRequest(compare: [lock.fenceCompare], success: ops))
        }
        guard response.succeeded else {
            throw MigrationError(.leaseLost, "the lock was lost while \(doing); run the restore again: it starts over and is safe to repeat")
        }
    }
}
