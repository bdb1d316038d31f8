import EtcdGateway
import EtcdModel
import Logging
import Synchronization
import Testing

@testable import MigrationEngine

/// A toy product: records under `app/<collection>/<group>/<id>` hold `v1:<text>` and
/// migrate to `v2:<TEXT>`; `app/meta/…` is left alone; `app/busy/…` makes the cluster not at rest.
struct ToyMigration: RecordMigration {
    var fromVersion = "1"
    var toVersion = "2"
    /// Attach a note to every rewritten record.
    var noteEach = false
    var backupPrefixes: [[UInt8]] { [Array("app/".utf8)] }

    func lane(of key: [UInt8]) -> LaneID? {
        let parts = String(decoding: key, as: UTF8.self).split(separator: "/")
        guard parts.count == 4, parts[1] == "c" else { return nil }
        return LaneID(kind: "c", group: String(parts[2]))
    }

    func convert(_ record: KeyValue) throws(RecordConversionError) -> RecordConversion {
        let text = String(decoding: record.value, as: UTF8.self)
        if text.hasPrefix("v2:") { return RecordConversion(action: .alreadyMigrated) }
        guard text.hasPrefix("v1:") else {
            throw RecordConversionError(key: record.key.printable, message: "neither v1 nor v2")
        }
        let notes = noteEach ? [ConversionNote(kind: .normalized, key: record.key.printable, message: "uppercased")] : []
        return RecordConversion(action: .rewrite(Array(("v2:" + text.dropFirst(3).uppercased()).utf8)), notes: notes)
    }

    func examine(_ kv: KeyValue, findings: inout [AtRestFinding], tally: inout NoScanTally) -> Examination {
        guard let lane = lane(of: kv.key) else {
            if kv.key.starts(with: Array("app/busy/".utf8)) {
                findings.append(AtRestFinding(kind: AtRestFinding.Kind(rawValue: "busy"), key: kv.key.printable, detail: "busy", blocking: true))
            }
            return .untouched
        }
        return .record(lane, Result { () throws(RecordConversionError) in try convert(kv) })
    }
}

func toyCluster(groups: Int = 3, perGroup: Int = 20) -> InMemoryKeyValueService {
    let store = InMemoryKeyValueService()
    var seed: [(String, String)] = [("app/meta/count", "7")]
    // Interleave groups and write ids out of key order so mod-revision order ≠ key order.
    for i in 0..<perGroup {
        for g in 0..<groups {
            seed.append(("app/c/g\(g)/id\((i * 7) % perGroup)", "v1:rec-\(g)-\(i)"))
        }
    }
    store.seed(seed)
    return store
}

/// Keys of each lane in mod-revision order.
func laneOrder(_ store: InMemoryKeyValueService) -> [String: [String]] {
    var lanes: [String: [KeyValue]] = [:]
    for kv in store.all(prefix: "app/c/") {
        let lane = String(String(decoding: kv.key, as: UTF8.self).split(separator: "/")[2])
        lanes[lane, default: []].append(kv)
    }
    return lanes.mapValues { $0.sorted { $0.modRevision < $1.modRevision }.map { String(decoding: $0.key, as: UTF8.self) } }
}

func values(_ store: InMemoryKeyValueService, prefix: String = "app/") -> [String: String] {
    Dictionary(
        uniqueKeysWithValues: store.all(prefix: prefix).map {
            (String(decoding: $0.key, as: UTF8.self), String(decoding: $0.value, as: UTF8.self))
        })
}

let testLogger = Logger(label: "test")

func migrator(_ store: InMemoryKeyValueService, _ migration: ToyMigration = ToyMigration()) -> Migrator {
    Migrator(store: store, migration: migration, namespace: Namespace(), logger: testLogger)
}

@Suite("Migration engine on an in-memory store")
struct EngineTests {
    @Test func migratesEveryRecordKeepingLaneOrder() throws {
        let store = toyCluster()
        let before = laneOrder(store)
        let result = try migrator(store).run(options: MigrationOptions(backup: .none))
        #expect(result.outcome == .migrated)
        #expect(result.written == 60)
        let after = values(store)
        #expect(after["app/meta/count"] == "7")
        #expect(after.filter { $0.key.hasPrefix("app/c/") }.allSatisfy { $0.value.hasPrefix("v2:REC-") })
        #expect(laneOrder(store) == before)
        #expect(String(decoding: store.current("pachmigrate/version")!.value, as: UTF8.self) == "2")
        #expect(store.current("pachmigrate/lock") == nil)
        #expect(store.all(prefix: "pachmigrate/lanes/").isEmpty)
        let history = try JournalReader(store: store, namespace: Namespace()).history()
        #expect(history.count == 1)
        #expect(history.first?.counts?["c"] == 60)
    }

