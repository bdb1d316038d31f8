import EtcdGateway
import EtcdTestSupport
import Foundation
import MigrationEngine
import PachydermMigrations
import Synchronization
import Testing

/// A real etcd client that lets another client compact etcd at one chosen moment: right
/// after the scan's second page, or right after the backup's first read, both at the
/// run's pinned revision. The compaction is real; only its timing is staged.
private final class CompactedUnderfoot: KeyValueService, @unchecked Sendable {
    enum Moment { case duringScan, duringBackup }
    let base: EtcdClient
    let moment: Moment
    private let pinnedReads = Mutex(0)
    private let done = Atomic(false)

    init(_ base: EtcdClient, at moment: Moment) {
        self.base = base
        self.moment = moment
    }

    var compacted: Bool { done.load(ordering: .relaxed) }

    private func compactPastPinnedReads() {
        guard !done.exchange(true, ordering: .relaxed) else { return }
        // Someone else writes and compacts up to their write: every read at an older
        // revision now fails with "required revision has been compacted".
        let put = try? base.put(PutRequest(key: bytes("someone-else/key"), value: bytes("x")))
        try? base.compact(revision: put?.header.revision ?? 0, physical: true)
    }

    func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse {
        let answer = try base.range(request)
        if moment == .duringScan, request.revision != 0, pinnedReads.withLock({ $0 += 1; return $0 }) == 2 {
            compactPastPinnedReads()
        }
        return answer
    }

    func txn(_ request: TxnRequest) throws(EtcdError) -> TxnResponse {
        let answer = try base.txn(request)
        let pinnedRead = request.success.contains { if case .range(let r) = $0 { r.revision != 0 } else { false } }
        if moment == .duringBackup, pinnedRead { compactPastPinnedReads() }
        return answer
    }

    func leaseGrant(ttl: Int64) throws(EtcdError) -> LeaseGrantResponse { try base.leaseGrant(ttl: ttl) }
    func leaseRevoke(id: Int64) throws(EtcdError) { try base.leaseRevoke(id: id) }
    func leaseKeepAliveOnce(id: Int64) throws(EtcdError) -> Int64? { try base.leaseKeepAliveOnce(id: id) }
    func leaseTimeToLive(id: Int64, keys: Bool) throws(EtcdError) -> LeaseTimeToLiveResponse {
        try base.leaseTimeToLive(id: id, keys: keys)
    }
    func status() throws(EtcdError) -> StatusResponse { try base.status() }
    func compact(revision: Int64, physical: Bool) throws(EtcdError) { try base.compact(revision: revision, physical: physical) }
}

@Suite("Compaction by someone else while the run reads")
struct CompactionByOthersTests {
    @Test(arguments: [false, true])
    func compactionDuringTheScanOrTheBackupRestartsTheReadAndTheRunSucceeds(duringBackup: Bool) async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            try client.seed(dump: SampleData.before("at-rest"))
            let expectation = MigrationExpectation(client: client, before: try pachydermState(client), counts: SampleServer.atRestCounts)
            let store = CompactedUnderfoot(client, at: duringBackup ? .duringBackup : .duringScan)
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let migration = PachydermRecordMigration(
                layout: PachydermLayout(), plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0"), allowOpenCommits: false)
            var options = MigrationOptions(backup: .file("\(dir)/backup.jsonl"))
            options.pageSize = 100  // several pages, so the scan is mid-way when etcd is compacted

            let result = try Migrator(store: store, migration: migration, namespace: Namespace(), logger: testLogger).run(options: options)
            #expect(store.compacted)
            #expect(result.outcome == .migrated)
            // The rerun read the cluster at a revision after the compaction.
            #expect(result.startRevision > expectation.before.map(\.modRevision).max() ?? 0)
            try expectation.expectMigratedLikeAnUninterruptedRun()
            // The backup is complete and exact, though written twice.
            #expect(try SampleData.keyValues("\(dir)/backup.jsonl").map { [$0.key, $0.value] } == expectation.before.map { [$0.key, $0.value] })
        }
    }
}
