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

            let seeded = try tight.client.status().header.revision
            let refused = try pachmigrate(["migrate", "--no-backup"] + quota + tight.endpoint)
            #expect(refused.status == 9, "\(refused.stderr)")
            #expect(refused.stderr.contains("etcd would run out of space"))
            #expect(refused.stderr.contains("--compact"))
            // The preflight's refusal, not etcd's NOSPACE mid-run (which exits 9 too): no
            // alarm, its estimate in the message, nothing written.
            #expect(!refused.stderr.contains("NOSPACE"), "\(refused.stderr)")
            #expect(refused.stderr.contains("nothing was written"), "\(refused.stderr)")
            // The revision to compact to is the one the run read (its lock came after), not a placeholder.
            let compactTo = refused.stderr.firstMatch(of: /etcdctl compact (\d+) --physical/).flatMap { Int64($0.1) }
            #expect(try (seeded..<tight.client.status().header.revision).contains(compactTo ?? 0), "\(refused.stderr)")
            #expect(try tight.client.alarms().isEmpty)
            #expect(try pachydermState(tight.client) == tight.expectation.before)
            #expect(try tight.client.range(.prefix(bytes("pachmigrate/state"))).kvs.isEmpty)

            let planCompact = try pachmigrate(["plan", "--compact"] + quota + tight.endpoint)
            #expect(planCompact.status == 0, "\(planCompact.stdout)\(planCompact.stderr)")
            // A second copy does not fit: the run will make room by compacting and defragmenting.
            #expect(planCompact.stdout.contains("defragments every member"), "\(planCompact.stdout)")
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
            let revision = try #require(message.firstMatch(of: /\ compact (\d+) --physical/).flatMap { Int64($0.1) })
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
            // With etcd's real quota this time (the remedy asks for it): the guard then keeps
            // the rest of the run under it.
            let resumed = try pachmigrate(
                [
                    "migrate", "--no-backup", "--etcd-quota", "\(tight.quota)", "--lock-ttl", "10", "--compact", "--wait-lock", "30s", "--output",
                    "json",
                ] + tight.endpoint)
            #expect(resumed.status == 0, "quota \(tight.quota), after the remedy \(afterRemedy): \(resumed.stdout.suffix(3000))")
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

/// The space guard on generated clusters (records of real kinds and sizes), at quotas of
/// 1.15× and 1.3× the loaded, defragmented backend: `--compact` completes with no alarm at
/// any moment; what cannot fit is refused before the first write, or stopped before etcd's
/// quota with the cluster writable, and resumes once there is room.
@Suite("The space guard")
struct SpaceGuardTests {
    /// A single-member etcd loaded with a generated cluster, defragmented, then restarted
    /// with `--quota-backend-bytes` at `factor` × its backend.
    struct Loaded {
        let server: EtcdServer
        let client: EtcdClient
        let root: EtcdClient
        let expectation: MigrationExpectation
        let loadedBytes: Int64
        var quota: Int64

        init(keys: Int, factor: Double, auth: Bool = false) throws {
            server = try EtcdServer.start(auth: auth)
            client = try server.makeClient()
            root = try server.makeClient(credentials: server.rootCredentials)
            try root.seed(try generatedCluster(keys: keys))
            try runCommand(EtcdBinaries.etcdctl, ["--endpoints=\(server.endpoint)"] + Self.rootFlags(server) + ["defrag"])
            expectation = MigrationExpectation(client: root, before: try pachydermState(root), counts: nil)
            loadedBytes = try root.status().dbSize
            quota = Int64(Double(loadedBytes) * factor)
            try server.restart(extraArgs: ["--quota-backend-bytes", "\(quota)"])
        }

        static func rootFlags(_ server: EtcdServer) -> [String] {
            server.rootCredentials.map { ["--user", "\($0.user):\($0.password)"] } ?? []
        }

        mutating func raiseQuota(to factor: Double) throws {
            quota = Int64(Double(loadedBytes) * factor)
            try server.restart(extraArgs: ["--quota-backend-bytes", "\(quota)"])
        }

        var flags: [String] { ["--endpoints", server.endpoint, "--etcd-quota", "\(quota)"] }
        func watch() throws -> SpaceWatch { try SpaceWatch(endpoints: [server.endpoint], credentials: server.rootCredentials) }
    }

