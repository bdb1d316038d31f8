import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Foundation
import MigrationEngine
import Testing

@testable import PachydermMigrations

extension RecordCodec {
    /// A stored value (text or binary) in one form for comparisons: what it decodes to,
    /// re-encoded as `canonicalBinary` does. Two values compare equal exactly when they hold
    /// the same fields, whatever order their writer put map entries in.
    static func canonical(kind: RecordKind, key: [UInt8], value: [UInt8]) throws -> [UInt8] {
        try canonicalBinary(decode(kind: kind, key: key, value: value).record, key: key)
    }
}

/// What a repair of `start` must leave: every record equal to the policy conversion of the
/// 1.4 record it came from (`original`), every group in the order it had in `start`, the
/// records before a group's first change untouched, and everything after it re-put.
struct RepairExpectation {
    let client: EtcdClient
    /// The cluster as pachmigrate found it, in mod-revision order.
    let start: [KeyValue]
    /// The policy conversion of the original 1.4 records, compared in canonical form (map
    /// entries sorted: records Pachyderm wrote and the repair left keep Go's map order).
    let expected: [[UInt8]: [UInt8]]
    /// `openCommits/…` entries the repair must add.
    let openCommitEntries: [[UInt8]: [UInt8]]
    /// Per group, how many records the order rule writes and how many of them are unchanged.
    let writes: Int
    let keptInOrder: Int

    init(client: EtcdClient, original: [KeyValue], writeOpenCommits: Bool = false) throws {
        self.client = client
        start = try pachydermState(client)
        let plan = try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")
        let offline = OfflineConverter(layout: layout, plan: plan, writeOpenCommits: writeOpenCommits).convert(original)
        #expect(offline.report.failures.isEmpty)
        var expected: [[UInt8]: [UInt8]] = [:]
        var entries: [[UInt8]: [UInt8]] = [:]
        for kv in offline.output {
            switch layout.classify(kv.key) {
            case .record(let kind, _): expected[kv.key] = try RecordCodec.canonical(kind: kind, key: kv.key, value: kv.value)
            case .openCommit: entries[kv.key] = kv.value
            default: break
            }
        }
        self.expected = expected
        openCommitEntries = entries
        let existingEntries = Set(start.map(\.key).filter { layout.classify($0) == .openCommit })
        // The order rule, computed independently of the tool: per group, from the first record
        // whose canonical value differs from the expectation (or an open commit lacking its
        // entry), every record is written.
        var changed: Set<String> = []
        var writes = 0, kept = 0
        for kv in start {
            guard case .record(let kind, _) = layout.classify(kv.key), let group = orderingGroup(kv.key) else { continue }
            let decoded = try RecordCodec.decode(kind: kind, key: kv.key, value: kv.value)
            let canonical = try RecordCodec.canonical(kind: kind, key: kv.key, value: kv.value)
            var changes = decoded.encoding == .text14 || canonical != expected[kv.key]
            if writeOpenCommits, let commit = decoded.record.commit, commit.isOpen,
                !existingEntries.contains(layout.openCommitKey(forOpen: commit.commit))
            {
                changes = true
            }
            if changes { changed.insert(group) }
            if changed.contains(group) {
                writes += 1
                if !changes { kept += 1 }
            }
        }
        self.writes = writes
        keptInOrder = kept
    }

    func expectRepaired(_ comment: Comment? = nil) throws {
        let after = try pachydermState(client)
        let startRevision = start.map(\.modRevision).max() ?? 0
        var records = 0
        for kv in after {
            guard case .record(let kind, _) = layout.classify(kv.key) else { continue }
            records += 1
            #expect(
                try RecordCodec.canonical(kind: kind, key: kv.key, value: kv.value) == expected[kv.key],
                "\(text(kv.key)) \(comment.map { "\($0)" } ?? "")")
        }
        #expect(records == expected.count, comment)
        #expect(orderByGroup(after, group: orderingGroup) == orderByGroup(start, group: orderingGroup), comment)
        // Keys that are not records are as they were; the open commits gained their entries.
        let startKeys = Dictionary(uniqueKeysWithValues: start.map { ($0.key, $0) })
        for kv in after where orderingGroup(kv.key) == nil {
            if let was = startKeys[kv.key] {
                #expect(kv.value == was.value && kv.modRevision == was.modRevision, "\(text(kv.key))")
            } else {
                #expect(openCommitEntries[kv.key] == kv.value, "unexpected key \(text(kv.key))")
            }
        }
        for (key, value) in openCommitEntries where startKeys[key] == nil {
            #expect(after.contains { $0.key == key && $0.value == value }, "missing \(text(key))")
        }
        #expect(after.filter { orderingGroup($0.key) != nil && $0.modRevision > startRevision }.count == writes, comment)
    }
}

