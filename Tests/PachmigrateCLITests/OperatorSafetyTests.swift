import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Foundation
import MigrationEngine
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A cluster big enough that the scan and the backup each last seconds in a debug build:
/// the at-rest sample with its records copied `scale` times (about 500 records a copy).
private struct BigCluster {
    let server: EtcdServer
    let client: EtcdClient
    let before: [KeyValue]
    let directory: String

    init(scale: Int = 60) throws {
        server = try EtcdServer.start()
        client = try server.makeClient()
        // A hundred keys a txn: the order of revisions is not what these tests are about,
        // and one txn per key would take most of a minute to load.
        let kvs = try scaledSample(scale).enumerated().map { index, kv in
            var kv = kv
            kv.modRevision = Int64(index / 100)
            return kv
        }
        try client.seed(kvs)
        before = try pachydermState(client)
        directory = try temporaryDirectory()
    }

    var endpoint: [String] { ["--endpoints", server.endpoint] }
    var backupPath: String { directory + "/bk.jsonl" }

    func stop() {
        server.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Every Pachyderm key as it was (value, create and mod revision), no run state, no
    /// cursor, the lock free, and no file that could pass for a backup.
    func expectUntouched(_ comment: Comment) throws {
        #expect(try pachydermState(client) == before, comment)
        #expect(try client.range(.prefix(bytes("pachmigrate/lanes/"))).kvs.isEmpty, comment)
        #expect(try client.range(RangeRequest(key: bytes("pachmigrate/state"))).kvs.isEmpty, comment)
        #expect(try client.range(RangeRequest(key: bytes("pachmigrate/version"))).kvs.isEmpty, comment)
        #expect(try client.range(RangeRequest(key: bytes("pachmigrate/lock"))).kvs.isEmpty, comment)
        let left = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(left.isEmpty, "\(comment): left behind \(left)")
    }

    /// The lock holder's published step (nil while the lock is free).
    func lockStep() -> String? {
        guard let kv = try? client.range(RangeRequest(key: bytes("pachmigrate/lock"))).kvs.first,
            let holder = try? JSONSerialization.jsonObject(with: Data(kv.value)) as? [String: Any]
        else { return nil }
        return holder["step"] as? String
    }
}

/// What happens when an operator presses Ctrl-C (or Kubernetes sends SIGTERM) before the
/// migration's first write: the command ends at once, and the cluster is as it was.
@Suite("Stopping before the first write")
struct StopBeforeWritingTests {
    enum Phase: String, CaseIterable, Sendable {
        case scan, backup
    }

    @Test(arguments: [(Phase.scan, SIGINT), (Phase.backup, SIGTERM), (Phase.scan, SIGTERM), (Phase.backup, SIGINT)])
    func aSignalBeforeTheFirstWriteEndsAtOnceWithNothingWritten(phase: Phase, signal: Int32) async throws {
        try await onOwnThread {
            let cluster = try BigCluster()
            defer { cluster.stop() }
            let run = try PachmigrateProcess(
                ["migrate", "--from", "1.4.8", "--to", "1.5.0", "--backup", cluster.backupPath] + cluster.endpoint)
            let reached = eventually(timeout: 240) {
                !run.process.isRunning
                    || (phase == .scan
                        ? cluster.lockStep() == "scan" : FileManager.default.fileExists(atPath: cluster.backupPath))
            }
            #expect(reached && run.process.isRunning, "the run never reached the \(phase.rawValue)")
            // Frozen while the signal is queued, so it lands in the phase just seen.
            run.signal(SIGSTOP)
            let (result, endedAtOnce) = signalFrozen(run, signal)
            let comment = Comment(rawValue: "\(phase.rawValue), signal \(signal): \(result.stderr.suffix(2000))")
            #expect(result.status == 128 + signal, comment)
            #expect(endedAtOnce, comment)
            #expect(result.stderr.contains("during the \(phase.rawValue)"), comment)
            #expect(result.stderr.contains("nothing was written"), comment)
            #expect(!result.stderr.contains("finishing the txn in flight"), comment)
            try cluster.expectUntouched(comment)
            // The journal says that a run started and stopped, and why.
            let history = try JournalFacts(cluster.client).history()
            #expect(history.map { $0["event"] as? String } == ["stopped-before-writing"], comment)

            // Nothing stands in the way of the same command afterwards.
            let again = try pachmigrate(
                ["migrate", "--from", "1.4.8", "--to", "1.5.0", "--backup", cluster.backupPath] + cluster.endpoint, timeout: 600)
            #expect(again.status == 0, "\(again.stderr.suffix(2000))")
            #expect(FileManager.default.fileExists(atPath: cluster.backupPath + ".sha256"))
        }
    }

