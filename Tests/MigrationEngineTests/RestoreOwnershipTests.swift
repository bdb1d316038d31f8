import EtcdGateway
import Foundation
import Testing

@testable import MigrationEngine

/// Which writes after a backup `restore` counts as pachmigrate's own (the journal's last
/// run) and which as someone else's, on an in-memory store (no cluster ID: only the
/// revision and key signals apply).
@Suite("Restore: whose writes are newer than the backup")
struct RestoreOwnershipTests {
    let store = toyCluster()
    let path: String

    init() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("restore-ownership-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        path = dir + "/backup.jsonl"
        let migrator = Migrator(store: store, migration: ToyMigration(), namespace: Namespace(), logger: testLogger)
        _ = try migrator.run(options: MigrationOptions(backup: .file(path)))
    }

    func dryRun() throws -> RestorePlan {
        try Restorer(store: store, namespace: Namespace(), prefixes: ToyMigration().backupPrefixes, logger: testLogger)
            .restore(from: path, options: RestoreOptions(dryRun: true)).plan
    }

    @Test func aCompletedRunsWritesAreItsOwnAndLaterOnesAreNot() throws {
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let clean = try dryRun()
        #expect(clean.verdict == .sameCluster)
        #expect(clean.newerWrites == 0 && clean.refusals.isEmpty)
        #expect(clean.migrationWrites != nil)

        store.seed([("app/c/g0/new", "v2:FOREIGN"), ("app/c/g1/id0", "v2:CHANGED")])
        let plan = try dryRun()
        #expect(plan.newerWrites == 2)
        #expect(plan.refusals == [.newerWrites])
        #expect(plan.toRemove == 1)
    }

    /// Restore writes through the same fenced primitive as the migration: a txn whose answer
    /// was lost after it landed is sent again (its writes are idempotent), and the restore
    /// finishes instead of failing.
    @Test func aRestoreTxnWhoseAnswerWasLostIsSentAgain() throws {
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let flaky = LosesAnAnswer(store, after: store.txnCount)
        let result = try Restorer(store: flaky, namespace: Namespace(), prefixes: ToyMigration().backupPrefixes, logger: testLogger)
            .restore(from: path)
        #expect(flaky.lost.withLock { $0 })
        #expect(result.restored == result.plan.backupKeys)
        let backup = try DumpReader(path: path).readAll()
        #expect(
            values(store)
                == Dictionary(
                    uniqueKeysWithValues: backup.map { (String(decoding: $0.key, as: UTF8.self), String(decoding: $0.value, as: UTF8.self)) }))
        #expect(try JournalReader(store: store, namespace: Namespace()).state() == nil)
    }

    /// A run that stopped on a foreign write cannot tell its writes from the foreigner's:
    /// every rewritten record then counts as newer, and the restore needs the flag.
    @Test func aRunThatStoppedOnAForeignWriteVouchesForNothing() throws {
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let journal = JournalReader(store: store, namespace: Namespace())
        var state = try #require(try journal.state())
        state.status = .failed
        state.message = "\(MigrationError.Code.foreignWrite): someone else wrote"
        store.seed([("pachmigrate/state", String(decoding: JSONCoding.encode(state), as: UTF8.self))])
        let plan = try dryRun()
        #expect(plan.migrationWrites == nil)
        #expect(plan.newerWrites == 60)
        #expect(plan.refusals == [.newerWrites])
    }
}
