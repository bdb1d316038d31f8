import Dispatch
import EtcdGateway
import Logging
import Synchronization

/// Set from a signal handler (or a test) to stop a run after the record in flight.
public final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func stop() { flag.store(true, ordering: .releasing) }
    public var isStopped: Bool { flag.load(ordering: .acquiring) }
}

/// Reads the values of many single keys in one round trip: a txn of range ops. With
/// `lock`, transient etcd failures are retried while the lock holds (see `etcdRetrying`).
func fetchValues(
    store: any KeyValueService, keys: ArraySlice<KeyRevision>, revision: Int64 = 0,
    retryingWhileHolding lock: MigrationLock? = nil, logger: Logger? = nil
) throws(MigrationError) -> [KeyValue?] {
    let txn = TxnRequest(success: keys.map { .range(RangeRequest(key: $0.key, revision: revision)) })
    let doing = "reading \(keys.count) records"
    let read = { () throws(EtcdError) in try store.txn(txn) }
    let response =
        if let lock, let logger { try etcdRetrying(doing, lock: lock, logger: logger, read) } else { try etcd(doing, read) }
    return response.responses.map { op -> KeyValue? in
        if case .range(let r) = op { return r.kvs.first }
        return nil
    }
}

/// Writes one lane's records back, in their original mod-revision order, each in its
/// own txn fenced on the lock and on the record's mod revision, together with the lane's
/// cursor. One txn per record is what keeps the relative order: records written in one
/// txn would share a revision. The lane's entries are its tail from the first record that
/// changes (`ClusterScan.pending`): a record whose value does not change is re-put as it is,
/// so that it still sorts after the changed records before it.
struct LaneWriter {
    let store: any KeyValueService
    let lock: MigrationLock
    let namespace: Namespace
    let migration: any RecordMigration
    let stop: StopSignal
    let logger: Logger
    /// Records fetched per round trip; bounded by etcd's ops-per-txn limit.
    var batchSize = 64

    /// Returns the number of records written. `onWritten` is called after each one with
    /// the revision the write landed at, and whether the record was re-put unchanged only
    /// to keep its lane's order.
    func write<Entries: KeyRevisionBatches>(
        lane: String, entries: Entries, cursor: LaneCursor?, onWritten: (_ revision: Int64, _ keptInOrder: Bool) -> Void
    ) throws(MigrationError) -> Int {
        var cursor = cursor ?? LaneCursor(written: 0, lastKey: "", lastRevision: 0)
        let cursorKey = namespace.laneKey(lane)
        var written = 0
        var source = entries
        var batch = try source.next(max: batchSize)
        // Reading and converting batch k+1 runs on another thread while batch k is written:
        // a lane's sequential txns are the bound (docs/performance.md), so they should not
        // also wait for reads and decoding.
        var upcoming = batch.isEmpty ? nil : PreparedBatch.start(self, batch)
        while !batch.isEmpty {
            let prepared = upcoming!.wait()
            let following = try source.next(max: batchSize)
            upcoming = following.isEmpty ? nil : PreparedBatch.start(self, following)
            defer { _ = upcoming?.wait() }  // never leave a prefetch running past an error
            let values = try prepared.values.get()
            for ((entry, current), converted) in zip(zip(batch, values), prepared.conversions) {
                if stop.isStopped {
                    throw MigrationError(
                        .interrupted, "stopped on request after \(written) records of lane \(lane); run the same command again to resume")
                }
                try lock.checkHeld()
                guard let kv = current, kv.modRevision == entry.modRevision else {
                    throw foreignWrite(entry.key, current == nil ? "deleted" : "rewritten at revision \(current!.modRevision)")
                }
                let conversion: RecordConversion
                switch converted {
                case .success(let value)?: conversion = value
                case .failure(let error)?:
                    throw MigrationError(.conversionFailed, "a record stopped converting during the run", keys: [error.description])
                case nil:
                    // Prefetched before it turned out to be current; convert now.
                    do {
                        conversion = try migration.convert(kv)
                    } catch {
                        throw MigrationError(.conversionFailed, "a record stopped converting during the run", keys: [error.description])
                    }
                }
                let value: [UInt8]
                let keptInOrder: Bool
                switch conversion.action {
                case .rewrite(let converted): (value, keptInOrder) = (converted, false)
                case .alreadyMigrated: (value, keptInOrder) = (kv.value, true)
                }
                cursor.written += 1
                if keptInOrder { cursor.keptInOrder = (cursor.keptInOrder ?? 0) + 1 }
                cursor.lastKey = kv.key.printable
                cursor.lastRevision = kv.modRevision
                var compares = [lock.fenceCompare, Compare(key: kv.key, .equal, .modRevision(kv.modRevision))]
                var ops: [RequestOp] = [.put(PutRequest(key: kv.key, value: value, lease: kv.lease))]
                for companion in conversion.companions {
                    compares.append(Compare(key: companion.key, .equal, .createRevision(0)))
                    ops.append(.put(PutRequest(key: companion.key, value: companion.value)))
                }
                let cursorValue = JSONCoding.encode(cursor)
                ops.append(.put(PutRequest(key: cursorKey, value: cursorValue)))
                let txn = TxnRequest(
                    compare: compares, success: ops,
                    failure: [.range(RangeRequest(key: namespace.lockKey)), .range(RangeRequest(key: kv.key)), .range(RangeRequest(key: cursorKey))])
                // Retried after a dropped connection or a timeout, this txn may have landed the
                // first time: the failure branch below recognizes our own write.
                let response = try etcdRetrying("writing \(kv.key.printable)", lock: lock, logger: logger) { () throws(EtcdError) in
                    try store.txn(txn)
                }
                if !response.succeeded {
                    let found = response.responses.map { op -> KeyValue? in
                        if case .range(let r) = op { return r.kvs.first }
                        return nil
                    }
                    // After a failover the client may have sent this txn twice; if the first
                    // one landed, the record and the cursor hold exactly what we wrote.
                    if found.count == 3, found[0]?.createRevision == lock.fence, found[1]?.value == value,
                        found[2]?.value == cursorValue
                    {
                        written += 1
                        onWritten(found[1]!.modRevision, keptInOrder)
                        continue
                    }
                    if found.first??.createRevision == lock.fence {
                        let companions = conversion.companions.map { $0.key.printable }
                        throw foreignWrite(kv.key, "changed while being migrated" + (companions.isEmpty ? "" : " (or \(companions.joined(separator: ", ")) was created)"))
                    }
                    throw MigrationError(
                        .leaseLost,
                        "the lock was lost before \(kv.key.printable) could be written; nothing more was written. Run the same command again to resume.")
                }
                written += 1
                onWritten(response.header.revision, keptInOrder)
            }
            batch = following
        }
        return written
    }

