import EtcdGateway
import EtcdTestSupport
import Foundation
import MigrationEngine
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Each command, run as the built executable against a real etcd, checked on its text and
/// JSON output and its exit code.
@Suite("pachmigrate commands")
struct CommandTests {
    @Test func versionAndHelp() async throws {
        try await onOwnThread {
            let version = try pachmigrate(["version", "--output", "json"])
            #expect(version.status == 0)
            #expect((version.json["result"] as? [String: Any])?["version"] as? String == "0.1.0")
            let help = try pachmigrate(["migrate", "--help"])
            #expect(help.status == 0)
            #expect(help.stdout.contains("--allow-open-commits"))
            // The table once, in the root help; each command names its own codes.
            #expect(help.stdout.contains("7 interrupted, resumable"), "\(help.stdout)")
            #expect(!help.stdout.contains("Exit codes:"))
            let root = try pachmigrate(["--help"])
            #expect(root.stdout.contains("Exit codes:") && root.stdout.contains("  7   interrupted"), "\(root.stdout)")
            let rootVersion = try pachmigrate(["--version"])
            #expect(rootVersion.status == 0 && rootVersion.stdout == "pachmigrate 0.1.0\n", "\(rootVersion.stdout)")
        }
    }

    @Test(arguments: [
        ["migrate", "--bogus"],
        ["migrate", "--backup", "x", "--no-backup"],
        ["migrate", "--lock-ttl", "1"],
        ["wait"],
        ["nonsense"],
        ["migrat", "--dry-run"],
        ["lock", "shwo"],
        ["status", "--endpoints", "ftp://x"],
    ])
    func badFlagsExit2(arguments: [String]) async throws {
        try await onOwnThread {
            let result = try pachmigrate(arguments)
            #expect(result.status == 2, "\(arguments): \(result.stderr)")
            #expect(!result.stderr.isEmpty)
        }
    }

    /// A mistyped command is named as one, with the closest, not blamed on the next flag.
    @Test func unknownCommandIsNamedWithTheClosest() async throws {
        try await onOwnThread {
            let result = try pachmigrate(["migrat", "--dry-run"])
            #expect(result.status == 2)
            #expect(result.stderr.contains("'migrat' is not a pachmigrate command; did you mean 'migrate'?"), "\(result.stderr)")
            #expect(!result.stderr.contains("Unknown option"))
        }
    }

    /// `--output json` prints one JSON document on stdout even when the command line does not parse.
    @Test(arguments: [
        ["migrate", "--bogus", "-o", "json"], ["migrat", "-w", "json"], ["migrate", "--lock-ttl", "1", "--output", "json"],
        ["status", "--endpoints", "ftp://x", "--write-out=json"], ["wait", "-o", "json"],
    ])
    func usageErrorsAreJSONWithOutputJSON(arguments: [String]) async throws {
        try await onOwnThread {
            let result = try pachmigrate(arguments)
            #expect(result.status == 2, "\(result.stderr)")
            #expect(result.json["ok"] as? Bool == false, "\(arguments): \(result.stdout)")
            #expect(result.json["exitCode"] as? Int == 2)
            #expect((result.json["error"] as? [String: Any])?["code"] as? String == "usage", "\(result.stdout)")
            // And under --log-format json, stderr's error line is JSON too.
            let logged = try pachmigrate(arguments + ["--log-format", "json"])
            for line in logged.stderr.split(separator: "\n") {
                #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "\(line)")
            }
        }
    }

