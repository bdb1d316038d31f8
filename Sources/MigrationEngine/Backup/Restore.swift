import EtcdGateway
import EtcdModel
import Logging

public struct RestoreResult: Sendable {
    /// What the checks found; with `dryRun`, all that happened.
    public var plan: RestorePlan
    public var dryRun: Bool
    public var restored: Int
    public var removed: [String]
    public var sha256: String
}

/// What `restore` may do without being told: it replaces the cluster it is pointed at, so
/// it asks for a flag before replacing another cluster's keys or throwing away writes made
/// after the backup by something other than pachmigrate.
public struct RestoreOptions: Sendable {
    /// Check and report, write nothing (not even the lock).
    public var dryRun = false
    /// Restore although the target is not the backup's cluster (or the backup does not say
    /// which it is) and holds keys under the roots.
    public var ontoOtherCluster = false
    /// Restore although keys were written after the backup by something other than pachmigrate.
    public var discardNewerWrites = false
    /// The lock the restore takes, and what its holder record says: the command, the
    /// tool's version, and who runs it (the caller knows where it runs).
    public var lock = LockOptions()
    public var command = "restore"
    public var toolVersion = "dev"
    public var identity = HolderIdentity.thisProcess
    /// etcd's space quota, and whether a guard's rounds may compact and defragment.
    public var space = SpacePolicy()

    public init(dryRun: Bool = false, ontoOtherCluster: Bool = false, discardNewerWrites: Bool = false) {
        self.dryRun = dryRun
        self.ontoOtherCluster = ontoOtherCluster
        self.discardNewerWrites = discardNewerWrites
    }
}

/// What a restore would do to the cluster it is pointed at, found before anything is
/// written.
public struct RestorePlan: Sendable, Codable, Hashable {
    public enum Verdict: String, Sendable, Codable, Hashable {
        /// Every identity signal agrees with the backup's origin.
        case sameCluster
        /// Nothing under the roots: disaster recovery, nothing to lose.
        case emptyTarget
        /// At least one identity signal differs (`mismatches`).
        case otherCluster
        /// The backup records no origin (an earlier pachmigrate's, or `convert`'s output).
        case originUnknown
    }

    /// One identity signal on which the backup's origin and the target disagree.
    public struct Mismatch: Sendable, Codable, Hashable {
        public enum Signal: String, Sendable, Codable, Hashable {
            /// etcd's cluster ID.
            case clusterID
            /// The target's revision is below the backup's: it cannot be the cluster the
            /// backup was read from (revisions only grow).
            case revision
            /// The target holds keys created at or before the backup's revision that the
            /// backup does not hold with the same create revision: on the backup's cluster
            /// every such key would be in the backup.
            case keys
        }
        public var signal: Signal
        public var backup: String
        public var target: String
        /// With `.keys`: how many, and the first few.
        public var count: Int?
        public var sample: [String]?
    }

    /// Why a restore would be refused (each is overridden by a `RestoreOptions` setting).
    public enum Refusal: String, Sendable, Codable, Hashable {
        case otherCluster, originUnknown, newerWrites
    }

    public var verdict: Verdict
    public var origin: BackupOrigin?
    public var target: ClusterIdentity
    public var mismatches: [Mismatch]
    /// The member that answered is not the one the backup was read from (another member of
    /// the same cluster answers with its own ID): reported, not held against the target.
    public var otherMember: Bool
    /// The target's (key, create revision) pairs are exactly the backup's.
    public var sameKeys: Bool
    /// The revision the backup was read at (for a backup without an origin: its newest mod
    /// revision, the least it can have been read at).
    public var backupRevision: Int64
    public var backupKeys: Int
    public var targetKeys: Int
    public var toRemove: Int
    /// The first of them (key order).
    public var removeSample: [String]
    /// Keys under the roots written after the backup, not by pachmigrate, whose value the
    /// restore would replace or remove (checked on the backup's cluster, or one of unknown origin).
    public var newerWrites: Int
    public var newerWriteSample: [String]
    /// The revisions pachmigrate's last migration wrote (`Restorer.migrationWrites`), if any.
    public var migrationWrites: ClosedRange<Int64>?
    /// A restore that stopped half way on the target, and the revisions it wrote (its record's
    /// create to last write revision): pachmigrate's own writes of a backup still on file,
    /// not newer writes to protect. This restore replaces them, or finishes it (same sha256).
    public var unfinishedRestore: RestoreInProgress?
    public var unfinishedRestoreWrites: ClosedRange<Int64>?
    /// The revisions the last finished restore wrote (`JournalReader.lastRestoreWrites`):
    /// pachmigrate's own writes too, of a backup on file.
    public var lastRestoreWrites: ClosedRange<Int64>?
    /// What stops the restore unless its `RestoreOptions` setting allows it; empty when it may go ahead.
    public var refusals: [Refusal]
}