    @Test func secondRunDoesNothing() throws {
        let store = toyCluster()
        _ = try migrator(store).run(options: MigrationOptions(backup: .none))
        let revision = store.revision
        let again = try migrator(store).run(options: MigrationOptions(backup: .none))
        guard case .alreadyMigrated = again.outcome else { Issue.record("expected nothing to do"); return }
        #expect(store.revision == revision)
    }

    /// A restore stopped half way leaves its record: plan and migrate refuse, writing
    /// nothing, until told to abandon it; then the first write removes the record.
    @Test func aHalfRestoredClusterIsRefusedUntilTheRestoreIsAbandoned() throws {
        let store = toyCluster()
        let underWay = RestoreInProgress(
            backupPath: "/backups/pre.jsonl", backupSHA256: "ab12", keys: 61, startedAt: "2026-12-04T04:00:00Z", who: "ops-laptop")
        store.seed([("pachmigrate/restore", String(decoding: JSONCoding.encode(underWay), as: UTF8.self))])
        let revision = store.revision
        for dryRun in [true, false] {
            var options = MigrationOptions(backup: .none)
            options.dryRun = dryRun
            let error = #expect(throws: MigrationError.self) { try migrator(store).run(options: options) }
            #expect(error?.code == .restoreUnfinished)
            #expect(error?.message.contains("`pachmigrate restore /backups/pre.jsonl` again") == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("--abandon-restore") == true)
        }
        #expect(store.revision == revision)

        var options = MigrationOptions(backup: .none)
        options.abandonRestore = true
        #expect(try migrator(store).run(options: options).outcome == .migrated)
        #expect(store.current("pachmigrate/restore") == nil)
        #expect(values(store).filter { $0.key.hasPrefix("app/c/") }.allSatisfy { $0.value.hasPrefix("v2:") })
    }

