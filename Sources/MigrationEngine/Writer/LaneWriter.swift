import EtcdGateway
import EtcdModel
import Logging

/// Writes lanes' records back, strictly in their original mod-revision order inside each
/// lane, with no etcd read and no conversion: the scan spilled each record's new value
/// (`PendingWrite`). The lanes' entries are their tails from the first record that changes
/// (`ClusterScan.pending`): a record whose value does not change is re-put as it is, so that
/// it still sorts after the changed records before it.
///
/// **Txns across groups.** Only records of one lane (ordering group) must land at distinct,
/// increasing revisions; records of different groups may share one. So each txn carries the
/// next record of as many lanes as fit — never two of one lane — and the lanes need only as
/// many txns as the longest of them. Lanes with the most records left go first, so the
/// longest lane is in every txn and the floor is reached. Each txn compares the lock's fence
/// once and every record's mod revision (and every companion's absence), and puts each
/// lane's cursor beside its record: the journal never disagrees with the data.
struct LaneWriter {
    let store: any KeyValueService
    let lock: MigrationLock
    let namespace: Namespace
    let stop: StopSignal
    /// Admits each txn's growth under etcd's quota; nil where etcd will not say its size.
    let space: SpaceGuard?
    let logger: Logger
    /// etcd's limit on each of a txn's compare, success and failure lists, as the store is
    /// configured (`EtcdClient.Configuration.maxTxnOps`; 128 by default, fixed on 3.1).
    var maxOps: Int { store.txnLimits.maxOps }
    /// Keys and values per txn: two thirds of etcd's request limit (1 MiB of the default
    /// 1.5 MiB, fixed on 3.1), the rest left for the framing: each op's and compare's
    /// protobuf fields and the cursors beyond the 256 bytes `pack` counts for each. A record
    /// bigger than this goes alone.
    var maxBytes: Int { store.txnLimits.maxRequestBytes / 3 * 2 }
    /// Read buffers and read-ahead shared by all lanes of one writer, so memory does not
    /// grow with the number of lanes.
    var readBudget = 4 << 20
    var readAhead = 2048

    /// One landed txn: its revision, the records it wrote and how many of them were re-put
    /// unchanged only to keep their lane's order.
    typealias Landed = (revision: Int64, records: Int, keptInOrder: Int)

    /// Writes every record of `lanes`, calling `onLanded` after each txn (the caller counts).
    func write(
        lanes: [LaneID], scan: ClusterScan, cursors: [LaneID: LaneCursor], onLanded: (Landed) -> Void
    ) throws(MigrationError) {
        let perLane = max(1, readAhead / max(1, lanes.count))
        var open = lanes.map { lane in
            OpenLane(
                lane: lane, cursorKey: namespace.laneKey(lane),
                cursor: cursors[lane] ?? LaneCursor(written: 0, lastKey: "", lastRevision: 0),
                source: scan.pending(lane, readBudget: max(16 * 1024, readBudget / max(1, lanes.count))),
                remaining: scan.pendingCounts[lane] ?? 0)
        }
        while true {
            for i in open.indices where open[i].next == nil { try open[i].refill(perLane) }
            open.removeAll { $0.next == nil }
            if open.isEmpty { return }
            if stop.isStopped {
                // The caller words it with the whole run's count (`Migrator.writeLanes`).
                throw MigrationError(.interrupted, "stopped on request; run the same command again to resume")
            }
            try lock.checkHeld()
            let chosen = pack(open)
            let growth = SpaceEstimate.growth(writeBytes: chosen.reduce(0) { $0 + open[$1].writeBytes }, writes: chosen.count)
            try space?.admit(growth, records: chosen.count)
            let landed: (cursors: [LaneCursor], landed: Landed)
            do {
                landed = try send(chosen.map { open[$0] })
            } catch {
                space?.abandoned()
                throw error
            }
            space?.landed(revision: landed.landed.revision)
            for (i, cursor) in zip(chosen, landed.cursors) {
                open[i].cursor = cursor
                open[i].advance()
            }
            onLanded(landed.landed)
        }
    }

    /// A lane being written: its cursor as last landed and its next records, read ahead.
    private struct OpenLane {
        let lane: LaneID
        let cursorKey: [UInt8]
        var cursor: LaneCursor
        var source: LaneTail
        var remaining: Int
        private var queue: [(entry: KeyRevision, write: PendingWrite)] = []
        private var head = 0

        init(lane: LaneID, cursorKey: [UInt8], cursor: LaneCursor, source: LaneTail, remaining: Int) {
            self.lane = lane
            self.cursorKey = cursorKey
            self.cursor = cursor
            self.source = source
            self.remaining = remaining
        }

        /// The lane's next record, nil once it is written (after `refill`, when it is done).
        var next: (entry: KeyRevision, write: PendingWrite)? { head < queue.count ? queue[head] : nil }

        /// The keys and values the next record's write puts (cursor aside), as the space
        /// preflight counts them (`ClusterScan.writeBytes`).
        var writeBytes: Int64 {
            guard let (entry, write) = next else { return 0 }
            return Int64(entry.key.count + write.value.count + write.companions.reduce(0) { $0 + $1.key.count + $1.value.count })
        }

        mutating func advance() {
            head += 1
            remaining -= 1
        }

