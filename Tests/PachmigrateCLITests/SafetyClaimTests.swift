import EtcdGateway
import EtcdTestSupport
import Foundation
import MigrationEngine
import PachydermMigrations
import Synchronization
import Testing

@testable import PachmigrateCLI

/// Safety claims of the README that only a fault at one exact moment can show: the lock
/// lost just before the completion txn or between two restore txns (`InterceptingStore`
/// revokes the lease as the txn goes out), an in-flight put-file, and another client's
/// `openCommits/<id>` entry created mid-run. Each test fails when the claim's code is removed
/// (docs/testing.md, "What the tests guard").
@Suite("Safety claims at the exact moment")
struct SafetyClaimTests {
    static func migration(allowOpenCommits: Bool = false) throws -> PachydermRecordMigration {
        PachydermRecordMigration(
            layout: layout, plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0"), allowOpenCommits: allowOpenCommits)
    }

    /// The completion txn (state done, version stamp, history entry) is fenced on the lock:
    /// a migrator that lost its lease just before it stamps nothing, and the same command
    /// resumes and finishes.
    @Test func theLockLostJustBeforeTheCompletionTxnStampsNothing() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let revoked = Mutex<Int64?>(nil)
            let store = InterceptingStore(sample.client) { txn in
                guard txn.puts("pachmigrate/version") else { return }
                revoked.withLock { if $0 == nil { $0 = try? sample.client.revokeLockLease() } }
            }
            let migrator = Migrator(store: store, migration: try Self.migration(), namespace: Namespace(), logger: testLogger)
            let error = #expect(throws: MigrationError.self) { try migrator.run(options: MigrationOptions(backup: .none)) }
            #expect(error?.code == .leaseLost, "\(String(describing: error))")
            let revision = try #require(revoked.withLock { $0 }, "the completion txn was never sent")
            let journal = JournalFacts(sample.client)
            #expect(try journal.version() == nil)
            #expect(try journal.history().filter { $0["event"] as? String == "migrate" }.isEmpty)
            #expect(try journal.state()?["status"] as? String == "running")
            #expect(try journal.lanesLeft() > 0, "the cursors the completion txn clears are still there")
            let late = try (pachydermState(sample.client) + sample.client.dumpState(prefix: "pachmigrate/"))
                .filter { $0.modRevision > revision }
            #expect(late.map { text($0.key) } == [])

            let resumed = try pachmigrate(["migrate", "--no-backup"] + sample.endpoint)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            try sample.expectMigratedLikeAnUninterruptedRun()
        }
    }

    /// Every restore txn is fenced on the lock: lost between two of them, nothing more is
    /// written after the revocation.
    @Test func theLockLostBetweenTwoRestoreTxnsWritesNothingMore() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let backup = try pachmigrate(["backup", "\(dir)/b.jsonl"] + sample.endpoint)
            #expect(backup.status == 0, "\(backup.stderr)")

            let sent = Atomic<Int>(0)
            let revoked = Mutex<Int64?>(nil)
            let store = InterceptingStore(sample.client) { txn in
                // Told by what they write, not by their fence (which a broken restore would lack).
                guard txn.writesBeyondTheLock() else { return }
                // Two restore txns land; the third goes out after the lease is gone.
                if sent.add(1, ordering: .relaxed).newValue == 3 {
                    revoked.withLock { $0 = try? sample.client.revokeLockLease() }
                }
            }
            let restorer = Restorer(
                store: store, namespace: Namespace(), prefixes: try Self.migration().backupPrefixes, logger: testLogger)
            let error = #expect(throws: MigrationError.self) {
                try restorer.restore(from: "\(dir)/b.jsonl")
            }
            #expect(error?.code == .leaseLost, "\(String(describing: error))")
            let revision = try #require(revoked.withLock { $0 }, "the restore never sent a third txn")
            #expect(sent.load(ordering: .relaxed) == 3, "the restore went on sending after the lock was lost")
            let late = try (pachydermState(sample.client) + sample.client.dumpState(prefix: "pachmigrate/"))
                .filter { $0.modRevision > revision }
            #expect(late.map { text($0.key) } == [])
            #expect(try sample.client.status().header.revision == revision)
            // The two restore txns before the revocation did land: the restore was under way.
            let restored = try pachydermState(sample.client).filter { $0.modRevision > sample.before.last!.modRevision }
            #expect(!restored.isEmpty)
        }
    }

    /// An in-flight put-file (`pachyderm_pfs/scratch/…`) means the cluster is not at rest:
    /// exit 4 naming the key, nothing written.
    @Test func anInFlightPutFileBlocksTheRun() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let scratch = "pachyderm_pfs/scratch/images/3c7bd3d8df074ff08834e197a4034aa4/cats/kitten.png/4b8e2f0a-5c1d-4e3b-9a7f-2d6c8e1b0a93"
            try sample.client.put(PutRequest(key: bytes(scratch), value: bytes("delete")))
            let before = try pachydermState(sample.client)

            let migrate = try pachmigrate(["migrate", "--no-backup", "--output", "json"] + sample.endpoint)
            #expect(migrate.status == 4, "\(migrate.stdout)\(migrate.stderr)")
            let failure = migrate.json["error"] as? [String: Any]
            #expect(failure?["code"] as? String == "notAtRest", "\(migrate.stdout)")
            let keys = failure?["keys"] as? [String] ?? []
            #expect(keys.count == 1 && keys.allSatisfy { $0.hasPrefix(scratch) && $0.contains("in-flight-put-file") }, "\(keys)")
            #expect(try pachydermState(sample.client) == before)
            // No run state, no cursor, no history; the lock is free again.
            #expect(try sample.client.range(.prefix(bytes("pachmigrate/"))).kvs.isEmpty)
        }
    }

    /// With `--allow-open-commits` the `openCommits/<id>` entry of an open commit is created
    /// only while it is still absent: another client's entry made mid-run is kept, and the
    /// run stops (exit 4) naming it.
    @Test func anotherClientsOpenCommitEntryMadeMidRunIsKept() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            // The busy sample without its running jobs: a cluster with two open commits.
            try client.seed(
                try SampleData.keyValues(SampleData.before("busy")).filter { kv in
                    guard case .record(.job, _) = layout.classify(kv.key) else { return true }
                    return (try? RecordCodec.decode(kind: .job, key: kv.key, value: kv.value))?.record.job?.isStartingOrRunning != true
                })
            #expect(try client.range(.prefix(bytes("pachyderm_pfs/openCommits/"))).kvs.isEmpty)

            let other = try server.makeClient()
            let theirs = bytes("their entry")
            let created = Mutex<[UInt8]?>(nil)
            let store = InterceptingStore(client) { txn in
                guard
                    let key = txn.success.lazy.compactMap({ op -> [UInt8]? in
                        if case .put(let p) = op, p.key.starts(with: bytes("pachyderm_pfs/openCommits/")) { return p.key }
                        return nil
                    }).first
                else { return }
                created.withLock {
                    guard $0 == nil else { return }
                    $0 = key
                    _ = try? other.put(PutRequest(key: key, value: theirs))
                }
            }
            let migrator = Migrator(
                store: store, migration: try Self.migration(allowOpenCommits: true), namespace: Namespace(), logger: testLogger)
            let error = #expect(throws: MigrationError.self) { try migrator.run(options: MigrationOptions(backup: .none)) }
            let key = try #require(created.withLock { $0 }, "no openCommits entry was ever written")
            #expect(error?.code == .foreignWrite, "\(String(describing: error))")
            #expect(error?.keys.map(\.description) == [text(key)])
            #expect(error.map { describe($0).status } == .notAtRest)
            #expect(ExitStatus.notAtRest.rawValue == 4)
            #expect(try client.range(RangeRequest(key: key)).kvs.first?.value == theirs)
            #expect(try JournalFacts(client).version() == nil)
        }
    }
}