/// Pachyderm 1.5.0's own migration output, and clusters a 1.5 pachd wrote into, repaired.
@Suite("Repair of what another migration left")
struct RepairTests {
    /// A fresh etcd holding what Pachyderm 1.5.0's own migration made of `sample`, and what
    /// repairing it must leave. The caller stops the server.
    static func pachydermsOutput(_ sample: String, writeOpenCommits: Bool = false) throws -> (EtcdServer, EtcdClient, RepairExpectation) {
        let server = try EtcdServer.start()
        let client = try server.makeClient()
        try client.seed(dump: "\(SampleData.root)/\(sample)/after-pachyderm-1.5.0.etcd.jsonl")
        let expectation = try RepairExpectation(
            client: client, original: try SampleData.keyValues(SampleData.before(sample)), writeOpenCommits: writeOpenCommits)
        return (server, client, expectation)
    }

    @Test(arguments: ["at-rest", "busy"])
    func pachydermsOwnOutputIsRepairedToThePolicyConversion(sample: String) async throws {
        try await onOwnThread {
            let busy = sample == "busy"
            let (server, _, expectation) = try Self.pachydermsOutput(sample, writeOpenCommits: busy)
            defer { server.stop() }
            let endpoint = ["--endpoints", server.endpoint]

            // Before: verify names what a repair fixes, and plan says what migrate will do.
            let verifyBefore = try pachmigrate(["verify"] + endpoint)
            #expect(verifyBefore.status == 6)
            #expect(verifyBefore.stdout.contains("removed-fields"), "\(verifyBefore.stdout)")
            let plan = try pachmigrate(["plan", "--output", "json"] + (busy ? ["--allow-open-commits"] : []) + endpoint)
            #expect(plan.status == 0, "\(plan.stdout)\(plan.stderr)")
            let result = try #require(plan.json["result"] as? [String: Any])
            let state = try #require(result["state"] as? [String: Any])
            #expect(state["condition"] as? String == "1.5-half-done")
            let problems = (state["problems"] as? [[String: Any]] ?? []).compactMap { $0["problem"] as? String }
            #expect(problems.contains("removed-fields"))
            #expect(problems.contains("open-commit-without-entry") == busy)
            let scan = try #require(result["scan"] as? [String: Any])
            #expect(((scan["keptInOrder"] as? [String: Int]) ?? [:]).values.reduce(0, +) == expectation.keptInOrder)
            if busy {
                // Open commits without their entry are refused unless allowed, as in a normal run.
                let refused = try pachmigrate(["migrate", "--no-backup"] + endpoint)
                #expect(refused.status == 4, "\(refused.stdout)\(refused.stderr)")
            }

            let migrate = try pachmigrate(["migrate", "--no-backup", "--output", "json"] + (busy ? ["--allow-open-commits"] : []) + endpoint)
            #expect(migrate.status == 0, "\(migrate.stdout)\(migrate.stderr)")
            let migrated = try #require(migrate.json["result"] as? [String: Any])
            #expect(migrated["outcome"] as? String == "migrated")
            #expect(migrated["written"] as? Int == expectation.writes)
            #expect(migrated["keptInOrder"] as? Int == expectation.keptInOrder)
            #expect(expectation.keptInOrder > 0)
            try expectation.expectRepaired()

            let verify = try pachmigrate(["verify"] + endpoint)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
            let again = try pachmigrate(["migrate", "--no-backup"] + endpoint)
            #expect(again.status == 0)
            #expect(again.stdout.contains("Nothing to do"), "\(again.stdout)")
        }
    }

