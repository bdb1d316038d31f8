import EtcdGateway
import EtcdTestSupport
import Foundation
import MigrationEngine
import PachydermMigrations
import Synchronization
import Testing

/// A real etcd client that lets another client compact etcd at one chosen moment: right
/// after the scan's second page at the run's pinned revision, or right after the scan,
/// before the backup is written (the backup reads nothing of its own: its values come from
/// the scan). The compaction is real; only its timing is staged.
private final class CompactedUnderfoot: ForwardingKeyValueService, @unchecked Sendable {
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
        if moment == .duringScan, request.revision != 0,
            pinnedReads.withLock({
                $0 += 1; return $0
            }) == 2
        {
            compactPastPinnedReads()
        }
        return answer
    }

    func status() throws(EtcdError) -> StatusResponse {
        // The space preflight: after the scan, before the backup.
        if moment == .duringBackup { compactPastPinnedReads() }
        return try base.status()
    }
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

            // What one uninterrupted scan of the same cluster counts.
            let quiet = try ClusterScan.scan(store: client, migration: migration, keepAllKeys: false, logger: testLogger).pachyderm

            let result = try Migrator(store: store, migration: migration, namespace: Namespace(), logger: testLogger).run(options: options)
            #expect(store.compacted)
            // A restarted scan counts every record once: the census is the uninterrupted scan's.
            let census = try #require(result.scan).pachyderm.census.result
            #expect(census == quiet.census.result)
            #expect(census.text14.values.reduce(0, +) == expectation.before.count { migration.lane(of: $0.key) != nil })
            #expect(try #require(result.scan).pachyderm.forecast.pipelines == quiet.forecast.pipelines)
            #expect(result.outcome == .migrated)
            // Compacted during the scan, the rerun read the cluster at a revision after the
            // compaction; compacted after it, the backup, written from the scan's own reads,
            // did not care and nothing was read again.
            #expect(result.startRevision > expectation.before.map(\.modRevision).max() ?? 0)
            if duringBackup { #expect(result.startRevision < (try client.range(RangeRequest(key: bytes("someone-else/key")))).kvs[0].modRevision) }
            try expectation.expectMigratedLikeAnUninterruptedRun()
            // The backup is complete and exact (written twice when the scan was restarted).
            #expect(try SampleData.keyValues("\(dir)/backup.jsonl").map { [$0.key, $0.value] } == expectation.before.map { [$0.key, $0.value] })
        }
    }
}