    /// The command that finishes a restore is pasted into a shell: a backup path with a space
    /// or a quote in it must come back as the one argument it was.
    @Test(arguments: [
        ("/backups/pre-1.5.jsonl", "pachmigrate restore /backups/pre-1.5.jsonl"),
        ("/backups/pre 1.5.jsonl", "pachmigrate restore '/backups/pre 1.5.jsonl'"),
        ("/backups/Bob's pre-1.5.jsonl", #"pachmigrate restore '/backups/Bob'\''s pre-1.5.jsonl'"#),
        ("/backups/$HOME*.jsonl", "pachmigrate restore '/backups/$HOME*.jsonl'"),
    ])
    func theRestoreToFinishIsNamedAsAShellReadsIt(path: String, command: String) {
        let underWay = RestoreInProgress(backupPath: path, backupSHA256: "ab12", keys: 1, startedAt: "2026-12-04T04:00:00Z", who: "ops")
        #expect(underWay.command == command)
    }

    @Test func dryRunWritesNothing() throws {
        let store = toyCluster()
        let revision = store.revision
        let result = try migrator(store).run(
            options: {
                var o = MigrationOptions(backup: .none); o.dryRun = true; return o
            }())
        #expect(result.outcome == .dryRun)
        #expect(result.scan?.pendingCount == 60)
        #expect(result.scan?.untouched == 1)
        #expect(store.revision == revision)
    }

    @Test func theScanCountsEveryNoteButKeepsABoundedNumber() throws {
        let store = toyCluster(groups: 2, perGroup: 600)
        let migration = ToyMigration(noteEach: true)
        let scan = try ClusterScan.scan(store: store, migration: migration, keepAllKeys: false, logger: testLogger)
        #expect(scan.noteCounts[.normalized] == 1200)
        #expect(scan.notes.count == ClusterScan.noteLimit)
        #expect(scan.pendingCount == 1200)
    }

    @Test func heldLockFailsFastNamingTheHolder() throws {
        let store = toyCluster()
        let other = try MigrationLock.acquire(
            store: store, namespace: Namespace(),
            holder: LockHolder.current(command: "other", toolVersion: "t", from: "1", to: "2"), logger: testLogger)
        defer { other.release() }
        let error = #expect(throws: MigrationError.self) { try migrator(store).run(options: MigrationOptions(backup: .none)) }
        #expect(error?.code == .lockHeld)
        #expect(error?.message.contains("running `other`") == true)
        // The holder (this test's own process) still runs: not taken for gone.
        #expect(error?.heldLock?.holder.command == "other")
        #expect(error?.heldLock?.holderProcessGone == false)
        #expect(values(store).filter { $0.value.hasPrefix("v2:") }.isEmpty)
    }

    @Test func refusesWhenNotAtRestAndWritesNothing() throws {
        let store = toyCluster()
        store.seed([("app/busy/job1", "running")])
        let before = values(store)
        let error = #expect(throws: MigrationError.self) { try migrator(store).run(options: MigrationOptions(backup: .none)) }
        #expect(error?.code == .notAtRest)
        #expect(error?.keys.first?.description.hasPrefix("app/busy/job1: busy: busy") == true)
        // The key and why, typed; the sentence is made where it is printed.
        guard case .finding(let finding)? = error?.keys.first?.reason else { Issue.record("expected a finding"); return }
        #expect(finding.key == "app/busy/job1" && finding.blocking)
        // The engine knows no product and no command line: the remedy is theirs to word.
        #expect(error?.message == "the cluster is not at rest; nothing was written")
        #expect(values(store) == before)
        #expect(store.current("pachmigrate/state") == nil)
    }

    @Test func namesEveryRecordThatCannotConvert() throws {
        let store = toyCluster()
        store.seed([("app/c/g0/bad1", "garbage"), ("app/c/g2/bad2", "junk")])
        let before = values(store)
        let error = #expect(throws: MigrationError.self) { try migrator(store).run(options: MigrationOptions(backup: .none)) }
        #expect(error?.code == .conversionFailed)
        #expect(error?.keys.map(\.description).sorted() == ["app/c/g0/bad1: neither v1 nor v2", "app/c/g2/bad2: neither v1 nor v2"])
        #expect(error?.keys.map(\.key).sorted() == ["app/c/g0/bad1", "app/c/g2/bad2"])
        #expect(error?.keys.allSatisfy { if case .conversion = $0.reason { true } else { false } } == true)
        #expect(values(store) == before)
    }

    // A txn carries one record of each of a writer's groups (here up to two of the 60), so
    // the latest stop that surely leaves records to resume is a few records before the end.
    @Test(arguments: [1, 7, 30, 57])
    func interruptedRunResumesToTheSameResult(stopAfter: Int) throws {
        let reference = toyCluster()
        _ = try migrator(reference).run(options: MigrationOptions(backup: .none))

        let store = toyCluster()
        let stop = StopSignal()
        var options = MigrationOptions(backup: .none)
        options.concurrency = 2
        let error = #expect(throws: MigrationError.self) {
            try migrator(store).run(options: options, stop: stop) { event in
                if event.step == .rewrite && event.done >= stopAfter { stop.stop() }
            }
        }
        #expect(error?.code == .interrupted)
        let state = try JournalReader(store: store, namespace: Namespace()).state()
        #expect(state?.status == .failed)
        let resumed = try migrator(store).run(options: options)
        #expect(resumed.resumed)
        // The stop names the whole run's count (both writers'), which the resume completes.
        let stoppedAfter = error?.message.firstMatch(of: /stopped on request after (\d+) of 60 records/).flatMap { Int($0.1) }
        #expect(stoppedAfter.map { $0 + resumed.written } == 60, "\(error?.message ?? "")")
        #expect(values(store, prefix: "app/") == values(reference, prefix: "app/"))
        #expect(laneOrder(store) == laneOrder(reference))
        let history = try JournalReader(store: store, namespace: Namespace()).history()
        #expect(history.last?.counts?["c"] == 60)
    }

    @Test func foreignWriteIsDetectedAndNotOverwritten() throws {
        let store = toyCluster()
        let base = store.txnCount
        store.beforeTxn.withLock {
            $0 = { (n: Int) throws(EtcdError) in
                // A few records in (lock, state, three lane reads, then writes), and surely
                // before lane g1 reaches id3, its 10th record, however unfairly the lanes are
                // scheduled: at base + 20 a loaded machine sometimes got there first.
                if n == base + 8 {
                    store.beforeTxn.withLock { $0 = nil }
                    store.seed([("app/c/g1/id3", "v1:theirs")])
                }
            }
        }
        let error = #expect(throws: MigrationError.self) { try migrator(store).run(options: MigrationOptions(backup: .none)) }
        #expect(error?.code == .foreignWrite)
        #expect(error?.keys.map(\.description) == ["app/c/g1/id3"])
        #expect(values(store)["app/c/g1/id3"] == "v1:theirs")
        // The resumed run refuses too: the record changed after the run started.
        let again = #expect(throws: MigrationError.self) { try migrator(store).run(options: MigrationOptions(backup: .none)) }
        #expect(again?.code == .foreignWrite)
        #expect(values(store)["app/c/g1/id3"] == "v1:theirs")
    }