/// Puts a backup back: the exact values, in their original relative mod-revision order,
/// and removes every key under the roots that the backup does not hold (such as the
/// `openCommits/` entries a migration created). Runs under the migration lock.
///
/// Before anything is written it checks that the target is the backup's cluster and that
/// nothing but pachmigrate wrote there since (`RestorePlan`); either refusal needs a flag.
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
        from path: String, options: RestoreOptions = RestoreOptions(), stop: StopSignal = StopSignal(),
        progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in }
    ) throws(MigrationError) -> RestoreResult {
        let sha: String
        do {
            sha = try verifyDumpChecksum(path: path)
        } catch {
            throw MigrationError(.restoreFailed, "refusing to restore \(path): \(error)")
        }
        let origin = try BackupOrigin.read(backup: path)
        // First pass: the keys the backup holds, sorted on disk (memory does not grow with
        // the backup), with each one's create revision and a hash of its value for the checks,
        // and a check that every line parses and lies under the roots, before anything is written.
        let backupKeys = try RevisionOrderSpill()
        var lines = 0
        var newestModRevision: Int64 = 0
        var fingerprint = KeyFingerprint()
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
                try backupKeys.append(
                    KeyRevision(key: kv.key, modRevision: 0, payload: HeldKey.payload(createRevision: kv.createRevision, value: kv.value)),
                    to: Self.keysGroup)
                fingerprint.add(key: kv.key, createRevision: kv.createRevision)
                newestModRevision = max(newestModRevision, kv.modRevision)
                lines += 1
            }
            try backupKeys.finish()
        } catch let error as MigrationError {
            throw error
        } catch {
            throw MigrationError(.restoreFailed, "cannot read the backup \(path): \(error)")
        }
        if let origin, origin.keyFingerprint != fingerprint.hex || origin.keys != lines {
            throw MigrationError(
                .restoreFailed,
                "refusing to restore \(path): its \(BackupOrigin.fileSuffix) describes \(origin.keys) keys with another fingerprint "
                    + "than the \(lines) it holds; the two files do not belong together")
        }

        let plan = try assess(
            backup: backupKeys.reader(for: Self.keysGroup), origin: origin, backupKeys: lines, backupFingerprint: fingerprint.hex,
            backupRevision: origin?.revision ?? newestModRevision, options: options)
        if options.dryRun {
            return RestoreResult(plan: plan, dryRun: true, restored: 0, removed: [], sha256: sha)
        }
        if !plan.refusals.isEmpty {
            var error = MigrationError(
                .restoreRefused,
                "refusing to restore \(path); nothing was written: \(plan.refusals.map(\.rawValue).joined(separator: ", "))",
                keys: plan.newerWriteSample)
            error.refusedRestore = plan
            throw error
        }

        try stop.checkBeforeWriting("the restore's checks")
        let holder = LockHolder.current(
            command: options.command, toolVersion: options.toolVersion, from: nil, to: nil, identity: options.identity)
        let lock = try MigrationLock.acquire(
            store: store, namespace: namespace, holder: holder, options: options.lock, stop: stop, logger: logger)
        defer { lock.release() }
        lock.report(step: .restore, done: 0, total: lines)
        try stop.beginWriting()
        // Unstamped before the first key is touched: a restore stopped half way (a signal, a
        // crash) must not leave a cluster that `wait --version` lets a new pachd start on. The
        // record of the restore under way tells every later command (status, plan, migrate)
        // that the cluster is half restored, however this process ends.
        let underWay = RestoreInProgress(backupPath: path, backupSHA256: sha, keys: lines, startedAt: timestamp(), who: holder.who)
        // Put again in every txn of the restore: the record's mod revision is then its last
        // write, so a later restore tells this one's writes from anyone else's (`assess`).
        let recordUnderWay = RequestOp.put(PutRequest(key: namespace.restoreKey, value: JSONCoding.encode(underWay)))
        var restored = 0
        var removed = 0
        func stopIfAsked() throws(MigrationError) {
            guard stop.isStopped else { return }
            var error = MigrationError(
                .interrupted,
                "stopped on request after restoring \(restored) of \(lines) keys and removing \(removed); the cluster is half restored "
                    + "and no longer stamped: run the same restore command again to finish (it is safe to repeat)")
            error.signal = stop.signal
            throw error
        }
        // A stop asked while etcd does not answer ends the restore at that failure, worded as
        // any stop: the next attempt writes the keys again whether this txn landed or not.
        func write(_ ops: [RequestOp], doing: String) throws(MigrationError) -> Int64 {
            do {
                return try fenced(lock, ops, doing: doing, stop: stop)
            } catch {
                if error.code == .interrupted { try stopIfAsked() }
                throw error
            }
        }
        // The keys under a root, a page at a time. The cluster is unstamped by now: a failure
        // says it is half restored and how to finish, as a stop does.
        func list(_ prefix: [UInt8], _ pages: inout PrefixPages) throws(MigrationError) -> [KeyValue]? {
            do throws(MigrationError) {
                return try etcd("listing \(prefix.printable)", { () throws(EtcdError) in try pages.next() })
            } catch {
                try stopIfAsked()
                var halfRestored = error
                halfRestored.message +=
                    "; the cluster is half restored and no longer stamped: run the same restore command again to finish "
                    + "(it is safe to repeat)"
                throw halfRestored
            }
        }
        let unstamped = try write(
            [.deleteRange(DeleteRangeRequest(key: namespace.versionKey)), recordUnderWay], doing: "unstamping the cluster")
        let space = spaceGuard(options.space, startRevision: unstamped)

        // Keys put or removed per txn: within etcd's limit on a txn's ops, with the record.
        let perTxn = min(100, store.txnLimits.maxOps - 1)
        // Remove what the backup does not hold: etcd lists keys in byte order, so one walk
        // over both sorted lists finds them.
        var held = SortedKeys(backupKeys.reader(for: Self.keysGroup))
        var extra: [[UInt8]] = []
        var doomed: [[UInt8]] = []
        func removeDoomed() throws(MigrationError) {
            guard !doomed.isEmpty else { return }
            _ = try write(
                doomed.map { .deleteRange(DeleteRangeRequest(key: $0)) } + [recordUnderWay], doing: "removing keys the backup does not hold")
            extra += doomed
            removed = extra.count
            doomed.removeAll(keepingCapacity: true)
            try stopIfAsked()
        }
        for prefix in prefixes.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            var pages = store.pages(prefix: prefix, keysOnly: true)
            while let page = try list(prefix, &pages) {
                for kv in page where try held.lookup(kv.key) == nil {
                    doomed.append(kv.key)
                    if doomed.count == perTxn { try removeDoomed() }
                }
            }
        }
        try removeDoomed()

        // Write back in file order (mod-revision order). Keys that shared a revision
        // before share one again: they go in one txn.
        do {
            let reader = try DumpReader(path: path)
            var group: [KeyValue] = []
            func flush() throws(MigrationError) {
                guard !group.isEmpty else { return }
                // Leases of the backup's time are long gone: restore values without them.
                try space?.admit(
                    SpaceEstimate.growth(writeBytes: group.reduce(0) { $0 + Int64($1.key.count + $1.value.count) }, writes: group.count),
                    records: group.count)
                do {
                    let revision = try write(
                        group.map { .put(PutRequest(key: $0.key, value: $0.value)) } + [recordUnderWay], doing: "restoring values")
                    space?.landed(revision: revision)
                } catch {
                    space?.abandoned()
                    throw error
                }
                restored += group.count
                lock.report(done: restored)
                progress(ProgressEvent(step: .restore, done: restored, total: lines))
                group.removeAll(keepingCapacity: true)
                try stopIfAsked()
            }
            while let kv = try reader.read() {
                if let first = group.first, first.modRevision != kv.modRevision || group.count >= perTxn {
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
            detail: "\(restored) keys restored, \(extra.count) removed",
            wroteFromRevision: min(unstamped, plan.unfinishedRestoreWrites?.lowerBound ?? unstamped))
        try fenced(
            lock,
            [
                .deleteRange(DeleteRangeRequest(key: namespace.stateKey)),
                .deleteRange(DeleteRangeRequest(key: namespace.versionKey)),
                .deleteRange(.prefix(namespace.lanesPrefix)),
                .deleteRange(DeleteRangeRequest(key: namespace.restoreKey)),
                .put(PutRequest(key: journal.newHistoryKey(runID: holder.holderID), value: JSONCoding.encode(entry))),
            ], doing: "resetting the migration state")
        return RestoreResult(plan: plan, dryRun: false, restored: restored, removed: extra.map(\.printable), sha256: sha)
    }

    private static let keysGroup = "keys"

    /// A key-ordered list read forward once: `lookup` must be asked in increasing key order.
    private struct SortedKeys {
        var source: SpillReader
        var batch: [KeyRevision] = []
        var index = 0

        init(_ source: SpillReader) { self.source = source }

        mutating func lookup(_ key: [UInt8]) throws(MigrationError) -> KeyRevision? {
            while true {
                if index == batch.count {
                    batch = try source.next(max: 1000)
                    index = 0
                    if batch.isEmpty { return nil }
                }
                let candidate = batch[index].key
                if candidate == key { return batch[index] }
                if !candidate.lexicographicallyPrecedes(key) { return nil }
                index += 1
            }
        }
    }

    /// What the first pass keeps of each backup key: its create revision (identity) and
    /// the SHA-256 of its value (a newer write that left the backup's value is no loss).
    private enum HeldKey {
        static func payload(createRevision: Int64, value: [UInt8]) -> [UInt8] {
            var out = SpillBytes()
            out.append(createRevision)
            out.append(valueHash(value))
            return out.bytes
        }

        static func decode(_ entry: KeyRevision) throws(MigrationError) -> (createRevision: Int64, valueHash: [UInt8]) {
            var input = SpillBytes.Reader(entry.payload)
            return (try input.integer(Int64.self), try input.bytes())
        }

        static func valueHash(_ value: [UInt8]) -> [UInt8] {
            var digest = SHA256Digest()
            digest.update(value)
            return digest.finalize()
        }
    }

    /// Returns the revision the ops landed at. Every restore write is idempotent (the backup's
    /// values, deletions), so a retried one that had landed needs no telling apart. etcd
    /// away for longer than the retries ride out fails as a store error, as any other.
    @discardableResult
    private func fenced(_ lock: MigrationLock, _ ops: [RequestOp], doing: String, stop: StopSignal? = nil) throws(MigrationError) -> Int64 {
        do throws(MigrationError) {
            return try FencedTxn(store: store, lock: lock, logger: logger, stop: stop).write(ops, doing: doing) {
                MigrationError(.leaseLost, "the lock was lost while \(doing); run the restore again: it starts over and is safe to repeat")
            }
        } catch {
            guard error.code == .interrupted, let underlying = error.underlying, stop?.isStopped != true else { throw error }
            throw MigrationError.store(underlying, while: doing)
        }
    }

    /// The restore's space guard, as a migration's (`Migrator.estimateSpace`): nil where etcd
    /// will not say its size.
    private func spaceGuard(_ policy: SpacePolicy, startRevision: Int64) -> SpaceGuard? {
        guard (try? store.memberStatuses()) != nil else {
            logger.warning("etcd reports no backend size: the restore cannot stop itself before etcd's space quota")
            return nil
        }
        let permitted = policy.compactEvery == nil ? false : ((try? store.defragmentPermitted()) ?? false)
        let mode = policy.mode(defragmentPermitted: permitted)
        return SpaceGuard(
            store: store, mode: mode, limits: policy.limits,
            compactor: mode == .plain ? nil : HistoryCompactor(store: store, every: policy.compactEvery ?? 1, logger: logger),
            startRevision: startRevision, logger: logger)
    }
}