    /// etcd's snapshot of a large database can take minutes across a network: a signal ends
    /// it at once and deletes the unfinished file. `backup` keeps the logical backup it had
    /// finished and says so; `migrate` takes the snapshot before anything else.
    @Test func aSignalDuringEtcdsSnapshotEndsItAndDeletesTheFile() async throws {
        try await onOwnThread {
            let cluster = try BigCluster()
            defer { cluster.stop() }
            let snapshotPath = cluster.directory + "/etcd.db"
            let runs: [(arguments: [String], signal: Int32)] = [
                (["backup", "--snapshot", snapshotPath, cluster.backupPath], SIGTERM),
                (["migrate", "--from", "1.4.8", "--to", "1.5.0", "--snapshot", snapshotPath, "--backup", cluster.backupPath], SIGINT),
            ]
            for (arguments, signal) in runs {
                let comment = Comment(rawValue: "\(arguments[0]), signal \(signal)")
                let run = try PachmigrateProcess(arguments + cluster.endpoint)
                let pid = run.process.processIdentifier
                let reached = eventually(timeout: 240) { !run.process.isRunning || hasOpen(pid, snapshotPath) }
                // Frozen, so the snapshot seen in progress is still in progress when the signal lands.
                run.signal(SIGSTOP)
                #expect(reached && hasOpen(pid, snapshotPath), "\(comment): the run was never seen writing the snapshot")
                let (result, endedAtOnce) = signalFrozen(run, signal)
                let said = Comment(rawValue: "\(comment): \(result.stderr.suffix(2000))")
                #expect(result.status == 128 + signal, said)
                #expect(endedAtOnce, said)
                #expect(result.stderr.contains("during etcd's snapshot"), said)
                #expect(result.stderr.contains("the unfinished file \(snapshotPath) was deleted"), said)
                #expect(!FileManager.default.fileExists(atPath: snapshotPath), said)
                if arguments[0] == "backup" {
                    #expect(result.stderr.contains("the backup \(cluster.backupPath) is complete and kept"), said)
                    // Not "run the same command again": it would refuse the kept backup's path.
                    #expect(result.stderr.contains("etcdctl snapshot save \(snapshotPath)"), said)
                    #expect(!result.stderr.contains("run the same command again"), said)
                    _ = try verifyDumpChecksum(path: cluster.backupPath)
                    try FileManager.default.removeItem(atPath: cluster.backupPath)
                    try FileManager.default.removeItem(atPath: cluster.backupPath + ".sha256")
                    try? FileManager.default.removeItem(atPath: cluster.backupPath + ".origin.json")
                }
            }
            try cluster.expectUntouched("after both runs")
        }
    }

    /// `--dry-run` stops the same way and never reports success when stopped.
    @Test func aStoppedDryRunDoesNotExitZero() async throws {
        try await onOwnThread {
            let cluster = try BigCluster()
            defer { cluster.stop() }
            let run = try PachmigrateProcess(["migrate", "--dry-run", "--output", "json"] + cluster.endpoint)
            usleep(1_500_000)
            #expect(run.process.isRunning, "the dry run ended within 1.5 s: the cluster is too small for this test")
            run.signal(SIGINT)
            let result = run.wait(timeout: 60)
            #expect(result.status == 130, "\(result.stderr.suffix(2000))")
            #expect(result.json["ok"] as? Bool == false)
            #expect((result.json["error"] as? [String: Any])?["code"] as? String == "stoppedBeforeWriting")
            try cluster.expectUntouched("dry run")
        }
    }