    @Test(arguments: [(keys: 10_000, factor: 1.15), (keys: 25_000, factor: 1.15), (keys: 10_000, factor: 1.3)])
    func compactCompletesWithNoAlarmAtAnyMoment(keys: Int, factor: Double) async throws {
        try await onOwnThread {
            let loaded = try Loaded(keys: keys, factor: factor)
            defer { loaded.server.stop() }

            // Without --compact a second copy of the records does not fit: refused, nothing written.
            let plain = try pachmigrate(["migrate", "--no-backup"] + loaded.flags)
            #expect(plain.status == 9, "\(plain.stderr)")
            #expect(plain.stderr.contains("nothing was written"), "\(plain.stderr)")
            #expect(try pachydermState(loaded.root) == loaded.expectation.before)

            let plan = try pachmigrate(["plan", "--compact"] + loaded.flags)
            #expect(plan.status == 0, "\(plan.stdout)\(plan.stderr)")
            #expect(plan.stdout.contains("defragments every member"), "\(plan.stdout)")

            let watch = try loaded.watch()
            let run = try pachmigrate(["migrate", "--no-backup", "--compact", "--output", "json"] + loaded.flags, timeout: 600)
            let seen = watch.stop()
            #expect(run.status == 0, "\(run.stderr.suffix(2000))")
            #expect(seen.alarms.isEmpty, "alarms raised during the run: \(seen.alarms)")
            #expect(seen.peak < loaded.quota, "peak \(seen.peak) of quota \(loaded.quota)")
            #expect(seen.reads > 20)
            let guardReport = (run.json["result"] as? [String: Any])?["spaceGuard"] as? [String: Any]
            #expect(guardReport?["mode"] as? String == "compactionAndDefragmentation", "\(run.stdout.prefix(3000))")
            if factor < 1.2 { #expect((guardReport?["rounds"] as? Int ?? 0) >= 1, "\(guardReport ?? [:])") }
            #expect(try loaded.root.alarms().isEmpty)
            try loaded.expectation.expectMigratedLikeAnUninterruptedRun()
        }
    }

    /// A quota that leaves less room than a round needs, even defragmented: refused before
    /// the first write; with a larger quota the same command completes.
    @Test func tooSmallEvenForCompactIsRefusedThenFitsWithMoreRoom() async throws {
        try await onOwnThread {
            var loaded = try Loaded(keys: 8_000, factor: 1.03)
            defer { loaded.server.stop() }
            let refused = try pachmigrate(["migrate", "--no-backup", "--compact"] + loaded.flags)
            #expect(refused.status == 9, "\(refused.stderr)")
            #expect(refused.stderr.contains("even compacted and defragmented"), "\(refused.stderr)")
            #expect(refused.stderr.contains("nothing was written"), "\(refused.stderr)")
            #expect(try pachydermState(loaded.root) == loaded.expectation.before)
            #expect(try loaded.root.alarms().isEmpty)

            try loaded.raiseQuota(to: 1.3)
            let watch = try loaded.watch()
            let run = try pachmigrate(["migrate", "--no-backup", "--compact"] + loaded.flags, timeout: 600)
            #expect(watch.stop().alarms.isEmpty)
            #expect(run.status == 0, "\(run.stderr.suffix(2000))")
            try loaded.expectation.expectMigratedLikeAnUninterruptedRun()
        }
    }

    /// A user who may not defragment (not root, auth on). On 3.4 it may read each member's
    /// size: the preflight says --compact can only compact, and the run either fits or is
    /// stopped before etcd's quota (exit 9, cluster writable), then resumes with more room.
    /// On 3.1.4 it may not even read the sizes: the preflight says the run cannot stop itself.
    @Test func userWhoMayNotDefragmentIsToldWhatCompactWillDo() async throws {
        try await onOwnThread {
            var loaded = try Loaded(keys: 8_000, factor: 1.3, auth: true)
            defer { loaded.server.stop() }
            let password = try #require(loaded.server.credentials?.password)
            let user = ["--user", "pachmigrate"]
            let environment = ["ETCDCTL_PASSWORD": password]
            let plan = try pachmigrate(["plan", "--compact"] + user + loaded.flags, environment: environment)
            if EtcdBinaries.version < EtcdVersion(3, 2) {
                #expect(plan.stdout.contains("cannot stop itself"), "\(plan.stdout)\(plan.stderr)")
                #expect(plan.stdout.contains("cannot defragment"), "\(plan.stdout)")
                return
            }
            #expect(plan.stdout.contains("may not defragment"), "\(plan.stdout)\(plan.stderr)")

            let watch = try loaded.watch()
            let run = try pachmigrate(["migrate", "--no-backup", "--compact"] + user + loaded.flags, environment: environment, timeout: 600)
            #expect(watch.stop().alarms.isEmpty)
            #expect([0, 9].contains(run.status), "\(run.stderr.suffix(2000))")
            if run.status == 9 {
                #expect(run.stderr.contains("stopped before etcd's space quota"), "\(run.stderr)")
                // Writable: the guard stopped the run, not etcd.
                try loaded.root.put(PutRequest(key: bytes("scratch/probe"), value: bytes("1")))
                try loaded.raiseQuota(to: 2.5)
                let resumed = try pachmigrate(
                    ["migrate", "--no-backup", "--compact", "--wait-lock", "60s"] + user + loaded.flags, environment: environment,
                    timeout: 600)
                #expect(resumed.status == 0, "\(resumed.stderr.suffix(2000))")
            }
            try loaded.expectation.expectMigratedLikeAnUninterruptedRun()
        }
    }

    /// Three members: each is watched and defragmented, followers first and the leader last.
    @Test(.enabled(if: EtcdBinaries.version < EtcdVersion(3, 2), "three members on the etcd Pachyderm 1.4 and 1.5 deploy"))
    func threeMembersAreEachDefragmentedLeaderLast() async throws {
        try await onOwnThread {
            let kvs = try generatedCluster(keys: 8_000)
            // The loaded size, learnt on a single member first.
            let probe = try EtcdServer.start()
            let probeClient = try probe.makeClient()
            try probeClient.seed(kvs)
            try runCommand(EtcdBinaries.etcdctl, ["--endpoints=\(probe.endpoint)", "defrag"])
            let quota = Int64(Double(try probeClient.status().dbSize) * 1.2)
            probe.stop()

            let cluster = try EtcdCluster.start(members: 3, extraArgs: ["--quota-backend-bytes", "\(quota)"])
            defer { cluster.stop() }
            let client = try cluster.makeClient()
            try client.seed(kvs)
            try runCommand(EtcdBinaries.etcdctl, ["--endpoints=\(cluster.endpoints.joined(separator: ","))", "defrag"])
            let expectation = MigrationExpectation(client: client, before: try pachydermState(client), counts: nil)
            let watch = try SpaceWatch(endpoints: cluster.endpoints)
            let run = try pachmigrate(
                [
                    "migrate", "--no-backup", "--compact", "--log-level", "info", "--output", "json", "--etcd-quota", "\(quota)", "--endpoints",
                    cluster.endpoints.joined(separator: ","),
                ], timeout: 600)
            let seen = watch.stop()
            #expect(run.status == 0, "\(run.stderr.suffix(2000))")
            #expect(seen.alarms.isEmpty, "\(seen.alarms)")
            let guardReport = try #require((run.json["result"] as? [String: Any])?["spaceGuard"] as? [String: Any])
            let rounds = guardReport["rounds"] as? Int ?? 0
            #expect(rounds >= 1, "\(guardReport)")
            #expect(guardReport["defragmentations"] as? Int == 3 * rounds)
            // Each round's log line names the members in the order defragmented, and the leader.
            let roundLines = run.stderr.split(separator: "\n").filter { $0.contains("compacted and defragmented") }
            #expect(roundLines.count == rounds)
            for line in roundLines {
                let leader = try #require(line.firstMatch(of: /leader=(\w+)/)?.1)
                let order = try #require(line.firstMatch(of: /members=\[([^\]]*)\]/)?.1)
                #expect(order.split(separator: ",").last?.contains(leader) == true, "\(line)")
            }
            try expectation.expectMigratedLikeAnUninterruptedRun()
        }
    }
}