extension Restorer {
    /// Reads the target once (keys with values, at one revision) beside the backup's
    /// key-sorted list, and finds what a restore would do and whether it may.
    func assess(
        backup: SpillReader, origin: BackupOrigin?, backupKeys: Int, backupFingerprint: String, backupRevision: Int64,
        options: RestoreOptions
    ) throws(MigrationError) -> RestorePlan {
        let target = try ClusterIdentity.read(store: store, probe: prefixes.first ?? namespace.stateKey)
        let ours = try migrationWrites()
        let journal = JournalReader(store: store, namespace: namespace)
        let unfinishedRecord = try journal.get(namespace.restoreKey, "checking for a restore stopped half way")
        let unfinished = try unfinishedRecord.map { (kv) throws(MigrationError) in
            try JSONCoding.decode(RestoreInProgress.self, kv.value, key: kv.key)
        }
        let unfinishedWrites = unfinishedRecord.map { $0.createRevision...$0.modRevision }
        let restoreWrites = try journal.lastRestoreWrites()
        let pachmigratesOwn = [ours, unfinishedWrites, restoreWrites].compactMap { $0 }
        var held = SortedKeys(backup)
        var targetKeys = 0
        var toRemove = 0
        var removeSample: [String] = []
        var contradictions = 0
        var contradictionSample: [String] = []
        var newer = 0
        var newerSample: [String] = []
        var fingerprint = KeyFingerprint()
        // etcd lists keys in byte order and the prefixes are disjoint: walking them in
        // order meets keys in the backup list's order.
        for prefix in prefixes.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            var pages = store.pages(prefix: prefix, revision: target.revision)
            while let page = try etcd("reading \(prefix.printable)", { () throws(EtcdError) in try pages.next() }) {
                for kv in page {
                    targetKeys += 1
                    fingerprint.add(key: kv.key, createRevision: kv.createRevision)
                    let entry = try held.lookup(kv.key).map { (e) throws(MigrationError) in try HeldKey.decode(e) }
                    if entry == nil {
                        toRemove += 1
                        if removeSample.count < 20 { removeSample.append(kv.key.printable) }
                    }
                    // On the backup's cluster a key created at or before the backup's
                    // revision and never deleted since was there when the backup was read,
                    // so the backup holds it with this very create revision.
                    if kv.createRevision <= backupRevision, entry?.createRevision != kv.createRevision {
                        contradictions += 1
                        if contradictionSample.count < 5 { contradictionSample.append(kv.key.printable) }
                    }
                    // A write after the backup is pachmigrate's own when it lies in the
                    // revisions its last migration wrote (see `migrationWrites`), its last
                    // restore's, or those of a restore that stopped half way (each put back
                    // a backup on file); one that left the backup's value in place loses
                    // nothing (this very restore, interrupted).
                    if kv.modRevision > backupRevision, !pachmigratesOwn.contains(where: { $0.contains(kv.modRevision) }),
                        entry?.valueHash != HeldKey.valueHash(kv.value)
                    {
                        newer += 1
                        if newerSample.count < 20 { newerSample.append("\(kv.key.printable) (written at revision \(kv.modRevision))") }
                    }
                }
            }
        }