    @Test func foreignWriteToAnUntouchedKeyIsReportedAtTheEnd() throws {
        let store = toyCluster()
        let base = store.txnCount
        store.beforeTxn.withLock {
            $0 = { (n: Int) throws(EtcdError) in
                if n == base + 30 {
                    store.beforeTxn.withLock { $0 = nil }
                    store.seed([("app/meta/count", "8")])
                }
            }
        }
        let error = #expect(throws: MigrationError.self) { try migrator(store).run(options: MigrationOptions(backup: .none)) }
        #expect(error?.code == .foreignWrite)
        #expect(error?.keys.count == 1)
        #expect(error?.keys.first?.description.hasPrefix("app/meta/count (revision") == true)
        #expect(error?.keys.first?.key == "app/meta/count")
        guard case .changed(let revision)? = error?.keys.first?.reason else { Issue.record("expected the revision"); return }
        #expect(error?.keys.first?.description == "app/meta/count (revision \(revision))")
        #expect(values(store)["app/meta/count"] == "8")
        // Every record was still migrated (fenced), but the cluster is not stamped done.
        #expect(values(store).filter { $0.key.hasPrefix("app/c/") }.allSatisfy { $0.value.hasPrefix("v2:") })
        #expect(store.current("pachmigrate/version") == nil)
    }

    @Test func lostLeaseStopsEveryWrite() throws {
        let store = toyCluster()
        let base = store.txnCount
        let revokedAt = Mutex<Int64>(0)
        store.beforeTxn.withLock {
            $0 = { (n: Int) throws(EtcdError) in
                if n == base + 15 {
                    store.beforeTxn.withLock { $0 = nil }
                    let lease = store.current("pachmigrate/lock")!.lease
                    try store.leaseRevoke(id: lease)
                    revokedAt.withLock { $0 = store.revision }
                }
            }
        }
        var options = MigrationOptions(backup: .none)
        options.concurrency = 3
        // The forecast's probe txns would be counted among the fifteen.
        options.measureForecast = false
        let error = #expect(throws: MigrationError.self) { try migrator(store).run(options: options) }
        #expect(error?.code == .leaseLost)
        let lostAt = revokedAt.withLock { $0 }
        #expect(lostAt > 0)
        // Nothing was written after the loss: no record, no cursor, no state.
        let late = (store.all(prefix: "app/") + store.all(prefix: "pachmigrate/")).filter { $0.modRevision > lostAt }
        #expect(late.isEmpty)
        #expect(values(store).filter { $0.value.hasPrefix("v2:") }.count > 0)
        let resumed = try migrator(store).run(options: MigrationOptions(backup: .none))
        #expect(resumed.resumed)
        #expect(values(store).filter { $0.key.hasPrefix("app/c/") }.allSatisfy { $0.value.hasPrefix("v2:") })
    }
}