    /// Pachyderm's routine skipped what its 1.4.8 parser rejected (here: pipelines of 1.4.3
    /// and older, with `gc_policy`): those stay 1.4 text at their old revision, before the
    /// records it re-put. Repairing converts them in place and re-puts every record after
    /// them, so no group's order changes.
    @Test func recordsPachydermSkippedKeepTheirPlace() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            var original: [KeyValue] = []
            var skipped: [[UInt8]: KeyValue] = [:]
            var position: [String: Int] = [:]
            for var kv in try SampleData.keyValues(SampleData.before("at-rest")) {
                if let group = orderingGroup(kv.key) {
                    let i = position[group, default: 0]
                    position[group] = i + 1
                    if i % 4 == 1 {
                        if group == "pipelines" { kv.value += bytes("gc_policy:<success:<seconds:60 > > ") }
                        skipped[kv.key] = kv
                    }
                }
                original.append(kv)
            }
            #expect(skipped.keys.contains { text($0).hasPrefix("pachyderm_pps/pipelines/") })
            let after = try SampleData.keyValues("\(SampleData.root)/at-rest/after-pachyderm-1.5.0.etcd.jsonl")
            let start = after.map { skipped[$0.key] ?? $0 }.enumerated()
                .sorted { ($0.element.modRevision, $0.offset) < ($1.element.modRevision, $1.offset) }.map(\.element)
            try client.seed(start)
            let expectation = try RepairExpectation(client: client, original: original)
            let migrate = try pachmigrate(["migrate", "--no-backup", "--output", "json", "--endpoints", server.endpoint])
            #expect(migrate.status == 0, "\(migrate.stdout)\(migrate.stderr)")
            let result = try #require(migrate.json["result"] as? [String: Any])
            #expect(result["written"] as? Int == expectation.writes)
            #expect(result["keptInOrder"] as? Int == expectation.keptInOrder)
            try expectation.expectRepaired()
            let verify = try pachmigrate(["verify", "--endpoints", server.endpoint])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }
    }

    /// A clean 1.5 cluster no pachmigrate run stamped (this tool's own output, restored
    /// elsewhere): every record is checked, nothing is written but the stamp, verify passes.
    @Test func cleanUnstampedClusterIsCheckedAndLeftAlone() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            let plan = try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")
            try client.seed(OfflineConverter(layout: layout, plan: plan).convert(try SampleData.keyValues(SampleData.before("at-rest"))).output)
            let start = try pachydermState(client)
            let endpoint = ["--endpoints", server.endpoint]
            let planned = try pachmigrate(["plan", "--output", "json"] + endpoint)
            let result = try #require(planned.json["result"] as? [String: Any])
            #expect((result["state"] as? [String: Any])?["condition"] as? String == "1.5-clean", "\(planned.stdout)")
            #expect(((result["scan"] as? [String: Any])?["toRewrite"] as? [String: Int]) == [:])
            let migrate = try pachmigrate(["migrate", "--no-backup"] + endpoint)
            #expect(migrate.status == 0, "\(migrate.stderr)")
            #expect(migrate.stdout.contains("Nothing to do: every record is clean"), "\(migrate.stdout)")
            #expect(try pachydermState(client) == start)
            #expect(try JournalFacts(client).version() == "1.5.0")
            let verify = try pachmigrate(["verify"] + endpoint)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }
    }

    /// The at-rest sample where part of each group is already clean 1.5 (as a 1.5 pachd or
    /// this tool writes it): every third record in place, and every fifth rewritten after
    /// the 1.4 records. Clean records after a group's first 1.4 record are re-put in order.
    @Test func partlyCleanClusterKeepsEveryGroupsOrder() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            let original = try SampleData.keyValues(SampleData.before("at-rest"))
            let plan = try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")
            let converted = valuesByKeyBytes(OfflineConverter(layout: layout, plan: plan).convert(original).output)
            var kvs: [KeyValue] = []
            var moved: [KeyValue] = []
            var position: [String: Int] = [:]
            for var kv in original {
                guard let group = orderingGroup(kv.key) else {
                    kvs.append(kv)
                    continue
                }
                let i = position[group, default: 0]
                position[group] = i + 1
                if i % 5 == 4 {
                    kv.value = converted[kv.key]!
                    moved.append(kv)
                    continue
                }
                if i % 3 == 0 { kv.value = converted[kv.key]! }
                kvs.append(kv)
            }
            var revision = (original.map(\.modRevision).max() ?? 0) + 1
            for var kv in moved {
                kv.modRevision = revision
                revision += 1
                kvs.append(kv)
            }
            try client.seed(kvs)
            let expectation = try RepairExpectation(client: client, original: original)
            let migrate = try pachmigrate(["migrate", "--no-backup", "--output", "json", "--endpoints", server.endpoint])
            #expect(migrate.status == 0, "\(migrate.stdout)\(migrate.stderr)")
            let result = try #require(migrate.json["result"] as? [String: Any])
            #expect((result["state"] as? [String: Any])?["condition"] as? String == "partly-migrated")
            #expect(result["written"] as? Int == expectation.writes)
            #expect(result["keptInOrder"] as? Int == expectation.keptInOrder)
            #expect(expectation.keptInOrder > 0)
            try expectation.expectRepaired()
            let verify = try pachmigrate(["verify", "--endpoints", server.endpoint])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }
    }

    /// A repair stopped after `stopAfter` writes (in process, deterministic) and resumed ends
    /// as an uninterrupted repair: same values, same order, the lane tails it started finished.
    @Test(arguments: [1, 37, 150])
    func repairStoppedMidRunResumesToTheSameResult(stopAfter: Int) async throws {
        try await onOwnThread {
            let (server, client, expectation) = try Self.pachydermsOutput("at-rest")
            defer { server.stop() }
            func migrator() throws -> Migrator {
                let migration = PachydermRecordMigration(
                    layout: layout, plan: try VersionPlanner.repairPlan(at: "1.5.0", to: "1.5.0"),
                    openCommitEntries: try ClusterInspection.openCommitEntries(store: client, layout: layout))
                return Migrator(store: client, migration: migration, namespace: Namespace(), logger: testLogger)
            }
            var options = MigrationOptions(backup: .none)
            options.concurrency = 2
            let stop = StopSignal()
            let error = #expect(throws: MigrationError.self) {
                try migrator().run(options: options, stop: stop) { event in
                    if event.step == .rewrite && event.done >= stopAfter { stop.stop() }
                }
            }
            // Stopped on request; on a swamped machine (load 100 seen with etcd 3.1.4) the lock's
            // keep-alive can miss its TTL first. Both stop resumably, which is what is tested.
            #expect(error?.code == .interrupted || error?.code == .leaseLost, "\(String(describing: error))")
            let resumed = try migrator().run(options: options)
            #expect(resumed.resumed)
            try expectation.expectRepaired("stopped after \(stopAfter)")
            let counts = try JournalFacts(client).lastMigrateCounts() ?? [:]
            #expect(counts.filter { $0.key.hasPrefix("kept-in-order-") }.values.reduce(0, +) == expectation.keptInOrder)
        }
    }

    /// The executable killed mid-repair, then the same command again.
    @Test func repairKilledMidRunThenResumed() async throws {
        try await onOwnThread {
            let (server, client, expectation) = try Self.pachydermsOutput("at-rest")
            defer { server.stop() }
            let endpoint = ["--endpoints", server.endpoint]
            let run = try PachmigrateProcess(["migrate", "--no-backup", "--lock-ttl", "5", "--concurrency", "1"] + endpoint)
            #expect(waitUntilWriting(client, run))
            run.signal(SIGKILL)
            _ = run.wait()
            let resumed = try pachmigrate(["migrate", "--no-backup", "--wait-lock", "60s", "--lock-ttl", "5", "--output", "json"] + endpoint)
            #expect(resumed.status == 0, "\(resumed.stdout)\(resumed.stderr)")
            #expect((resumed.json["result"] as? [String: Any])?["resumed"] as? Bool == true, "\(resumed.stdout)")
            try expectation.expectRepaired()
            let verify = try pachmigrate(["verify"] + endpoint)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }
    }
}
