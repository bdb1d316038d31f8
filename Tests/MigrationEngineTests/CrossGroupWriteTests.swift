import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Foundation
import Synchronization
import Testing

@testable import MigrationEngine

/// Records of different ordering groups share txns; records of one group never do.
@Suite("Writes batched across ordering groups")
struct CrossGroupWriteTests {
    /// One writer for every lane, so every txn can carry a record of each.
    func oneWriter() -> MigrationOptions {
        var options = MigrationOptions(backup: .none)
        options.concurrency = 1
        return options
    }

    /// Migrates `store` with one writer and checks that every group kept its order; returns
    /// the result and, per txn (revision), the record keys it wrote.
    func migrateKeepingOrder(_ store: InMemoryKeyValueService) throws -> (result: MigrationResult, txns: [Int64: [String]]) {
        let before = laneOrder(store)
        let start = store.revision
        let result = try migrator(store).run(options: oneWriter())
        #expect(laneOrder(store) == before)
        return (result, recordsByRevision(store, after: start))
    }

    /// Per revision the run wrote at, the record keys written there.
    func recordsByRevision(_ store: InMemoryKeyValueService, after revision: Int64) -> [Int64: [String]] {
        var out: [Int64: [String]] = [:]
        for kv in store.all(prefix: "app/c/") where kv.modRevision > revision {
            out[kv.modRevision, default: []].append(String(decoding: kv.key, as: UTF8.self))
        }
        return out
    }

    @Test func asManyTxnsAsTheLongestGroupAndEveryGroupKeepsItsOrder() throws {
        let (result, txns) = try migrateKeepingOrder(toyCluster(groups: 3, perGroup: 20))
        #expect(result.written == 60)
        #expect(result.txns == 20)
        #expect(result.scan?.longestLane == 20)
        // Each txn holds the next record of every group: three records, three groups.
        #expect(txns.count == 20)
        for keys in txns.values {
            #expect(Set(keys.map { $0.split(separator: "/")[2] }).count == keys.count)
        }
        #expect(txns.values.reduce(0) { $0 + $1.count } == 60)
    }

    @Test func theRunEndsWithNoLaneCursorsAndItsCountsInTheHistory() throws {
        let store = toyCluster(groups: 3, perGroup: 20)
        _ = try migrateKeepingOrder(store)
        #expect(store.all(prefix: "pachmigrate/lanes/").isEmpty)
        #expect(try JournalReader(store: store, namespace: Namespace()).history().last?.counts?["c"] == 60)
    }

    @Test func groupsOfUnequalLengthStillNeedOnlyTheLongest() throws {
        let store = InMemoryKeyValueService()
        var seed: [(String, String)] = []
        for i in 0..<30 { seed.append(("app/c/long/id\(i)", "v1:\(i)")) }
        for g in 0..<10 { for i in 0..<(g + 1) { seed.append(("app/c/short\(g)/id\(i)", "v1:\(g)-\(i)")) } }
        store.seed(seed)
        let (result, txns) = try migrateKeepingOrder(store)
        #expect(result.written == 30 + 55)
        #expect(result.txns == 30)
        #expect(txns.count == 30)
    }

    @Test func etcdsOpsPerTxnLimitIsRespected() throws {
        // 100 groups of 3: a record and its cursor are two puts, so at most 64 records a txn.
        let (result, txns) = try migrateKeepingOrder(toyCluster(groups: 100, perGroup: 3))
        #expect(result.written == 300)
        #expect(txns.values.allSatisfy { $0.count <= 64 })
        #expect(result.txns == txns.count)
        #expect(result.txns == 5)  // 300 records / 64 a txn, the longest groups first
    }

    @Test func aTxnOverTheRequestSizeIsSplit() throws {
        let store = InMemoryKeyValueService()
        let big = String(repeating: "x", count: 300_000)
        var seed: [(String, String)] = []
        for g in 0..<8 { seed.append(("app/c/g\(g)/id0", "v1:" + big)) }
        store.seed(seed)
        let start = store.revision
        let result = try migrator(store).run(options: oneWriter())
        #expect(result.written == 8)
        // 1 MiB of keys and values a txn: three 300 kB records fit, a fourth does not.
        #expect(recordsByRevision(store, after: start).values.allSatisfy { $0.count <= 3 })
        #expect(result.txns == 3)
    }

    @Test func aForeignWriteNamesEveryKeyOfTheTxnItHitAndOverwritesNothing() throws {
        let store = toyCluster(groups: 3, perGroup: 20)
        // The last record of groups g0 and g2 (id13 is each group's 20th by mod revision),
        // changed by someone else early in the run: the run's last txn carries both.
        let base = store.txnCount
        store.beforeTxn.withLock {
            $0 = { (n: Int) throws(EtcdError) in
                if n == base + 6 {
                    store.beforeTxn.withLock { $0 = nil }
                    store.seed([("app/c/g0/id13", "v1:theirs"), ("app/c/g2/id13", "v1:theirs too")])
                }
            }
        }
        let error = #expect(throws: MigrationError.self) { try migrator(store).run(options: oneWriter()) }
        #expect(error?.code == .foreignWrite)
        #expect(error?.keys.map(\.description) == ["app/c/g0/id13", "app/c/g2/id13"])
        #expect(values(store)["app/c/g0/id13"] == "v1:theirs")
        #expect(values(store)["app/c/g2/id13"] == "v1:theirs too")
        // The txn failed whole: g1's last record, in it too, was not written either.
        #expect(values(store)["app/c/g1/id13"]?.hasPrefix("v1:") == true)
        #expect(values(store).filter { $0.key.hasPrefix("app/c/g1/") && $0.value.hasPrefix("v2:") }.count == 19)
    }

