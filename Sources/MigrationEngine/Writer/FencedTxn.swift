import EtcdGateway
import EtcdModel
import Logging

/// The one way the engine writes under the lock: a txn whose first compare is the lock's
/// fence, sent through `etcdRetrying`, which tells its own landed write from someone
/// else's. The lane writer, the journal's records and restore all write through it; each
/// words its own errors.
///
/// A txn retried after a dropped connection or a timeout may have landed the first time:
/// its retry then fails a compare (the records it wrote have new mod revisions). A txn
/// whose only compare is the fence needs nothing more: its ops are idempotent, and the
/// fence fails only once the lock is gone. One that compares more names a `Marker`, a key
/// it puts with a value no other write gives it (the lane writer's first cursor): found
/// holding that value, the txn landed.
struct FencedTxn {
    let store: any KeyValueService
    let lock: MigrationLock
    let logger: Logger
    /// Asked to stop, a failed call is not retried (`etcdRetrying`).
    var stop: StopSignal? = nil

    /// A key the txn puts and the value it puts there.
    struct Marker {
        var key: [UInt8]
        var value: [UInt8]
    }

    /// What a sent txn came to.
    enum Outcome {
        /// It landed, at this revision (an earlier attempt's, recognised by its marker).
        case landed(revision: Int64)
        /// A compare of the caller's failed with the lock still held and the marker not
        /// ours: someone else wrote. What the caller asked to read after a failure, in its
        /// order (nil: absent), and the marker's record, read in one txn at `revision`.
        case rejected(reads: [KeyValue?], marker: KeyValue?, revision: Int64)
    }

    /// Sends `ops` if the lock's fence and `compares` hold. `doing` names the write in
    /// errors (`MigrationError.store`); `lockLost` is the caller's error for a lock found
    /// gone. `retrying: false` sends once (a write made while the run is failing anyway).
    /// With compares beyond the fence, a failure is followed by one read-only txn of the
    /// lock, `reads` and the marker (`checking` names it); a txn with no failure branch
    /// costs etcd less to parse, and a failed compare is rare.
    func send(
        _ ops: [RequestOp], compares: [Compare] = [], marker: Marker? = nil, reads: [[UInt8]] = [], doing: String,
        checking: String? = nil, retrying: Bool = true, lockLost: () -> MigrationError
    ) throws(MigrationError) -> Outcome {
        let txn = TxnRequest(compare: [lock.fenceCompare] + compares, success: ops)
        let call = { () throws(EtcdError) in try store.txn(txn) }
        let response = retrying ? try etcdRetrying(doing, lock: lock, stop: stop, logger: logger, call) : try etcd(doing, call)
        if response.succeeded { return .landed(revision: response.header.revision) }
        // Only the fence was compared: it fails only once the lock is gone.
        guard !compares.isEmpty else { throw lockLost() }
        // Nothing of ours is in flight now, so what these reads find is what the failed
        // compares saw, or a foreign writer's later work: either way not ours unless the
        // marker says so.
        let keys = [lock.namespace.lockKey] + reads + (marker.map { [$0.key] } ?? [])
        let reading = TxnRequest(success: keys.map { .range(RangeRequest(key: $0)) })
        let read = try etcdRetrying(checking ?? "checking whether \(doing) landed", lock: lock, stop: stop, logger: logger) {
            () throws(EtcdError) in try store.txn(reading)
        }
        let found = read.responses.map { op -> KeyValue? in
            if case .range(let r) = op { return r.kvs.first }
            return nil
        }
        guard found.count == keys.count, found[0]?.createRevision == lock.fence else { throw lockLost() }
        let markerRecord = marker == nil ? nil : found.last!
        // After a failover the client may have sent this txn twice. Its ops landed together,
        // so a marker holding exactly what we wrote says the first one landed.
        if let marker, let markerRecord, markerRecord.value == marker.value { return .landed(revision: markerRecord.modRevision) }
        return .rejected(reads: Array(found[1..<(1 + reads.count)]), marker: markerRecord, revision: read.header.revision)
    }

    /// A txn compared on the fence alone: landed, or `lockLost`. Returns the revision it
    /// landed at.
    @discardableResult
    func write(_ ops: [RequestOp], doing: String, retrying: Bool = true, lockLost: () -> MigrationError) throws(MigrationError) -> Int64 {
        switch try send(ops, doing: doing, retrying: retrying, lockLost: lockLost) {
        case .landed(let revision): return revision
        case .rejected: throw lockLost()
        }
    }
}
