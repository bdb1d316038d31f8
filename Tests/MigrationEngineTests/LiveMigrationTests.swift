import EtcdGateway
import EtcdTestSupport
import Foundation
import Logging
import MigrationEngine
import PachydermMigrations
import Synchronization
import Testing

/// The engine with Pachyderm's records against a real etcd process.
@Suite("Live migration on a real etcd")
struct LiveMigrationTests {
    let layout = PachydermLayout()

    func migration(allowOpenCommits: Bool = false) throws -> PachydermRecordMigration {
        PachydermRecordMigration(
            layout: layout, plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0"), allowOpenCommits: allowOpenCommits)
    }

    @Test func atRestSampleMigratedLiveEqualsOfflineConversion() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            try client.seed(dump: SampleData.before("at-rest"))
            let before = try pachydermState(client)
            let backupDir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
            try FileManager.default.createDirectory(at: backupDir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: backupDir) }

            let migrator = Migrator(store: client, migration: try migration(), namespace: Namespace(), logger: testLogger)
            let result = try migrator.run(options: MigrationOptions(backup: .file(backupDir.path + "/backup.jsonl")))
            #expect(result.outcome == .migrated)
            #expect(result.written == 508)

            let after = try pachydermState(client)
            let offline = OfflineConverter(layout: layout, plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0"))
                .convert(try SampleData.keyValues(SampleData.before("at-rest")))
            #expect(offline.report.failures.isEmpty)
            #expect(valuesByKey(after) == valuesByKey(offline.output))
            #expect(orderByGroup(after, group: orderingGroup) == orderByGroup(before, group: orderingGroup))
            // Keys that are not records were not rewritten at all.
            let untouched = before.filter { orderingGroup($0.key) == nil }
            #expect(untouched.count == before.count - result.written && !untouched.isEmpty)
            let afterByKey = Dictionary(uniqueKeysWithValues: after.map { ($0.key, $0) })
            #expect(untouched.allSatisfy { afterByKey[$0.key]?.modRevision == $0.modRevision })

            // The backup holds the exact pre-migration keys and values, 0600, with its sha256.
            let backupPath = backupDir.path + "/backup.jsonl"
            #expect(try SampleData.keyValues(backupPath).map { [$0.key, $0.value] } == before.map { [$0.key, $0.value] })
            let mode = try FileManager.default.attributesOfItem(atPath: backupPath)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            #expect(try verifyDumpChecksum(path: backupPath) == result.backup?.sha256)

            // Stamped, history recorded, verify passes, a second run does nothing.
            let journal = JournalReader(store: client, namespace: Namespace())
            #expect(try journal.stampedVersion() == "1.5.0")
            let entry = try #require(try journal.history().last)
            #expect(entry.counts?["jobs"] == 200 && entry.counts?["commits"] == 273)
            #expect(entry.backupSHA256 == result.backup?.sha256)
            let verification = try PachydermVerifier(layout: layout).verify(
                store: client, expectedVersion: "1.5.0", journalCounts: entry.writtenCounts)
            #expect(verification.problems == [])
            let revision = try client.status().header.revision
            let again = try migrator.run(options: MigrationOptions(backup: .none))
            #expect(again.outcome == .alreadyMigrated(to: "1.5.0"))
            #expect(try client.status().header.revision == revision)

            // Restore gives back the exact pre-migration keys, values and order, and removes
            // keys the backup does not hold wherever they sort (first, between, last).
            let strays = ["pachyderm_pfs/", "pachyderm_pfs/commits/images/zz-stray", "pachyderm_pps/jobs/0-stray", "pachyderm_pps/~"]
            for key in strays { try client.put(PutRequest(key: bytes(key), value: bytes("stray"))) }
            let restorer = Restorer(store: client, namespace: Namespace(), prefixes: try migration().backupPrefixes, logger: testLogger)
            // Written after the migration, not by it: refused until discarding them is said,
            // and the refusal writes nothing at all (not even the lock).
            let unrefused = try pachydermState(client)
            let revisionBeforeRefusal = try client.status().header.revision
            let refused = #expect(throws: MigrationError.self) {
                try restorer.restore(from: backupPath)
            }
            #expect(refused?.code == .restoreRefused)
            #expect(refused?.keys.count == strays.count)
            #expect(try pachydermState(client) == unrefused)
            #expect(try client.status().header.revision == revisionBeforeRefusal)
            let restoring = try restorer.restore(from: backupPath, options: RestoreOptions(discardNewerWrites: true))
            #expect(restoring.removed == strays)
            #expect(restoring.restored == before.count)
            let restored = try pachydermState(client)
            #expect(restored.map { [$0.key, $0.value] } == before.map { [$0.key, $0.value] })
            #expect(try journal.stampedVersion() == nil)
            #expect(try journal.history().last?.event == .restore)
        }
    }

    /// The writer packs its txns within the limits its client is configured with, not etcd's
    /// defaults: with `maxTxnOps` 8 no txn has more than 8 entries in a list (the client
    /// would refuse one), the records land converted and in their groups' order, and a
    /// restore keeps within them too.
    @Test func theClientsTxnLimitsBoundEveryTxn() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            // Seeded with etcd's defaults: records that shared a txn share it in the backup.
            try server.makeClient().seed(dump: SampleData.before("at-rest"))
            let client = try server.makeClient(maxTxnOps: 8)
            let before = try pachydermState(client)
            let widest = Mutex(0)
            let store = InterceptingStore(client) { txn in
                widest.withLock { $0 = max($0, txn.compare.count, txn.success.count, txn.failure.count) }
            }
            let backupDir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
            try FileManager.default.createDirectory(at: backupDir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: backupDir) }
            let backupPath = backupDir.path + "/backup.jsonl"

            var options = MigrationOptions(backup: .file(backupPath))
            options.measureForecast = false
            let result = try Migrator(store: store, migration: try migration(), namespace: Namespace(), logger: testLogger)
                .run(options: options)
            #expect(result.outcome == .migrated)
            #expect(result.written == 508)
            // Four records a txn at most: each is a put beside its lane cursor's, 8 success ops.
            #expect(widest.withLock { $0 } == 8)
            #expect(result.txns >= 508 / 4)
            let after = try pachydermState(client)
            let offline = OfflineConverter(layout: layout, plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0"))
                .convert(try SampleData.keyValues(SampleData.before("at-rest")))
            #expect(valuesByKey(after) == valuesByKey(offline.output))
            #expect(orderByGroup(after, group: orderingGroup) == orderByGroup(before, group: orderingGroup))

            widest.withLock { $0 = 0 }
            let restorer = Restorer(store: store, namespace: Namespace(), prefixes: try migration().backupPrefixes, logger: testLogger)
            let restoring = try restorer.restore(from: backupPath)
            #expect(restoring.restored == before.count)
            #expect(widest.withLock { $0 } <= 8)
            #expect(try pachydermState(client).map { [$0.key, $0.value] } == before.map { [$0.key, $0.value] })
        }
    }

    @Test func busySampleIsRefusedAndLeftUnchanged() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            try client.seed(dump: SampleData.before("busy"))
            let before = try pachydermState(client)
            let migrator = Migrator(store: client, migration: try migration(), namespace: Namespace(), logger: testLogger)
            let error = #expect(throws: MigrationError.self) { try migrator.run(options: MigrationOptions(backup: .none)) }
            #expect(error?.code == .notAtRest)
            // 3 jobs starting/running and 2 open commits, each named.
            #expect(error?.keys.count == 5)
            #expect(error?.keys.contains { $0.description.hasPrefix("pachyderm_pfs/commits/images/fbb43e11970e40198b424b676ab17fb0") } == true)
            let after = try pachydermState(client)
            #expect(after == before)
            #expect(try client.range(.prefix(Array("pachmigrate/".utf8))).kvs.isEmpty)
        }
    }

    @Test func busySampleMigratesWithOpenCommitsAllowedOnceJobsAreDone() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            // Drop the running jobs: what is left is a cluster with two open commits.
            let kvs = try SampleData.keyValues(SampleData.before("busy"))
            let dump = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString + ".jsonl").path
            defer { try? FileManager.default.removeItem(atPath: dump); try? FileManager.default.removeItem(atPath: dump + ".sha256") }
            let writer = try DumpWriter(path: dump)
            for kv in kvs {
                if case .record(.job, _) = layout.classify(kv.key),
                    (try? RecordCodec.decode(kind: .job, key: kv.key, value: kv.value))?.record.job?.isStartingOrRunning == true
                {
                    continue
                }
                try writer.write(kv)
            }
            _ = try writer.finish()
            try client.seed(dump: dump)
            let migrator = Migrator(
                store: client, migration: try migration(allowOpenCommits: true), namespace: Namespace(), logger: testLogger)
            let result = try migrator.run(options: MigrationOptions(backup: .none))
            #expect(result.outcome == .migrated)
            let open = try client.range(.prefix(Array("pachyderm_pfs/openCommits/".utf8))).kvs.map { text($0.key) }.sorted()
            #expect(
                open == [
                    "pachyderm_pfs/openCommits/4c50bd522c444a33bfc9b21fb970738d",
                    "pachyderm_pfs/openCommits/fbb43e11970e40198b424b676ab17fb0",
                ])
        }
    }

    @Test func twoMigratorsStartedTogetherExactlyOneWrites() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let seedClient = try server.makeClient()
            try seedClient.seed(dump: SampleData.before("at-rest"))
            let outcomes = Mutex<[String]>([])
            // Whichever migrator takes the lock holds it (paused at its first write) until the
            // other has answered, so the two overlap however slowly the machine starts them. Were
            // both let in, each would wait out the deadline and both would write.
            let deadline = ContinuousClock.now + .seconds(60)
            let otherAnswered: @Sendable () -> Bool = { outcomes.withLock { !$0.isEmpty } || ContinuousClock.now > deadline }
            let group = DispatchGroup()
            for _ in 0..<2 {
                DispatchQueue.global().async(group: group) {
                    do {
                        let client = try server.makeClient()
                        let migrator = Migrator(store: client, migration: try migration(), namespace: Namespace(), logger: testLogger)
                        let result = try migrator.run(options: MigrationOptions(backup: .none)) { event in
                            while event.step == .rewrite && event.done == 0 && !otherAnswered() { usleep(20_000) }
                        }
                        outcomes.withLock { $0.append(result.outcome == .migrated ? "migrated" : "\(result.outcome)") }
                    } catch let error as MigrationError {
                        outcomes.withLock { $0.append(error.code == .lockHeld ? "lockHeld" : "\(error)") }
                    } catch {
                        outcomes.withLock { $0.append("\(error)") }
                    }
                }
            }
            group.wait()
            #expect(outcomes.withLock { $0.sorted() } == ["lockHeld", "migrated"])
        }
    }

    @Test func foreignWriteDuringTheRunIsDetectedAndNotClobbered() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            try client.seed(dump: SampleData.before("at-rest"))
            // The newest job is written last in its lane: change it once the run is under way.
            let jobs = try client.dumpState(prefix: "pachyderm_pps/jobs/")
            let target = try #require(jobs.last)
            let theirs = Array("job:<id:\"theirs\" > ".utf8)
            let migrator = Migrator(store: client, migration: try migration(), namespace: Namespace(), logger: testLogger)
            var options = MigrationOptions(backup: .none)
            options.concurrency = 1
            let wrote = Atomic<Bool>(false)
            let error = #expect(throws: MigrationError.self) {
                try migrator.run(options: options) { event in
                    if event.step == .rewrite && event.done >= 5 && !wrote.exchange(true, ordering: .relaxed) {
                        _ = try? client.put(PutRequest(key: target.key, value: theirs))
                    }
                }
            }
            #expect(error?.code == .foreignWrite)
            #expect(error?.keys.map(\.description) == [text(target.key)])
            #expect(try client.range(RangeRequest(key: target.key)).kvs.first?.value == theirs)
            let state = try JournalReader(store: client, namespace: Namespace()).state()
            #expect(state?.status == .failed)
        }
    }

    /// A real etcd holding the at-rest sample, and a migrator for it.
    func atRestSample() throws -> (EtcdServer, EtcdClient, Migrator) {
        let server = try EtcdServer.start()
        do {
            let client = try server.makeClient()
            try client.seed(dump: SampleData.before("at-rest"))
            return (server, client, Migrator(store: client, migration: try migration(), namespace: Namespace(), logger: testLogger))
        } catch {
            server.stop()
            throw error
        }
    }

    /// The check after the writes reads no key when every revision since the run started is
    /// the run's own (its records' txns, its state, its lock's heartbeats); a write anywhere
    /// else in etcd, outside Pachyderm's roots, makes it read every key under them, and pass.
    @Test(arguments: [false, true])
    func theCheckReadsTheKeysOnlyWhenARevisionIsNotTheRunsOwn(writeElsewhere: Bool) async throws {
        try await onOwnThread {
            let (server, client, migrator) = try atRestSample()
            defer { server.stop() }
            var options = MigrationOptions(backup: .none)
            // Two-second heartbeats: several land during the writes, each a revision of the run's own.
            options.lock.ttl = 2
            options.concurrency = 1
            let wrote = Atomic<Bool>(false)
            let result = try migrator.run(options: options) { event in
                if writeElsewhere && event.step == .rewrite && event.done >= 5 && !wrote.exchange(true, ordering: .relaxed) {
                    _ = try? client.put(PutRequest(key: bytes("other-app/setting"), value: bytes("1")))
                }
            }
            #expect(result.outcome == .migrated && result.written == 508)
            let check = try #require(result.check)
            #expect(check.keysRead == (writeElsewhere ? 1537 : nil), "\(check)")
            // The records' txns and the run's state at the least; heartbeats beside them.
            #expect(check.revisionsSinceStart >= Int64(result.txns + 1) + (writeElsewhere ? 1 : 0), "\(check), \(result.txns) txns")
            #expect(try JournalReader(store: client, namespace: Namespace()).stampedVersion() == "1.5.0")
        }
    }

    /// A stop during the check after the writes (a minute at a million keys on etcd 3.1,
    /// when it reads every key) ends it at the next page, leaves the cluster unstamped and
    /// the run resumable; the next attempt writes nothing more, checks again and stamps.
    /// `after`: the check's keys read when the stop comes (0: before its first page; 1000:
    /// part way). A write outside Pachyderm's roots makes the check read every key.
    @Test(arguments: [0, 1000])
    func aStopDuringTheCheckLeavesTheRunResumableAndUnstamped(after: Int) async throws {
        try await onOwnThread {
            let (server, client, migrator) = try atRestSample()
            defer { server.stop() }
            var options = MigrationOptions(backup: .none)
            options.measureForecast = false
            let stop = StopSignal()
            let checkEvents = Mutex<[Int]>([])
            let wrote = Atomic<Bool>(false)
            let error = #expect(throws: MigrationError.self) {
                try migrator.run(options: options, stop: stop) { event in
                    if event.step == .rewrite && !wrote.exchange(true, ordering: .relaxed) {
                        _ = try? client.put(PutRequest(key: bytes("other-app/setting"), value: bytes("1")))
                    }
                    guard event.step == .check, event.total > 0 else { return }
                    checkEvents.withLock { $0.append(event.done) }
                    if event.done >= after { stop.stop(signal: SIGINT) }
                }
            }
            #expect(error?.code == .interrupted)
            // It ended at the page after the stop, short of the check's end, and said how far it got.
            let events = checkEvents.withLock { $0 }
            let stoppedAt = try #require(events.last)
            #expect(stoppedAt >= after && stoppedAt < 1537 && events.dropLast().allSatisfy { $0 < after }, "\(events)")
            #expect(
                error?.message.contains("during the check after the writes (\(stoppedAt) of 1537 keys read)") == true,
                "\(error?.message ?? "")")
            #expect(error?.message.contains("run the same command again") == true)
            let journal = JournalReader(store: client, namespace: Namespace())
            #expect(try journal.stampedVersion() == nil)
            let state = try #require(try journal.state())
            #expect(state.status == .failed && state.stoppedOnRequest && state.step == .check)
            let offline = OfflineConverter(layout: layout, plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0"))
                .convert(try SampleData.keyValues(SampleData.before("at-rest")))
            #expect(valuesByKey(try pachydermState(client)) == valuesByKey(offline.output))

            let resumed = try migrator.run(options: options)
            #expect(resumed.outcome == .migrated && resumed.resumed)
            #expect(resumed.written == 0)
            #expect(try journal.stampedVersion() == "1.5.0")
            #expect(try journal.history().last?.counts?["jobs"] == 200)
            #expect(valuesByKey(try pachydermState(client)) == valuesByKey(offline.output))
        }
    }
}