@Suite("On-disk sort of the scan's order")
struct RevisionOrderSpillTests {
    /// `byteBudget`: payloads carry values, so a run also ends at a size (here, 2 kB: every
    /// few entries), whatever the chunk.
    @Test(arguments: [(1, 8 << 20), (3, 8 << 20), (7, 8 << 20), (1000, 8 << 20), (1000, 2000)])
    func groupsReadBackInRevisionOrderWhateverTheChunk(chunk: Int, byteBudget: Int) throws {
        let spill = try RevisionOrderSpill(chunk: chunk, byteBudget: byteBudget)
        var expected: [String: [KeyRevision]] = [:]
        var generator = SystemRandomNumberGenerator()
        for i in 0..<200 {
            let group = ["a", "b", "c"][i % 3]
            let payload = (0..<Int.random(in: 0..<600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let entry = KeyRevision(
                key: Array("k\(Int.random(in: 0..<50, using: &generator))-\(i)".utf8), modRevision: Int64.random(in: 1...40, using: &generator),
                payload: payload)
            expected[group, default: []].append(entry)
            try spill.append(entry, to: group)
        }
        try spill.finish()
        for (group, entries) in expected {
            var reader = spill.reader(for: group)
            var read: [KeyRevision] = []
            while true {
                let batch = try reader.next(max: 13)
                if batch.isEmpty { break }
                read += batch
            }
            #expect(read == entries.sorted(by: ClusterScan.revisionOrder))
            #expect(spill.count(of: group) == entries.count)
        }
        var missing = spill.reader(for: "none")
        #expect(try missing.next(max: 5).isEmpty)
    }

    @Test func aMigrationWithATinySortChunkKeepsLaneOrder() throws {
        let reference = toyCluster()
        let before = laneOrder(reference)
        let store = toyCluster()
        var options = MigrationOptions(backup: .none)
        options.sortChunk = 4
        let result = try migrator(store).run(options: options)
        #expect(result.written == 60)
        #expect(laneOrder(store) == before)
    }
}

/// A cluster where part of each lane is already in the target form (`v2:`): some before
/// the lane's first old record, the rest interleaved after it, as a newer writer leaves it.
func partlyMigratedCluster(groups: Int = 3, perGroup: Int = 20) -> InMemoryKeyValueService {
    let store = InMemoryKeyValueService()
    var seed: [(String, String)] = []
    for i in 0..<perGroup {
        for g in 0..<groups {
            // The first two of each lane and every third after them are clean already.
            let clean = i < 2 || i % 3 == 0
            seed.append(("app/c/g\(g)/id\((i * 7) % perGroup)", clean ? "v2:REC-\(g)-\(i)" : "v1:rec-\(g)-\(i)"))
        }
    }
    store.seed(seed)
    return store
}

@Suite("Order rule: a group is never reordered by rewriting part of it")
struct OrderRuleTests {
    @Test func cleanRecordsAfterALanesFirstChangeAreReputInOrder() throws {
        let store = partlyMigratedCluster()
        let before = laneOrder(store)
        let leading = store.all(prefix: "app/c/").filter { String(decoding: $0.value, as: UTF8.self).hasPrefix("v2:REC-") }
            .filter { kv in Int(String(decoding: kv.value, as: UTF8.self).split(separator: "-").last!)! < 2 }
        var options = MigrationOptions(backup: .none)
        options.dryRun = true
        let plan = try migrator(store).run(options: options)
        // 20 per lane: 2 clean before the first change, 6 of the 18 after it are clean (i = 3, 6 … 18).
        #expect(plan.scan?.toRewrite["c"] == 36)
        #expect(plan.scan?.keptInOrder["c"] == 18)
        #expect(plan.scan?.pendingCount == 54)

        let result = try migrator(store).run(options: MigrationOptions(backup: .none))
        #expect(result.written == 54)
        #expect(result.keptInOrder == 18)
        #expect(laneOrder(store) == before)
        #expect(values(store).values.allSatisfy { $0.hasPrefix("v2:REC-") })
        // The records before each lane's first change were not touched at all.
        #expect(leading.count == 6, "2 clean records lead each of the 3 lanes")
        for kv in leading { #expect(store.current(String(decoding: kv.key, as: UTF8.self))?.modRevision == kv.modRevision) }
        let history = try JournalReader(store: store, namespace: Namespace()).history()
        #expect(history.last?.counts?["c"] == 54)
        #expect(history.last?.counts?["kept-in-order-c"] == 18)
    }

    /// Stopped anywhere, including right after a lane re-put a clean record: the resumed run
    /// finishes every lane tail it started, so the order is that of an uninterrupted run.
    /// (The last stop leaves room for the txns in flight: one writer's carry two records,
    /// the other's one, so a stop at 50 of 54 still interrupts.)
    @Test(arguments: [1, 2, 5, 13, 29, 50])
    func resumedRunKeepsTheOrderRule(stopAfter: Int) throws {
        let reference = partlyMigratedCluster()
        _ = try migrator(reference).run(options: MigrationOptions(backup: .none))

        let store = partlyMigratedCluster()
        let before = laneOrder(store)
        let stop = StopSignal()
        var options = MigrationOptions(backup: .none)
        options.concurrency = 2
        let error = #expect(throws: MigrationError.self) {
            try migrator(store).run(options: options, stop: stop) { event in
                if event.step == .rewrite && event.done >= stopAfter { stop.stop() }
            }
        }
        #expect(error?.code == .interrupted)
        let resumed = try migrator(store).run(options: options)
        #expect(resumed.resumed)
        #expect(values(store, prefix: "app/") == values(reference, prefix: "app/"))
        #expect(laneOrder(store) == before)
        let history = try JournalReader(store: store, namespace: Namespace()).history()
        #expect(history.last?.counts?["c"] == 54)
        #expect(history.last?.counts?["kept-in-order-c"] == 18)
    }
}