        var mismatches: [RestorePlan.Mismatch] = []
        if let origin {
            if let theirs = origin.clusterID, let mine = target.clusterID, theirs != mine {
                mismatches.append(.init(signal: .clusterID, backup: theirs, target: mine))
            }
            if target.revision < origin.revision {
                mismatches.append(.init(signal: .revision, backup: "\(origin.revision)", target: "\(target.revision)"))
            }
        }
        if contradictions > 0 {
            mismatches.append(
                .init(
                    signal: .keys, backup: "\(backupKeys) keys read at revision \(backupRevision)",
                    target: "\(contradictions) key(s) created at or before revision \(backupRevision) that the backup does not hold "
                        + "(\(contradictionSample.joined(separator: ", "))\(contradictions > contradictionSample.count ? ", …" : ""))",
                    count: contradictions, sample: contradictionSample))
        }
        let verdict: RestorePlan.Verdict =
            targetKeys == 0 ? .emptyTarget : origin == nil ? .originUnknown : mismatches.isEmpty ? .sameCluster : .otherCluster
        var refusals: [RestorePlan.Refusal] = []
        switch verdict {
        case .otherCluster where !options.ontoOtherCluster: refusals.append(.otherCluster)
        case .originUnknown where !options.ontoOtherCluster: refusals.append(.originUnknown)
        default: break
        }
        // Newer writes matter where the target may be the backup's own cluster; on another
        // cluster every key is "newer", and --onto-other-cluster already accepts losing them.
        if verdict == .sameCluster || verdict == .originUnknown, newer > 0, !options.discardNewerWrites {
            refusals.append(.newerWrites)
        }
        return RestorePlan(
            verdict: verdict, origin: origin, target: target, mismatches: mismatches,
            otherMember: origin?.memberID != nil && target.memberID != nil && origin?.memberID != target.memberID,
            sameKeys: fingerprint.hex == backupFingerprint && targetKeys == backupKeys,
            backupRevision: backupRevision, backupKeys: backupKeys, targetKeys: targetKeys, toRemove: toRemove,
            removeSample: removeSample, newerWrites: newer, newerWriteSample: newerSample, migrationWrites: ours,
            unfinishedRestore: unfinished, unfinishedRestoreWrites: unfinishedWrites, lastRestoreWrites: restoreWrites, refusals: refusals)
    }

    /// The revisions in which pachmigrate's last migration wrote under the roots, from the
    /// journal: from after its start revision (where it read the cluster, and where the
    /// backup it took was read) up to its last journal write.
    ///
    /// Why that interval is pachmigrate's alone: every record txn of a run is fenced on the
    /// lock and compares the record's mod revision with the one the scan read, so a foreign
    /// write to a record not yet written fails the run's txn, and before a run is marked
    /// `done` it re-reads the roots and fails on any write since its start that is not its
    /// own (`checkForForeignWrites`). So a `done` run's [start + 1, completion txn] holds only
    /// its own writes; anything later is someone else's (a 1.5 pachd started after it).
    /// An unfinished run (`running`, or `failed` for another reason than a foreign write)
    /// wrote up to its newest state or lane cursor write, each in the same txn as records;
    /// it was stopped before checking, so a write by someone else while it ran would be
    /// counted as its own: migrations require the cluster at rest, and nothing should write
    /// while one runs. A run that failed on a foreign write vouches for nothing: that write
    /// lies among its own. No state (never migrated, or reset by a restore): nothing.
    func migrationWrites() throws(MigrationError) -> ClosedRange<Int64>? {
        let journal = JournalReader(store: store, namespace: namespace)
        guard let stateRecord = try journal.get(namespace.stateKey) else { return nil }
        let state = try JSONCoding.decode(RunState.self, stateRecord.value, key: stateRecord.key)
        var last = stateRecord.modRevision
        switch state.status {
        case .done: break
        case .idle: return nil
        case .failed where state.failureCode == .foreignWrite: return nil
        case .running, .failed:
            let cursors = try etcd("reading the lane cursors") { () throws(EtcdError) in
                try store.range(.prefix(namespace.lanesPrefix, keysOnly: true))
            }
            last = max(last, cursors.kvs.map(\.modRevision).max() ?? 0)
        }
        guard last > state.startRevision else { return nil }
        return (state.startRevision + 1)...last
    }
}