    /// Waiting for someone else's lock is part of the preflight: a signal ends the wait at
    /// once, and the other holder's lock is left alone.
    @Test func aSignalWhileWaitingForTheLockEndsTheWait() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let lease = try sample.client.leaseGrant(ttl: 60)
            let holder =
                #"{"holderID":"other","host":"elsewhere","pid":1,"toolVersion":"0.1.0","command":"pachmigrate migrate","#
                + #""startedAt":"2026-01-01T00:00:00Z","step":"rewrite","done":1,"total":2,"heartbeat":"2026-01-01T00:00:00Z","#
                + #""heartbeatEpoch":1767225600,"leaseID":"1","ttl":60}"#
            _ = try sample.client.put(PutRequest(key: bytes("pachmigrate/lock"), value: bytes(holder), lease: lease.id))
            let run = try PachmigrateProcess(["migrate", "--no-backup", "--wait-lock", "5m"] + sample.endpoint)
            #expect(eventually(timeout: 30) { !run.process.isRunning || run.currentStderr.contains("lock held, waiting") })
            run.signal(SIGTERM)
            let signalled = Date()
            let result = run.wait(timeout: 30)
            #expect(result.status == 143, "\(result.stderr.suffix(2000))")
            #expect(Date().timeIntervalSince(signalled) < 5)
            #expect(result.stderr.contains("the wait for the lock"))
            #expect(try pachydermState(sample.client) == sample.before)
            #expect(try sample.client.range(RangeRequest(key: bytes("pachmigrate/lock"))).kvs.first?.value == bytes(holder))
        }
    }
}

/// A stated `--from` is held to the records, before anything is written.
@Suite("A --from that contradicts the data")
struct ContradictingFromTests {
    @Test(arguments: [["plan", "--from", "1.5.0"], ["migrate", "--from", "1.5.0", "--to", "1.5.0", "--no-backup"]])
    func textRecordsWithFrom15Exit5(arguments: [String]) async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let revision = try sample.client.status().header.revision
            let result = try pachmigrate(arguments + sample.endpoint)
            #expect(result.status == 5, "\(result.stderr)")
            #expect(result.stderr.contains("--from 1.5.0 contradicts the cluster"), "\(result.stderr)")
            #expect(result.stderr.contains("1.4 text"))
            #expect(result.stderr.contains("pachmigrate migrate --from 1.4.x --to 1.5.0"))
            #expect(try sample.client.status().header.revision == revision)
        }
    }

    @Test func binaryRecordsOfAnUnstampedClusterWithFrom14Exit5() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let migrated = try pachmigrate(["migrate", "--no-backup"] + sample.endpoint)
            #expect(migrated.status == 0, "\(migrated.stderr)")
            // As another migration would leave it: 1.5 binary, no pachmigrate stamp.
            _ = try sample.client.deleteRange(.prefix(bytes("pachmigrate/")))
            let revision = try sample.client.status().header.revision
            for arguments in [["plan", "--from", "1.4.8"], ["migrate", "--from", "1.4.8", "--no-backup"]] {
                let result = try pachmigrate(arguments + sample.endpoint)
                #expect(result.status == 5, "\(arguments): \(result.stderr)")
                #expect(result.stderr.contains("already 1.5 binary"), "\(result.stderr)")
                #expect(result.stderr.contains("--from 1.5.0"), "\(result.stderr)")
            }
            #expect(try sample.client.status().header.revision == revision)
            // The command the refusal names goes through.
            let repaired = try pachmigrate(["plan", "--from", "1.5.0"] + sample.endpoint)
            #expect(repaired.status == 0, "\(repaired.stderr)")
        }
    }
}