    /// With `--output json` a failure of any kind is one JSON document on stdout, naming its
    /// exit code: a held lock (3), a cluster not at rest (4), problems found (6), a record
    /// that cannot be converted (8).
    @Test func everyFailureIsOneJSONDocument() async throws {
        try await onOwnThread {
            func expectOneDocument(_ result: RunResult, _ status: Int32, _ what: String) {
                #expect(result.status == status, "\(what): \(result.stderr)")
                #expect(result.json["ok"] as? Bool == false && result.json["exitCode"] as? Int == Int(status), "\(what): \(result.stdout)")
            }
            let busy = try SampleServer("busy")
            defer { busy.server.stop() }
            expectOneDocument(try pachmigrate(["migrate", "--no-backup", "-o", "json"] + busy.endpoint), 4, "not at rest")
            expectOneDocument(try pachmigrate(["verify", "--version", "1.5.0", "-o", "json"] + busy.endpoint), 6, "verify")
            let holder = try MigrationLock.acquire(
                store: busy.client, namespace: Namespace(),
                holder: LockHolder.current(command: "test holder", toolVersion: "t", from: "1.4.8", to: "1.5.0"), logger: testLogger)
            defer { holder.release() }
            let held = try pachmigrate(["migrate", "--no-backup", "-w", "json"] + busy.endpoint)
            expectOneDocument(held, 3, "lock held")
            #expect((held.json["error"] as? [String: Any])?["code"] as? String == "lockHeld")

            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            // A repo whose value is neither 1.4 text nor 1.5 binary.
            let garbage = Data([0xFF, 0x00, 0x13]).base64EncodedString()
            let key = Data("pachyderm_pfs/repos/broken".utf8).base64EncodedString()
            try #"{"key":"\#(key)","create_revision":"2","mod_revision":"2","version":"1","value":"\#(garbage)"}"#
                .appending("\n").write(toFile: "\(dir)/bad.jsonl", atomically: true, encoding: .utf8)
            expectOneDocument(
                try pachmigrate(["convert", "--from", "1.4.8", "-o", "json", "\(dir)/bad.jsonl", "\(dir)/out.jsonl"]), 8, "convert")
        }
    }