    @Test func aTxnThatLandedBeforeItsAnswerWasLostIsRecognizedAsOurs() throws {
        let inner = toyCluster(groups: 3, perGroup: 20)
        let reference = toyCluster(groups: 3, perGroup: 20)
        _ = try migrator(reference).run(options: oneWriter())
        let store = LosesAnAnswer(inner, after: inner.txnCount + 10)
        let result = try Migrator(store: store, migration: ToyMigration(), namespace: Namespace(), logger: testLogger)
            .run(options: oneWriter())
        #expect(store.lost.withLock { $0 })
        #expect(result.written == 60)
        #expect(values(inner, prefix: "app/") == values(reference, prefix: "app/"))
        #expect(laneOrder(inner) == laneOrder(reference))
    }

    @Test func theBackupComesFromTheScanWithNoSecondRead() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/backup.jsonl"
        // Without the forecast's probe, whose txns vary with how calm the store answers.
        var options = MigrationOptions(backup: .none)
        options.measureForecast = false
        let plain = toyCluster(groups: 3, perGroup: 200)
        let plainBase = plain.txnCount
        _ = try migrator(plain).run(options: options)
        let store = toyCluster(groups: 3, perGroup: 200)
        let original = store.all(prefix: "app/").sorted {
            $0.modRevision != $1.modRevision ? $0.modRevision < $1.modRevision : $0.key.lexicographicallyPrecedes($1.key)
        }
        let base = store.txnCount
        options.backup = .file(path)
        let result = try migrator(store).run(options: options)
        // The txns of the run without a backup, give or take a lock heartbeat: the backup read
        // nothing of its own (reading 601 keys 100 a txn would take 7 more).
        #expect(store.txnCount - base <= plain.txnCount - plainBase + 2)
        #expect(result.backup?.keys == original.count)
        let backedUp = try DumpReader(path: path).readAll()
        #expect(backedUp.map(\.key) == original.map(\.key))
        #expect(backedUp.map(\.value) == original.map(\.value))
        #expect(backedUp.map(\.modRevision) == original.map(\.modRevision))
    }
}

/// Passes everything to an in-memory store, but after the `after`th txn has landed answers
/// it with a dropped connection, once: the writer must retry and recognize its own write.
final class LosesAnAnswer: KeyValueService, Sendable {
    let inner: InMemoryKeyValueService
    let after: Int
    let lost = Mutex(false)

    init(_ inner: InMemoryKeyValueService, after: Int) {
        self.inner = inner
        self.after = after
    }

    func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse { try inner.range(request) }
    func txn(_ request: TxnRequest) throws(EtcdError) -> TxnResponse {
        let response = try inner.txn(request)
        let writes = request.success.contains { if case .put = $0 { return true } else { return false } }
        if writes, request.success.count > 2, inner.txnCount >= after,
            lost.withLock({ was in
                defer { was = true }; return !was
            })
        {
            throw EtcdError(.transport, "connection dropped after the request was sent")
        }
        return response
    }
    func leaseGrant(ttl: Int64) throws(EtcdError) -> LeaseGrantResponse { try inner.leaseGrant(ttl: ttl) }
    func leaseRevoke(id: Int64) throws(EtcdError) { try inner.leaseRevoke(id: id) }
    func leaseKeepAliveOnce(id: Int64) throws(EtcdError) -> Int64? { try inner.leaseKeepAliveOnce(id: id) }
    func leaseTimeToLive(id: Int64, keys: Bool) throws(EtcdError) -> LeaseTimeToLiveResponse {
        try inner.leaseTimeToLive(id: id, keys: keys)
    }
}

@Suite("What the scan spills for the writer and the backup")
struct SpilledPayloadTests {
    @Test func aPendingWriteAndARecordReadBackAsTheyWere() throws {
        let write = PendingWrite(
            value: [0, 1, 2, 255], lease: 0x1234_5678_9abc, keptInOrder: true,
            companions: [.init(key: Array("open/a".utf8), value: []), .init(key: Array("open/b".utf8), value: [7])])
        #expect(try PendingWrite(decoding: write.encoded) == write)
        let kv = KeyValue(key: Array("k".utf8), value: Array("v".utf8), createRevision: 3, modRevision: 9, version: 4, lease: 5)
        #expect(try KeyValue(spilled: KeyRevision(key: kv.key, modRevision: kv.modRevision, payload: kv.spilled)) == kv)
        #expect(throws: MigrationError.self) { try PendingWrite(decoding: Array(write.encoded.dropLast())) }
    }
}