/// Resuming speaks of the run's own earlier attempt; `status` and `lock show` agree with the
/// journal, and never tell anyone to resume a run that is alive.
@Suite("Resuming an interrupted run")
struct ResumeReportTests {
    @Test func resumeNamesItsOwnRunAndItsFirstBackup() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            // A relative --backup, as a person types it: recorded as an absolute path with its host.
            let run = try PachmigrateProcess(
                ["migrate", "--backup", "bk.jsonl", "--concurrency", "1"] + sample.endpoint, directory: directory)
            #expect(waitUntilWriting(sample.client, run))
            run.signal(SIGSTOP)
            let lock = try pachmigrate(["lock", "show"] + sample.endpoint)
            let live = try pachmigrate(["status"] + sample.endpoint)
            run.signal(SIGCONT)
            #expect(lock.stdout.contains("step:       rewrite, "), "\(lock.stdout)")
            #expect(lock.stdout.contains("records written (journal)"), "\(lock.stdout)")
            #expect(live.stdout.contains("in progress: pachmigrate migrate"), "\(live.stdout)")
            #expect(!live.stdout.contains("resume"), "\(live.stdout)")
            run.signal(SIGINT)
            let interrupted = run.wait()
            #expect(interrupted.status == 7, "\(interrupted.stderr)")

            let host = ProcessInfo.processInfo.hostName
            let backup = "\(host):\(directory)/bk.jsonl"
            let after = try pachmigrate(["status"] + sample.endpoint)
            #expect(after.stdout.contains("interrupted: run the same migrate command to resume"), "\(after.stdout)")
            let runID = try #require(try JournalFacts(sample.client).state()?["runID"] as? String)
            #expect(after.stdout.contains("Run \(runID): interrupted, "), "\(after.stdout)")
            #expect(after.stdout.contains("backup \(backup) sha256 "), "\(after.stdout)")

            let resumed = try pachmigrate(["migrate", "--backup", "other.jsonl"] + sample.endpoint, directory: directory)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            // The journal records the SIGINT as a failure with the code `interrupted`: named as such.
            #expect(resumed.stdout.contains("Resuming run \(runID) (interrupted, started "), "\(resumed.stdout)")
            #expect(resumed.stdout.contains("is recorded (run \(runID), interrupted); migrate resumes it"), "\(resumed.stdout)")
            #expect(resumed.stdout.contains("backup from its first attempt: \(backup) (sha256 "), "\(resumed.stdout)")
            #expect(resumed.stdout.contains("--backup \(directory)/other.jsonl was not written"), "\(resumed.stdout)")
            #expect(resumed.stderr.contains("--backup other.jsonl will not be written"), "\(resumed.stderr)")
            #expect(!resumed.stdout.contains("another migration"), "\(resumed.stdout)")
            // The earlier attempt's writes are not known by revision: the check read every key again.
            #expect(resumed.stdout.contains("  check: 1537 key(s) read again for writes by others"), "\(resumed.stdout)")
            #expect(!FileManager.default.fileExists(atPath: "\(directory)/other.jsonl"))
            try sample.expectMigratedLikeAnUninterruptedRun()
        }
    }
}

/// `wait` accepts every release that reads the stamped format, and refuses at once what it
/// cannot know; `--namespace` is refused with its new name and meaning.
@Suite("Operators' flags")
struct OperatorFlagTests {
    @Test func waitFor151OnAClusterStamped150() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            #expect(try pachmigrate(["migrate", "--no-backup"] + sample.endpoint).status == 0)
            let patch = try pachmigrate(["wait", "--version", "1.5.1", "--timeout", "10s"] + sample.endpoint, timeout: 30)
            #expect(patch.status == 0, "\(patch.stderr)")
            let started = Date()
            let unknown = try pachmigrate(["wait", "--version", "1.6.0", "--timeout", "60s"] + sample.endpoint, timeout: 30)
            #expect(unknown.status == 5, "\(unknown.stderr)")
            #expect(Date().timeIntervalSince(started) < 10)
        }
    }

    @Test func namespaceIsRefusedWithItsNewNameAndAStrayPrefixIsWarned() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            #expect(try pachmigrate(["migrate", "--no-backup"] + sample.endpoint).status == 0)
            let renamed = try pachmigrate(["status", "--namespace", "default"] + sample.endpoint)
            #expect(renamed.status == 2)
            #expect(renamed.stderr.contains("--state-prefix"), "\(renamed.stderr)")
            #expect(renamed.stderr.contains("not a Kubernetes namespace"), "\(renamed.stderr)")
            let fromEnvironment = try pachmigrate(["status"] + sample.endpoint, environment: ["PACHMIGRATE_NAMESPACE": "default"])
            #expect(fromEnvironment.status == 2, "\(fromEnvironment.stderr)")

            let stray = try pachmigrate(["status", "--state-prefix", "default/"] + sample.endpoint)
            #expect(stray.status == 0)
            #expect(stray.stderr.contains("no pachmigrate state under the state prefix default/"), "\(stray.stderr)")
            let own = try pachmigrate(["status"] + sample.endpoint)
            #expect(own.stdout.contains("Stamped version: 1.5.0"))
            #expect(!own.stderr.contains("no pachmigrate state"))
        }
    }
}