    /// A port that accepts but never answers fails after the request timeout, naming it,
    /// not the connect timeout and libcurl's milliseconds.
    @Test func silentPortNamesTheTimeoutThatPassed() async throws {
        try await onOwnThread {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            // Listening but never accepting: the kernel completes the handshake, nobody answers.
            #expect(bound && listen(fd, 16) == 0)
            let port = Int(UInt16(bigEndian: address.sin_port))
            let started = Date()
            let result = try pachmigrate(
                ["lock", "show", "--request-timeout", "1500ms"], environment: ["ETCD_ENDPOINTS": "http://127.0.0.1:\(port)"])
            #expect(result.status == 1)
            #expect(
                result.stderr.contains(
                    "accepted the connection but sent no answer within 1.5 s (the request timeout): is it etcd's client port, "
                        + "and is etcd stuck? Check that etcd runs"), "\(result.stderr)")
            #expect(!result.stderr.contains("milliseconds") && !result.stderr.contains("no connection within"), "\(result.stderr)")
            #expect(result.stderr.contains("no --endpoints given: tried $ETCD_ENDPOINTS"), "\(result.stderr)")
            #expect(Date().timeIntervalSince(started) < 20)
        }
    }

    /// A bare `pachmigrate` (a container started without arguments, a script's typo) is a
    /// usage error: the help on stderr and exit 2, not the help and 0.
    @Test func noArgumentsAtAllPrintsTheHelpAndExits2() async throws {
        try await onOwnThread {
            let result = try pachmigrate([])
            #expect(result.status == 2, "\(result.stdout)\(result.stderr)")
            #expect(result.stderr.contains("SUBCOMMANDS:"), "\(result.stderr)")
            #expect(result.stderr.contains("migrate"))
        }
    }

    /// Tab completion offers `pre.jsonl.sha256` as readily as `pre.jsonl`: given a file beside
    /// a backup, restore names the backup (exit 2), before any etcd call.
    @Test(arguments: [".sha256", ".origin.json"])
    func restoreOfAFileBesideTheBackupNamesTheBackup(suffix: String) async throws {
        try await onOwnThread {
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let backup = dir + "/pre.jsonl"
            for file in [backup, backup + ".sha256", backup + ".origin.json"] {
                #expect(FileManager.default.createFile(atPath: file, contents: Data()))
            }
            let port = try freeLoopbackPort()
            let result = try pachmigrate(["restore", backup + suffix, "--endpoints", "http://127.0.0.1:\(port)"])
            #expect(result.status == 2, "\(result.stderr)")
            #expect(result.stderr.contains("restore the backup itself: pachmigrate restore \(backup)"), "\(result.stderr)")
        }
    }

    /// A path that cannot exist is decided from the flags alone, before any etcd call: with
    /// etcd unreachable it still exits 5 (no path), not 1 (unreachable).
    @Test(arguments: ["migrate", "plan"])
    func impossiblePathExits5WithEtcdUnreachable(command: String) async throws {
        try await onOwnThread {
            let port = try freeLoopbackPort()
            let endpoint = ["--endpoints", "http://127.0.0.1:\(port)", "--request-timeout", "2"]
            let result = try pachmigrate([command, "--from", "2.0.0", "--to", "1.5.0"] + endpoint)
            #expect(result.status == 5, "\(result.stderr)")
            #expect(result.stderr.contains("2.0.0"), "\(result.stderr)")
            let json = try pachmigrate([command, "--from", "2.0.0", "--to", "1.5.0", "--output", "json"] + endpoint)
            #expect(json.status == 5)
            #expect((json.json["error"] as? [String: Any])?["code"] as? String == "unsupported-version", "\(json.stdout)")
        }
    }

    @Test func unreachableEndpointExits1NamingIt() async throws {
        try await onOwnThread {
            let port = try freeLoopbackPort()
            let defaulted = try pachmigrate(["status", "--request-timeout", "2s"], environment: ["ETCD_ENDPOINTS": "127.0.0.1:\(port)"])
            #expect(defaulted.status == 1)
            #expect(defaulted.stderr.contains("no --endpoints given: tried $ETCD_ENDPOINTS, http://127.0.0.1:\(port)"), "\(defaulted.stderr)")
            let result = try pachmigrate(["status", "--endpoints", "http://127.0.0.1:\(port)", "--request-timeout", "2"])
            #expect(result.status == 1)
            #expect(result.stderr.contains("127.0.0.1:\(port)"))
            let json = try pachmigrate(["plan", "--endpoints", "http://127.0.0.1:\(port)", "--output", "json"])
            #expect(json.status == 1)
            #expect(json.json["ok"] as? Bool == false)
            #expect((json.json["error"] as? [String: Any])?["code"] as? String == "etcd-transport")
        }
    }

    /// Killed after its last record but before the stamp: every record is already 1.5
    /// binary, so sampling would say "1.5.0, nothing to do". The same command (no --from)
    /// must resume the recorded run and stamp the cluster.
    @Test func killedJustBeforeTheStampResumesWithoutFrom() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            #expect(try pachmigrate(["migrate", "--no-backup"] + sample.endpoint).status == 0)
            // Put the journal back as the moment before the completing txn left it.
            let state = try #require(try sample.client.range(RangeRequest(key: bytes("pachmigrate/state"))).kvs.first)
            let running = text(state.value).replacingOccurrences(of: #""status":"done""#, with: #""status":"running""#)
            #expect(running != text(state.value))
            try sample.client.put(PutRequest(key: bytes("pachmigrate/state"), value: bytes(running)))
            _ = try sample.client.deleteRange(DeleteRangeRequest(key: bytes("pachmigrate/version")))

            let resumed = try pachmigrate(["migrate", "--no-backup", "--output", "json"] + sample.endpoint)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect((resumed.json["result"] as? [String: Any])?["resumed"] as? Bool == true, "\(resumed.stdout)")
            #expect(try JournalFacts(sample.client).version() == "1.5.0")
            #expect(try JournalFacts(sample.client).state()?["status"] as? String == "done")
            // Counts not compared: this simulation has no lane cursors left to count from.
            try MigrationExpectation(client: sample.client, before: sample.before, counts: nil).expectMigratedLikeAnUninterruptedRun()
        }
    }

    @Test func planMigrateVerifyStatusOnTheAtRestSample() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }

            let plan = try pachmigrate(["plan"] + sample.endpoint)
            #expect(plan.status == 0, "\(plan.stderr)")
            #expect(plan.stdout.contains("Plan: 1.4.x → 1.5.0"))
            #expect(plan.stdout.contains("commits 273"))
            #expect(plan.stdout.contains("Reprocessing forecast"))
            // How long a migrate would take from here, from the scan it just made.
            #expect(plan.stdout.contains("Time forecast from here: about"))
            #expect(plan.stdout.contains("the longest chain is"))
            // It says which etcd it talks to.
            #expect(plan.stdout.contains("\(sample.server.endpoint) runs etcd \(EtcdBinaries.version)"))
            // The forecast times a backup of a sample in the temp directory: that is no backup,
            // and the log must not announce one.
            #expect(!plan.stderr.contains("backup written"), "\(plan.stderr)")
            // etcd does not tell its quota: without --etcd-quota the comparison is with its
            // default, and says so.
            #expect(plan.stdout.contains("of a 2.0 GiB quota, etcd's default (etcd does not tell its quota: give --etcd-quota"))
            let withQuota = try pachmigrate(["plan", "--etcd-quota", "8GiB"] + sample.endpoint)
            #expect(withQuota.stdout.contains("of a 8.0 GiB quota (the run stops itself"), "\(withQuota.stdout)")
            let planJSON = try pachmigrate(["plan", "--output", "json"] + sample.endpoint)
            #expect((planJSON.json["result"] as? [String: Any])?["quotaAssumed"] as? Bool == true)
            let planEtcd = ((planJSON.json["result"] as? [String: Any])?["etcd"] as? [String: Any])?["endpoints"] as? [[String: Any]]
            #expect(planEtcd?.first?["server"] as? String == EtcdBinaries.version.description)
            #expect((planEtcd?.first?["cluster"] as? String)?.isEmpty == false)
            let scan = ((planJSON.json["result"] as? [String: Any])?["scan"] as? [String: Any])
            #expect((scan?["toRewrite"] as? [String: Int]) == ["repos": 11, "commits": 273, "branches": 18, "pipelines": 6, "jobs": 200])
            let timeForecast = (planJSON.json["result"] as? [String: Any])?["timeForecast"] as? [String: Any]
            #expect(timeForecast?["records"] as? Int == 508)
            #expect((timeForecast?["writeSeconds"] as? Double ?? 0) > 0)
            #expect(try pachydermState(sample.client) == sample.before)

            let migrate = try pachmigrate(
                ["migrate", "--from", "1.4.8", "--to", "1.5.0", "--backup", "\(dir)/backup.jsonl", "--output", "json"] + sample.endpoint)
            #expect(migrate.status == 0, "\(migrate.stderr)")
            let result = migrate.json["result"] as? [String: Any]
            #expect(result?["outcome"] as? String == "migrated")
            #expect(result?["written"] as? Int == 508)
            #expect(FileManager.default.fileExists(atPath: "\(dir)/backup.jsonl.sha256"))
            try sample.expectMigratedLikeAnUninterruptedRun()

            let verify = try pachmigrate(["verify"] + sample.endpoint)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
            #expect(verify.stdout.contains("OK:"))

            let status = try pachmigrate(["status"] + sample.endpoint)
            #expect(status.status == 0)
            #expect(status.stdout.contains("Stamped version: 1.5.0"))
            #expect(status.stdout.contains("Lock: free"))
            let statusJSON = try pachmigrate(["status", "--output", "json"] + sample.endpoint)
            #expect((statusJSON.json["result"] as? [String: Any])?["stampedVersion"] as? String == "1.5.0")
            let statusEtcd = ((statusJSON.json["result"] as? [String: Any])?["etcd"] as? [String: Any])?["endpoints"] as? [[String: Any]]
            #expect(statusEtcd?.first?["endpoint"] as? String == sample.server.endpoint)
            #expect(statusEtcd?.first?["server"] as? String == EtcdBinaries.version.description)
            #expect(status.stdout.contains("runs etcd \(EtcdBinaries.version)"))

            let again = try pachmigrate(["migrate", "--no-backup"] + sample.endpoint)
            #expect(again.status == 0)
            #expect(again.stdout.contains("Nothing to do"))

            // A record broken after the fact fails verify with exit 6, naming it.
            let job = try #require(try sample.client.range(.prefix(bytes("pachyderm_pps/jobs/"), limit: 1)).kvs.first)
            try sample.client.put(PutRequest(key: job.key, value: bytes("job:<id:\"text again\" > ")))
            let broken = try pachmigrate(["verify"] + sample.endpoint)
            #expect(broken.status == 6)
            #expect(broken.stdout.contains(text(job.key)))
        }
    }

    @Test func busySampleIsRefusedWithExit4AndUnchanged() async throws {
        try await onOwnThread {
            let sample = try SampleServer("busy")
            defer { sample.server.stop() }
            let plan = try pachmigrate(["plan"] + sample.endpoint)
            #expect(plan.status == 4)
            #expect(plan.stdout.contains("Not at rest (5)"))
            let migrate = try pachmigrate(["migrate", "--no-backup"] + sample.endpoint)
            #expect(migrate.status == 4)
            #expect(migrate.stderr.contains("JOB_RUNNING"))
            #expect(migrate.stderr.contains("pachyderm_pfs/commits/trades_2017/4c50bd522c444a33bfc9b21fb970738d"))
            #expect(try pachydermState(sample.client) == sample.before)
        }
    }

    @Test func wrongPasswordFailsClearlyAndNeverShowsIt() async throws {
        try await onOwnThread {
            let sample = try SampleServer(auth: true)
            defer { sample.server.stop() }
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try "not-the-password\n".write(toFile: "\(dir)/pw", atomically: true, encoding: .utf8)
            let wrong = try pachmigrate(["plan", "--user", "pachmigrate", "--password-file", "\(dir)/pw", "--output", "json"] + sample.endpoint)
            #expect(wrong.status == 1)
            #expect(wrong.stdout.contains("authentication"))
            #expect(!(wrong.stdout + wrong.stderr).contains("not-the-password"))

            let password = sample.server.credentials!.password
            let right = try pachmigrate(
                ["migrate", "--user", "pachmigrate", "--no-backup", "--log-level", "debug"] + sample.endpoint,
                environment: ["ETCDCTL_PASSWORD": password])
            #expect(right.status == 0, "\(right.stderr)")
            #expect(!(right.stdout + right.stderr).contains(password))

            // etcdctl's form: ETCDCTL_USER=name:password, neither half of which is echoed.
            let inUser = try pachmigrate(
                ["status", "--log-level", "debug"] + sample.endpoint, environment: ["ETCDCTL_USER": "pachmigrate:\(password)"])
            #expect(inUser.status == 0, "\(inUser.stderr)")
            #expect(!(inUser.stdout + inUser.stderr).contains(password))
            let wrongInUser = try pachmigrate(
                ["status", "-o", "json"] + sample.endpoint, environment: ["ETCDCTL_USER": "pachmigrate:not-the-password"])
            #expect(wrongInUser.status == 1 && wrongInUser.stdout.contains("authentication"), "\(wrongInUser.stdout)")
            #expect(!(wrongInUser.stdout + wrongInUser.stderr).contains("not-the-password"))
            #expect(try !sample.client.range(.prefix(bytes("pachmigrate/"))).kvs.contains { text($0.value).contains(password) })
        }
    }

    @Test func lockHeldLockShowAndLockBreak() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let holder = try MigrationLock.acquire(
                store: sample.client, namespace: Namespace(),
                holder: LockHolder.current(command: "test holder", toolVersion: "t", from: "1.4.8", to: "1.5.0"),
                logger: testLogger)
            defer { holder.release() }

            let migrate = try pachmigrate(["migrate", "--no-backup"] + sample.endpoint)
            #expect(migrate.status == 3)
            #expect(migrate.stderr.contains("running `test holder`"))
            #expect(try pachydermState(sample.client) == sample.before)

            let show = try pachmigrate(["lock", "show"] + sample.endpoint)
            #expect(show.status == 0)
            #expect(show.stdout.contains("command:    test holder"))
            let showJSON = try pachmigrate(["lock", "show", "--output", "json"] + sample.endpoint)
            let lock = (showJSON.json["result"] as? [String: Any])?["lock"] as? [String: Any]
            #expect(lock?["stale"] as? Bool == false)
            // How long the lease has left, from etcd or (where it cannot say) the heartbeat.
            #expect(["etcd", "holderHeartbeat"].contains(lock?["leaseRemainingSource"] as? String ?? ""))
            #expect((1...30).contains(lock?["leaseRemainingSeconds"] as? Int ?? 0))
            #expect(show.stdout.contains("s left"))
            // The holder is this test process: alive, on this host.
            #expect(lock?["holderProcessGone"] as? Bool == false)

            let refused = try pachmigrate(["lock", "break"] + sample.endpoint)
            #expect(refused.status == 3)
            #expect(refused.stderr.contains("--force"))

            let broken = try pachmigrate(["lock", "break", "--force", "--by", "oncall@example"] + sample.endpoint)
            #expect(broken.status == 0, "\(broken.stderr)")
            #expect(try sample.client.range(RangeRequest(key: bytes("pachmigrate/lock"))).kvs.isEmpty)
            let entry = try JournalFacts(sample.client).history().last
            #expect(entry?["event"] as? String == "lock-break")
            #expect(entry?["who"] as? String == "oncall@example")
            // The broken holder notices and can no longer write.
            // (Its heartbeat and keep-alive come every TTL/3 = 10 s; a loaded machine adds seconds.)
            #expect(eventually(timeout: 30) { holder.isLost })

            let after = try pachmigrate(["migrate", "--no-backup"] + sample.endpoint)
            #expect(after.status == 0, "\(after.stderr)")
        }
    }

    @Test func waitTimesOutThenSucceeds() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let early = try pachmigrate(["wait", "--version", "1.5.0", "--timeout", "2s", "--interval", "200ms"] + sample.endpoint)
            #expect(early.status == 1)
            #expect(early.stderr.contains("timed out"))

            let waiter = try PachmigrateProcess(["wait", "--version", "1.5.0", "--timeout", "120s", "--interval", "200ms"] + sample.endpoint)
            // Migrated only once it has looked and found the cluster not ready (it says so).
            let polling = eventually(timeout: 30) { !waiter.process.isRunning || waiter.currentStderr.contains("waiting:") }
            #expect(polling && waiter.process.isRunning, "\(waiter.currentStderr)")
            let migrate = try pachmigrate(["migrate", "--no-backup", "--quiet"] + sample.endpoint)
            #expect(migrate.status == 0)
            let waited = waiter.wait(timeout: 30)
            #expect(waited.status == 0, "\(waited.stderr)")
            #expect(waited.stdout.contains("The cluster is at 1.5.0"))
        }
    }

    @Test func backupRestoreAndSnapshot() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let backup = try pachmigrate(["backup", "\(dir)/b.jsonl", "--snapshot", "\(dir)/etcd.db"] + sample.endpoint)
            #expect(backup.status == 0, "\(backup.stderr)")
            let mode = try FileManager.default.attributesOfItem(atPath: "\(dir)/b.jsonl")[.posixPermissions] as? Int
            #expect(mode == 0o600)
            // etcd's own snapshot restores (`etcdctl snapshot restore`) to the same keys,
            // values and revisions.
            let fromSnapshot = try EtcdServer.start(fromSnapshot: "\(dir)/etcd.db")
            defer { fromSnapshot.stop() }
            let recovered = try pachydermState(try fromSnapshot.makeClient())
            #expect(recovered.map { [$0.key, $0.value] } == sample.before.map { [$0.key, $0.value] })
            #expect(recovered.map(\.modRevision) == sample.before.map(\.modRevision))

            #expect(try pachmigrate(["migrate", "--no-backup", "--allow-open-commits"] + sample.endpoint).status == 0)
            let restore = try pachmigrate(["restore", "\(dir)/b.jsonl"] + sample.endpoint)
            #expect(restore.status == 0, "\(restore.stderr)")
            let restored = try pachydermState(sample.client)
            #expect(restored.map { [$0.key, $0.value] } == sample.before.map { [$0.key, $0.value] })
            #expect(try JournalFacts(sample.client).version() == nil)

            // A corrupted backup is refused before anything is written.
            var data = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/b.jsonl"))
            data[100] ^= 1
            try data.write(to: URL(fileURLWithPath: "\(dir)/b.jsonl"))
            let unrestored = try pachydermState(sample.client)
            let revision = try sample.client.status().header.revision
            let corrupt = try pachmigrate(["restore", "\(dir)/b.jsonl"] + sample.endpoint)
            #expect(corrupt.status == 1)
            #expect(corrupt.stderr.contains("sha256") || corrupt.stderr.contains("checksum"))
            // Refused before anything was written: not a key, not even the lock.
            #expect(try pachydermState(sample.client) == unrestored)
            #expect(try sample.client.status().header.revision == revision)
        }
    }

    @Test func jsonLogsAndProgressLinesOnStderrForLogCollectors() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            // Text output: under --log-format json the report too is a JSON line, on stdout.
            let result = try pachmigrate(
                ["migrate", "--backup", "\(dir)/b.jsonl", "--log-format", "json", "--log-level", "info"] + sample.endpoint)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = (result.stderr + result.stdout).split(separator: "\n")
            #expect(!lines.isEmpty)
            let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(objects.count == lines.count, "every line is a JSON object: \(lines.filter { !$0.hasPrefix("{") })")
            let progress = objects.filter { $0["message"] as? String == "progress" }
            #expect(progress.contains { $0["step"] as? String == "rewrite" })
            // Numbers as numbers. The scan has a total (every key under the roots), and
            // nothing is said before there is something to say.
            #expect(progress.contains { $0["step"] as? String == "scan" && $0["total"] as? Int == 1537 }, "\(progress)")
            // The check after the writes is a step of its own (milestones below); no one else
            // wrote, so it read no key again and made no progress line.
            #expect(!progress.contains { $0["step"] as? String == "check" }, "\(progress)")
            #expect(progress.allSatisfy { ($0["done"] as? Int ?? 0) > 0 && $0["perSecond"] is Int }, "\(progress)")
            let events = objects.compactMap { $0["event"] as? String }
            for milestone in [
                "lock-taken", "scan-started", "scan-done", "backup-written", "rewrite-started", "rewrite-done", "check-started", "check-done", "done",
                "result",
            ] {
                #expect(events.contains(milestone), "\(milestone): \(events)")
            }
            let backup = try #require(objects.first { $0["event"] as? String == "backup-written" })
            #expect((backup["sha256"] as? String)?.count == 64 && backup["keys"] is Int, "\(backup)")
            let done = try #require(objects.first { $0["event"] as? String == "done" })
            #expect(done["exitCode"] as? Int == 0 && done["elapsedSeconds"] is Double, "\(done)")
            let report = try #require(objects.first { $0["event"] as? String == "result" })
            #expect((report["result"] as? [String: Any])?["written"] as? Int ?? 0 > 0, "\(report)")
            let check = try #require((report["result"] as? [String: Any])?["check"] as? [String: Any], "\(report)")
            #expect(check["revisionsSinceStart"] as? Int ?? 0 > 0 && check["keysRead"] == nil, "\(check)")
            #expect((report["text"] as? String)?.contains("since the run started are the run's own writes: no one else wrote") == true)
            #expect((report["text"] as? String)?.contains("Migrated: ") == true)
            // The plan came before the first write, as an event of its own; the result is the summary.
            let plan = try #require(objects.first { $0["event"] as? String == "plan" })
            #expect((plan["text"] as? String)?.contains("Keys read at revision") == true, "\(plan)")
            #expect((report["text"] as? String)?.contains("Keys read at revision") == false)

            // A free lock is said so, not an empty object.
            let lock = try pachmigrate(["lock", "show", "-w", "json"] + sample.endpoint)
            #expect((lock.json["result"] as? [String: Any])?["held"] as? Bool == false, "\(lock.stdout)")
        }
    }

    /// The plan and the space check reach stdout before the first write, once; the summary
    /// at the end says how long it took and the transactions in plain words.
    @Test func planBeforeTheFirstWriteAndASummaryAfter() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let result = try pachmigrate(["migrate", "--no-backup"] + sample.endpoint)
            #expect(result.status == 0, "\(result.stderr)")
            let out = result.stdout
            #expect(out.components(separatedBy: "Keys read at revision").count == 2, "\(out)")
            #expect(out.components(separatedBy: "etcd space: ").count == 2, "\(out)")
            let keys = try #require(out.range(of: "Keys read at revision"))
            let migrated = try #require(out.range(of: "Migrated: 508 record(s) written in "))
            #expect(keys.lowerBound < migrated.lowerBound)
            #expect(out.contains("etcd transaction(s); at least 200 were needed"), "\(out)")
            // What each phase took, the check after the writes among them, as the forecast had them.
            let took = try #require(out.split(separator: "\n").first { $0.contains("took: scan ") }, "\(out)")
            #expect(took.contains("writing ") && took.contains(", check "), "\(took)")
            let forecast = try #require(out.split(separator: "\n").first { $0.contains("Time forecast from here") }, "\(out)")
            #expect(forecast.contains(", check "), "\(forecast)")
            #expect(!out.contains("txn(s)") && !out.contains("the floor"))
        }
    }

    @Test func convertOfflineWithTextAndJSONOutput() async throws {
        try await onOwnThread {
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let text = try pachmigrate(["convert", "--from", "1.4.8", SampleData.before("at-rest"), "\(dir)/out.jsonl"])
            #expect(text.status == 0, "\(text.stderr)")
            #expect(text.stdout.contains("wrote \(dir)/out.jsonl"))
            #expect(try verifyDumpChecksum(path: "\(dir)/out.jsonl").count == 64)
            let exists = try pachmigrate(["convert", "--from", "1.4.8", SampleData.before("at-rest"), "\(dir)/out.jsonl"])
            #expect(exists.status == 2)
            let json = try pachmigrate([
                "convert", "--from", "1.4.8", "--overwrite", "--output", "json", SampleData.before("busy"), "\(dir)/out.jsonl",
            ])
            #expect(json.status == 0)
            #expect(((json.json["result"] as? [String: Any])?["converted"] as? [String: Int])?["commit"] == 275)
            // Without --from the dump's records say what it is, as a cluster's do for migrate.
            let detected = try pachmigrate(["convert", SampleData.before("at-rest"), "\(dir)/detected.jsonl"])
            #expect(detected.status == 0, "\(detected.stderr)")
            #expect(detected.stdout.contains("Dump: 1.4.x (detected: its records are 1.4 text"), "\(detected.stdout)")
            // Its output is 1.5 binary throughout: detected as such.
            let converted = try pachmigrate(["convert", "-o", "json", "\(dir)/detected.jsonl", "\(dir)/again.jsonl"])
            #expect(
                ((converted.json["result"] as? [String: Any])?["detected"] as? [String: Any])?["version"] as? String == "1.5.0",
                "\(converted.stdout)")
            let old = try pachmigrate(["convert", "--from", "1.3.0", SampleData.before("busy"), "\(dir)/o2.jsonl"])
            #expect(old.status == 5)
            #expect(old.stderr.contains("1.3"))
        }
    }

    @Test func unwritableBackupIsRefusedBeforeAnyWrite() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let result = try pachmigrate(["migrate", "--backup", "/proc/no-such-dir/backup.jsonl"] + sample.endpoint)
            #expect(result.status == 1)
            #expect(result.stderr.contains("the backup /proc/no-such-dir/backup.jsonl: cannot create: No such file or directory"))
            #expect(result.stderr.contains("Nothing was written to etcd"))
            // Found before the scan (minutes on a large cluster), not after it.
            #expect(!result.stderr.contains("scan started"), "\(result.stderr)")
            #expect(try pachydermState(sample.client) == sample.before)
            #expect(try JournalFacts(sample.client).state() == nil)
            #expect(try sample.client.range(.prefix(bytes("pachmigrate/lock"))).kvs.isEmpty)
        }
    }
}