    /// One batch's current values and, for each value still at the scanned revision, its
    /// conversion, computed on a background thread. Only reads: the writing thread checks
    /// everything again (stop, lock, revision) before each write.
    final class PreparedBatch: @unchecked Sendable {
        // Written once by the background thread before `done` is signalled, read after.
        private(set) var values: Result<[KeyValue?], MigrationError> = .success([])
        private(set) var conversions: [Result<RecordConversion, RecordConversionError>?] = []
        private let done = DispatchSemaphore(value: 0)

        static func start(_ writer: LaneWriter, _ batch: [KeyRevision]) -> PreparedBatch {
            let prepared = PreparedBatch()
            let store = writer.store, migration = writer.migration, lock = writer.lock, logger = writer.logger
            let keys = batch
            DispatchQueue.global().async {
                do throws(MigrationError) {
                    let values = try fetchValues(store: store, keys: keys[...], retryingWhileHolding: lock, logger: logger)
                    prepared.values = .success(values)
                    prepared.conversions = zip(keys, values).map { entry, current in
                        guard let kv = current, kv.modRevision == entry.modRevision else { return nil }
                        return Result { () throws(RecordConversionError) in try migration.convert(kv) }
                    }
                } catch {
                    prepared.values = .failure(error)
                    prepared.conversions = Array(repeating: nil, count: keys.count)
                }
                prepared.done.signal()
            }
            return prepared
        }

        /// Waits for the batch; safe to call more than once.
        @discardableResult
        func wait() -> PreparedBatch {
            done.wait()
            done.signal()
            return self
        }
    }

    private func foreignWrite(_ key: [UInt8], _ what: String) -> MigrationError {
        MigrationError(
            .foreignWrite,
            "someone else wrote to the cluster during the migration: \(key.printable) was \(what). Nothing of theirs was overwritten. Stop whatever writes (pachd, pipelines), then run the same command again to resume.",
            keys: [key.printable])
    }
}

extension EtcdError {
    /// Failures that say nothing about the request itself: etcd restarting, a member gone
    /// (the client has already tried every endpoint), no leader for a moment, no answer in time.
    var isTransient: Bool { code == .unavailable || code == .timeout || code == .transport }
}

/// Runs one etcd call of the write phase, retrying transient failures with backoff while
/// the lock is still ours, for at most the lock's TTL: an etcd restart or a leader
/// election is ridden out instead of failing the run. Every write-phase call is safe to
/// repeat: puts of the same value are idempotent and the fenced record txn recognizes its
/// own landed write. When etcd stays away, stops resumably (`.interrupted`, exit 7).
func etcdRetrying<T>(
    _ doing: @autoclosure () -> String, lock: MigrationLock, logger: Logger, _ body: () throws(EtcdError) -> T
) throws(MigrationError) -> T {
    let patience = Duration.seconds(max(5, lock.ttl))
    let deadline = ContinuousClock.now + patience
    var delay = Duration.milliseconds(100)
    while true {
        do {
            return try body()
        } catch {
            guard error.isTransient else { throw MigrationError.store(error, while: doing()) }
            try lock.checkHeld()
            guard ContinuousClock.now + delay < deadline else {
                throw MigrationError(
                    .interrupted,
                    "etcd stayed unavailable for \(patience) while \(doing()) (\(error)); everything written so far is recorded. Run the same command again to resume once etcd is back.",
                    underlying: error)
            }
            logger.warning("etcd unavailable; retrying", metadata: ["while": "\(doing())", "error": "\(error.message)"])
            ContinuousClockSleep.sleep(for: delay)
            delay = min(delay * 2, .seconds(1))
        }
    }
}