/// A fixed `--backup` path (the Job's, a runbook's) must not make a second attempt fail:
/// a complete backup there that holds exactly what the cluster holds is the run's own.
@Suite("A backup path used twice")
struct BackupPathReuseTests {
    @Test func anIdenticalCompleteBackupIsReusedAnythingElseIsLeftAlone() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }

            // Anything that is not a complete backup is refused, untouched, before any write.
            let stray = directory + "/stray.jsonl"
            try Data("not a backup\n".utf8).write(to: URL(fileURLWithPath: stray))
            let refused = try pachmigrate(["migrate", "--backup", stray] + sample.endpoint)
            #expect(refused.status == 1, "\(refused.stderr)")
            #expect(refused.stderr.contains("already exists and is not a complete backup"), "\(refused.stderr)")
            #expect(try String(contentsOfFile: stray, encoding: .utf8) == "not a backup\n")
            // `backup` to it says what a file without its checksum most likely is.
            let notOverwritten = try pachmigrate(["backup", stray] + sample.endpoint)
            #expect(notOverwritten.status == 1, "\(notOverwritten.stderr)")
            #expect(notOverwritten.stderr.contains("it has no stray.jsonl.sha256 beside it: an unfinished backup"), "\(notOverwritten.stderr)")
            #expect(try String(contentsOfFile: stray, encoding: .utf8) == "not a backup\n")
            #expect(try pachydermState(sample.client) == sample.before)
            #expect(try sample.client.range(.prefix(bytes("pachmigrate/state"))).kvs.isEmpty)

            // A backup of this very cluster, as an attempt that died before its first write left it.
            let path = directory + "/pre.jsonl"
            let taken = try pachmigrate(["backup", path, "--output", "json"] + sample.endpoint)
            #expect(taken.status == 0, "\(taken.stderr)")
            let sha = try String(contentsOfFile: path + ".sha256", encoding: .utf8)
            let migrated = try pachmigrate(["migrate", "--backup", path, "--output", "json"] + sample.endpoint)
            #expect(migrated.status == 0, "\(migrated.stderr)")
            let backup = (migrated.json["result"] as? [String: Any])?["backup"] as? [String: Any]
            #expect(backup?["path"] as? String == path)
            #expect(sha.hasPrefix(backup?["sha256"] as? String ?? "-"))
            #expect(try String(contentsOfFile: path + ".sha256", encoding: .utf8) == sha)
            #expect(migrated.stderr.contains("reusing the backup an earlier attempt wrote"), "\(migrated.stderr)")
            try sample.expectMigratedLikeAnUninterruptedRun()
        }
    }
}

/// Ctrl-C during a restore: before its first write nothing changes; after it, the restore
/// stops after the txn in flight, leaves the cluster unstamped (no new pachd starts on it)
/// and recorded as half restored (status says so, plan and migrate refuse), and the same
/// command finishes it.
@Suite("Stopping a restore")
struct StopRestoreTests {
    /// `restore` of the cluster's backup, stopped by Ctrl-C once it has unstamped the cluster.
    private static func restoreStoppedHalfWay(_ cluster: BigCluster) throws -> RunResult {
        let restore = try PachmigrateProcess(["restore", cluster.backupPath] + cluster.endpoint)
        let unstamped = eventually(timeout: 60) {
            !restore.process.isRunning
                || (try? cluster.client.range(RangeRequest(key: bytes("pachmigrate/version"))).kvs.isEmpty) == true
        }
        #expect(unstamped && restore.process.isRunning, "the restore never began writing")
        restore.signal(SIGINT)
        return restore.wait(timeout: 60)
    }