        mutating func refill(_ count: Int) throws(MigrationError) {
            queue.removeAll(keepingCapacity: true)
            head = 0
            for entry in try source.next(max: count) { queue.append((entry, try PendingWrite(decoding: entry.payload))) }
        }
    }

    /// The lanes whose next records go into the next txn: most records left first (so the
    /// longest lane is in every txn), as many as etcd's limits allow, at least one.
    private func pack(_ open: [OpenLane]) -> [Int] {
        let maxOps = self.maxOps, maxBytes = self.maxBytes
        let order = open.indices.sorted {
            open[$0].remaining != open[$1].remaining ? open[$0].remaining > open[$1].remaining : open[$0].lane.name < open[$1].lane.name
        }
        // The fence compare; the lock's and the first cursor's reads in the read-only txn a
        // failed compare sends (it reads every key of the txn, so it has the same limits).
        var compares = 1, puts = 0, reads = 2, bytes = 0
        var chosen: [Int] = []
        for i in order {
            let (entry, write) = open[i].next!
            let companions = write.companions.count
            let size =
                entry.key.count + write.value.count + open[i].cursorKey.count + 256
                + write.companions.reduce(0) { $0 + $1.key.count + $1.value.count }
            let fits =
                compares + 1 + companions <= maxOps && puts + 2 + companions <= maxOps
                && reads + 1 + companions <= maxOps && bytes + size <= maxBytes
            guard fits || chosen.isEmpty else { continue }
            chosen.append(i)
            compares += 1 + companions
            puts += 2 + companions
            reads += 1 + companions
            bytes += size
        }
        return chosen
    }

    /// Sends one txn of each lane's next record; returns the lanes' new cursors.
    private func send(_ lanes: [OpenLane]) throws(MigrationError) -> (cursors: [LaneCursor], landed: Landed) {
        let records = lanes.map { $0.next! }
        var compares: [Compare] = []
        var puts: [RequestOp] = []
        var reads: [[UInt8]] = []
        var cursors: [LaneCursor] = []
        var cursorValues: [[UInt8]] = []
        var kept = 0
        for (lane, (entry, write)) in zip(lanes, records) {
            compares.append(Compare(key: entry.key, .equal, .modRevision(entry.modRevision)))
            puts.append(.put(PutRequest(key: entry.key, value: write.value, lease: write.lease)))
            reads.append(entry.key)
            for companion in write.companions {
                compares.append(Compare(key: companion.key, .equal, .createRevision(0)))
                puts.append(.put(PutRequest(key: companion.key, value: companion.value)))
                reads.append(companion.key)
            }
            var cursor = lane.cursor
            cursor.written += 1
            if write.keptInOrder {
                cursor.keptInOrder = (cursor.keptInOrder ?? 0) + 1
                kept += 1
            }
            cursor.lastKey = entry.key.printable
            cursor.lastRevision = entry.modRevision
            let value = JSONCoding.encode(cursor)
            puts.append(.put(PutRequest(key: lane.cursorKey, value: value)))
            cursors.append(cursor)
            cursorValues.append(value)
        }
        let what = records.count == 1 ? records[0].entry.key.printable : "\(records.count) records"
        // The first lane's cursor is the marker: its value (the count written and the last
        // key) is written by no one else, so holding it says this txn landed.
        let outcome = try FencedTxn(store: store, lock: lock, logger: logger, stop: stop).send(
            puts, compares: compares, marker: FencedTxn.Marker(key: lanes[0].cursorKey, value: cursorValues[0]), reads: reads,
            doing: "writing \(what)", checking: "reading what changed under \(what)"
        ) {
            MigrationError(
                .leaseLost,
                "the lock was lost before \(what) could be written; nothing more was written. Run the same command again to resume.")
        }
        let found: [KeyValue?]
        switch outcome {
        case .landed(let revision): return (cursors, (revision, records.count, kept))
        case .rejected(let now, let cursor, let revision):
            found = now
            // What tells our own landed write from theirs, for whoever must tell them apart later.
            logger.error(
                "a record changed under the writer",
                metadata: [
                    "lanes": "\(lanes.map(\.lane.name))", "cursor": "\(cursor.map { String(decoding: $0.value, as: UTF8.self) } ?? "none")",
                    "ours": "\(String(decoding: cursorValues[0], as: UTF8.self))", "revision": "\(revision)",
                ])
        }
        // Someone else wrote: name every key of this txn whose compare failed.
        var position = 0
        var foreign: [(key: String, what: String)] = []
        for (entry, write) in records {
            let current = found[position]
            position += 1
            if current?.modRevision != entry.modRevision {
                foreign.append(
                    (
                        entry.key.printable,
                        current.map { "rewritten at revision \($0.modRevision) (read at \(entry.modRevision))" } ?? "deleted"
                    ))
            }
            for companion in write.companions {
                if let created = found[position] { foreign.append((companion.key.printable, "created at revision \(created.createRevision)")) }
                position += 1
            }
        }
        if foreign.isEmpty { foreign = records.map { ($0.entry.key.printable, "changed while being migrated") } }
        throw MigrationError(
            .foreignWrite,
            "someone else wrote to the cluster during the migration: \(foreign.map { "\($0.key) was \($0.what)" }.joined(separator: ", ")). "
                + "Nothing of theirs was overwritten; once it stops, the same command resumes the run.",
            keys: foreign.map(\.key))
    }
}
