import EtcdGateway
import EtcdTestSupport
import Foundation
import Testing

/// etcd's space quota: a cluster whose quota leaves room for less than a second copy of
/// its records (1.3× its loaded backend, as measured in the gateway notes).
@Suite("etcd's space quota")
struct SpaceTests {
    /// A scaled sample (about 10k records) on an etcd restarted with a quota of 1.3× its
    /// loaded backend.
    struct TightServer {
        let server: EtcdServer
        let client: EtcdClient
        let expectation: MigrationExpectation
        let quota: Int64

        init() throws {
            server = try EtcdServer.start()
            client = try server.makeClient()
            try client.seed(try scaledSample(20))
            expectation = MigrationExpectation(client: client, before: try pachydermState(client), counts: nil)
            quota = try client.status().dbSize * 13 / 10
            try server.restart(extraArgs: ["--quota-backend-bytes", "\(quota)"])
        }

        var endpoint: [String] { ["--endpoints", server.endpoint] }
    }

    @Test func preflightRefusesBeforeAnyWriteAndCompactFits() async throws {
        try await onOwnThread {
            let tight = try TightServer()
            defer { tight.server.stop() }
            let quota = ["--etcd-quota", "\(tight.quota)"]

            let plan = try pachmigrate(["plan", "--output", "json"] + quota + tight.endpoint)
            #expect(plan.status == 9, "\(plan.stdout)\(plan.stderr)")
            let space = (plan.json["result"] as? [String: Any])?["space"] as? [String: Any]
            #expect(space?["quotaBytes"] as? Int == Int(tight.quota))
            #expect((space?["projectedBytes"] as? Int ?? 0) > Int(tight.quota))

            let refused = try pachmigrate(["migrate", "--no-backup"] + quota + tight.endpoint)
            #expect(refused.status == 9, "\(refused.stderr)")
            #expect(refused.stderr.contains("etcd would run out of space"))
            #expect(refused.stderr.contains("--compact"))
            // The preflight's refusal, not etcd's NOSPACE mid-run (which exits 9 too): no
            // alarm, its estimate in the message, nothing written.
            #expect(!refused.stderr.contains("NOSPACE"), "\(refused.stderr)")
            #expect(refused.stderr.contains("nothing was written"), "\(refused.stderr)")
            #expect(try tight.client.alarms().isEmpty)
            #expect(try pachydermState(tight.client) == tight.expectation.before)
            #expect(try tight.client.range(.prefix(bytes("pachmigrate/state"))).kvs.isEmpty)

            let planCompact = try pachmigrate(["plan", "--compact"] + quota + tight.endpoint)
            #expect(planCompact.status == 0, "\(planCompact.stdout)\(planCompact.stderr)")
            // Were compaction to free nothing, a second copy would not fit: the plan says so.
            #expect(planCompact.stdout.contains("fits only if compaction frees"), "\(planCompact.stdout)")
            let compacted = try pachmigrate(["migrate", "--no-backup", "--compact", "--output", "json"] + quota + tight.endpoint)
            #expect(compacted.status == 0, "\(compacted.stderr)")
            #expect(((compacted.json["result"] as? [String: Any])?["compactions"] as? Int ?? 0) > 1)
            #expect(try tight.client.alarms().isEmpty)
            try tight.expectation.expectMigratedLikeAnUninterruptedRun()
        }
    }

    /// The estimate is off (the operator claims a larger quota): etcd raises NOSPACE mid-run.
    /// The run stops with exit 9 and the remedy; once the remedy is applied, the command
    /// resumes (with --compact, as the remedy says) and ends as an uninterrupted run would.
    @Test func nospaceMidRunStopsResumablyWithTheRemedy() async throws {
        try await onOwnThread {
            let tight = try TightServer()
            defer { tight.server.stop() }
            let command = ["migrate", "--no-backup", "--etcd-quota", "100GiB", "--lock-ttl", "10"] + tight.endpoint

            let stopped = try pachmigrate(command + ["--output", "json"])
            #expect(stopped.status == 9, "\(stopped.stdout)\(stopped.stderr)")
            let message = ((stopped.json["error"] as? [String: Any])?["message"] as? String) ?? ""
            #expect(message.contains("NOSPACE"))
            // etcd's NOSPACE mid-run, not the preflight's refusal (which exits 9 too): the
            // preflight passed, records were written before the alarm, and it is raised.
            #expect(!message.contains("would run out of space"), "\(message)")
            #expect((stopped.json["error"] as? [String: Any])?["code"] as? String == "outOfSpace", "\(stopped.stdout)")
            #expect(try JournalFacts(tight.client).lanesLeft() > 0, "no record was written before NOSPACE")
            #expect(try !tight.client.alarms().isEmpty)
            let status = try pachmigrate(["status"] + tight.endpoint)
            #expect(status.stdout.contains("NOSPACE"), "\(status.stdout)")

            // The printed remedy, applied as an operator would.
            let revision = try #require(message.firstMatch(of: /etcdctl compact (\d+) --physical/).flatMap { Int64($0.1) })
            let ctl = ["--endpoints=\(tight.server.endpoint)"]
            try runCommand(EtcdBinaries.etcdctl, ctl + ["compact", "\(revision)", "--physical"])
            try runCommand(EtcdBinaries.etcdctl, ctl + ["defrag"])
            try runCommand(EtcdBinaries.etcdctl, ctl + ["alarm", "disarm"])
            #expect(try tight.client.alarms().isEmpty)

            // The lock's lease may have outlived the stopped run (NOSPACE refuses most writes).
            // As printed: the same command, with --compact. (Without it, the rest of the run
            // would fill the room the remedy made again: measured, 3,471 of 6,912 records.)
            #expect(message.contains("with --compact"))
            let afterRemedy = try tight.client.status().dbSize
            let resumed = try pachmigrate(command + ["--compact", "--wait-lock", "30s", "--output", "json"])
            #expect(resumed.status == 0, "quota \(tight.quota), after the remedy \(afterRemedy): \(resumed.stderr.suffix(1500))")
            #expect((resumed.json["result"] as? [String: Any])?["resumed"] as? Bool == true)
            #expect(try tight.client.alarms().isEmpty)
            try tight.expectation.expectMigratedLikeAnUninterruptedRun()
        }
    }
}

@Suite("etcd maintenance during a run")
struct MaintenanceTests {
    /// Defragmenting the member in use stalls it; the run rides it out or stops resumably
    /// (exit 7), and either way ends as an uninterrupted run would.
    @Test func defragmentationMidRunIsRiddenOutOrResumed() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let run = try PachmigrateProcess(["migrate", "--no-backup", "--concurrency", "1"] + sample.endpoint)
            #expect(waitUntilWriting(sample.client, run))
            try runCommand(EtcdBinaries.etcdctl, ["--endpoints=\(sample.server.endpoint)", "defrag"])
            let first = run.wait()
            #expect([0, 7].contains(first.status), "\(first.stderr)")
            if first.status == 7 {
                let rerun = try pachmigrate(["migrate", "--no-backup", "--wait-lock", "60s"] + sample.endpoint)
                #expect(rerun.status == 0, "\(rerun.stderr)")
            }
            try sample.expectMigratedLikeAnUninterruptedRun()
        }
    }
}