    @Test func aRestoreStoppedHalfWayIsUnstampedAndTheSameCommandFinishesIt() async throws {
        try await onOwnThread {
            let cluster = try BigCluster(scale: 20)
            defer { cluster.stop() }
            let migrated = try pachmigrate(["migrate", "--backup", cluster.backupPath] + cluster.endpoint, timeout: 600)
            #expect(migrated.status == 0, "\(migrated.stderr.suffix(2000))")

            let stopped = try Self.restoreStoppedHalfWay(cluster)
            #expect(stopped.status == 7, "\(stopped.stderr.suffix(2000))")
            #expect(stopped.stderr.contains("half restored and no longer stamped"), "\(stopped.stderr.suffix(2000))")
            #expect(try cluster.client.range(RangeRequest(key: bytes("pachmigrate/lock"))).kvs.isEmpty)
            let held = try pachmigrate(["wait", "--version", "1.5.0", "--timeout", "1s"] + cluster.endpoint, timeout: 30)
            #expect(held.status == 1, "a new pachd's init container must keep waiting: \(held.stderr)")

            // Every later command knows the cluster is half restored, not half migrated.
            let status = try pachmigrate(["status"] + cluster.endpoint)
            #expect(status.stdout.contains("Restore of \(cluster.backupPath)"), "\(status.stdout)")
            #expect(status.stdout.contains("stopped half way: the cluster is half restored"), "\(status.stdout)")
            let statusJSON = try pachmigrate(["status", "--output", "json"] + cluster.endpoint)
            let underWay = (statusJSON.json["result"] as? [String: Any])?["restoreInProgress"] as? [String: Any]
            #expect(underWay?["backupPath"] as? String == cluster.backupPath, "\(statusJSON.stdout.prefix(2000))")
            let halfRestored = try pachydermState(cluster.client)
            for command in [["plan"], ["migrate", "--no-backup"], ["verify"]] {
                let refused = try pachmigrate(command + cluster.endpoint, timeout: 600)
                #expect(refused.status == 4, "\(command): \(refused.stderr.suffix(2000))")
                #expect(refused.stderr.contains("did not finish, so the cluster is half restored"), "\(refused.stderr.suffix(2000))")
                #expect(refused.stderr.contains("`pachmigrate restore \(cluster.backupPath)` again"), "\(refused.stderr.suffix(2000))")
            }
            #expect(try pachydermState(cluster.client) == halfRestored)

            let finished = try pachmigrate(["restore", cluster.backupPath] + cluster.endpoint, timeout: 600)
            #expect(finished.status == 0, "\(finished.stderr.suffix(2000))")
            #expect(valuesByKey(try pachydermState(cluster.client)) == valuesByKey(cluster.before))
            #expect(try cluster.client.range(RangeRequest(key: bytes("pachmigrate/restore"))).kvs.isEmpty)
            let after = try pachmigrate(["status"] + cluster.endpoint)
            #expect(!after.stdout.contains("Restore of"), "\(after.stdout)")

            // The record as a restore stopped right after its first txn leaves it, on records that
            // are all 1.4 text: the restore is what --from 1.5.0 hears about, not the version.
            let stoppedRestore =
                #"{"backupPath":"\#(cluster.backupPath)","backupSHA256":"ab12","keys":1,"#
                + #""startedAt":"2026-12-04T04:00:00Z","who":"ops"}"#
            try cluster.client.put(PutRequest(key: bytes("pachmigrate/restore"), value: bytes(stoppedRestore)))
            let contradicting = try pachmigrate(["migrate", "--from", "1.5.0", "--to", "1.5.0", "--no-backup"] + cluster.endpoint)
            #expect(contradicting.status == 4, "\(contradicting.stderr.suffix(2000))")
            #expect(contradicting.stderr.contains("did not finish, so the cluster is half restored"), "\(contradicting.stderr)")
        }
    }

    /// The operator stops a restore of one backup, then restores another (the right one, it
    /// turns out). The half restore's writes are pachmigrate's own, of a backup on file: they
    /// are replaced, not counted as newer writes to protect; a write after it still is. And
    /// the finished restore's writes are pachmigrate's too, for the restore after it.
    @Test func anotherBackupRestoredOverAHalfRestoreReplacesItAndLaterWritesStayProtected() async throws {
        try await onOwnThread {
            let cluster = try BigCluster(scale: 20)
            defer { cluster.stop() }
            let migrated = try pachmigrate(["migrate", "--backup", cluster.backupPath] + cluster.endpoint, timeout: 600)
            #expect(migrated.status == 0, "\(migrated.stderr.suffix(2000))")
            let afterMigration = try pachydermState(cluster.client)
            let postPath = cluster.directory + "/post.jsonl"
            let post = try pachmigrate(["backup", postPath] + cluster.endpoint, timeout: 600)
            #expect(post.status == 0, "\(post.stderr.suffix(2000))")

            let stopped = try Self.restoreStoppedHalfWay(cluster)
            try #require(stopped.status == 7, "\(stopped.stderr.suffix(2000))")

            // pachd (say) writes after the half restore: that write alone is refused.
            let foreign = bytes("pachyderm_pfs/repos/written-after-the-half-restore")
            try cluster.client.put(PutRequest(key: foreign, value: bytes("repo")))
            let dryRun = try pachmigrate(["restore", "--dry-run", postPath] + cluster.endpoint, timeout: 600)
            #expect(dryRun.status == 4, "\(dryRun.stderr.suffix(2000))")
            #expect(dryRun.stdout.contains("A restore of another backup, \(cluster.backupPath)"), "\(dryRun.stdout.prefix(3000))")
            #expect(dryRun.stdout.contains("by something other than pachmigrate: 1 key(s)"), "\(dryRun.stdout.prefix(3000))")
            #expect(dryRun.stdout.contains("the unfinished restore wrote revisions"), "\(dryRun.stdout.prefix(3000))")
            #expect(dryRun.stdout.contains("written-after-the-half-restore (written at revision"), "\(dryRun.stdout.prefix(3000))")

            try cluster.client.deleteRange(DeleteRangeRequest(key: foreign))
            let other = try pachmigrate(["restore", postPath] + cluster.endpoint, timeout: 600)
            #expect(other.status == 0, "\(other.stderr.suffix(2000))")
            #expect(valuesByKey(try pachydermState(cluster.client)) == valuesByKey(afterMigration))
            #expect(try cluster.client.range(RangeRequest(key: bytes("pachmigrate/restore"))).kvs.isEmpty)

            // Back to the first backup after all: the finished restore's writes are pachmigrate's.
            let back = try pachmigrate(["restore", cluster.backupPath] + cluster.endpoint, timeout: 600)
            #expect(back.status == 0, "\(back.stderr.suffix(2000))")
            #expect(back.stdout.contains("its last restore wrote revisions"), "\(back.stdout.prefix(3000))")
            #expect(valuesByKey(try pachydermState(cluster.client)) == valuesByKey(cluster.before))
        }
    }
}

/// Whether process `pid` holds `path` open (Linux's /proc/PID/fd).
private func hasOpen(_ pid: Int32, _ path: String) -> Bool {
    let directory = "/proc/\(pid)/fd"
    guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return false }
    return descriptors.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\($0)")) == path }
}

/// Signals a run frozen with SIGSTOP (so the signal lands in the phase it was frozen in),
/// thaws it and waits for its end: what it printed, and whether it ended within 5 s.
private func signalFrozen(_ run: PachmigrateProcess, _ signal: Int32) -> (result: RunResult, endedAtOnce: Bool) {
    run.signal(signal)
    let signalled = Date()
    run.signal(SIGCONT)
    let result = run.wait(timeout: 60)
    return (result, Date().timeIntervalSince(signalled) < 5)
}
