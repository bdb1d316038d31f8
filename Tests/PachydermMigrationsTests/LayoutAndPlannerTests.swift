import EtcdGateway
import EtcdTestSupport
import MigrationEngine
import Foundation
import PachydermMigrations
import PachydermSchema
import Testing

extension Read14_JobInfo {
    fileprivate var finishedTime: Date? { hasFinished ? finished.date : nil }
}

@Suite("Key layout")
struct LayoutTests {
    static let keys: [(String, PachydermKeyClass)] = [
        ("pachyderm_pfs/repos/images", .record(.repo, group: nil)),
        ("pachyderm_pfs/commits/images/3c7bd3d8df074ff08834e197a4034aa4", .record(.commit, group: "images")),
        ("pachyderm_pfs/branches/edges/master-v1", .record(.branch, group: "edges")),
        ("pachyderm_pps/pipelines/edges", .record(.pipeline, group: nil)),
        ("pachyderm_pps/jobs/650af24c-56d0-400a-8691-332088a805bd", .record(.job, group: nil)),
        ("pachyderm_pfs/repos__index_{Provenance %!s(bool=true)}/name:\"images\" /log-errors", .indexKey(collection: "repos")),
        (
            "pachyderm_pfs/commits/edges__index_{Provenance %!s(bool=true)}/repo:<name:\"images\" > id:\"30\" /3d7f",
            .indexKey(collection: "commits/edges")
        ),
        ("pachyderm_pps/jobs__index_{Pipeline %!s(bool=false)}/name:\"p\" /j1", .indexKey(collection: "jobs")),
        ("pachyderm_pps/jobs__index_{Stopped %!s(bool=false)}/%!s(bool=true)/j1", .indexKey(collection: "jobs")),
        ("pachyderm_pps/pipelines__index_{Stopped %!s(bool=false)}/%!s(bool=false)/log-errors", .indexKey(collection: "pipelines")),
        ("pachyderm_pfs/repoRefCounts/raw_logs", .repoRefCount),
        ("pachyderm_pfs/scratch/images/3c7b/a/b.txt/uuid", .scratch),
        ("pachyderm_pps/workers/pipeline-edges-v1/10.0.0.1", .worker),
        ("pachyderm_pfs/openCommits/3c7bd3d8df074ff08834e197a4034aa4", .openCommit),
        ("pachyderm_pps/_master_lock/694d4b", .other),
        ("pachyderm_pfs/repos/", .other),
        ("pachyderm_pfs/commits/images", .other),
        ("pachyderm_pfsx/repos/images", .other),
        ("other/pachyderm_pfs/repos/images", .other),
    ]

    @Test(arguments: keys)
    func classify(key: String, expected: PachydermKeyClass) {
        #expect(layout.classify(Array(key.utf8)) == expected)
    }

    @Test("custom prefixes; ranges use the collection prefix with its slash")
    func customPrefixes() {
        let custom = PachydermLayout(pfsPrefix: "team/pfs", ppsPrefix: "team/pps")
        #expect(custom.classify(Array("team/pps/jobs/j".utf8)) == .record(.job, group: nil))
        #expect(custom.classify(Array("pachyderm_pps/jobs/j".utf8)) == .other)
        #expect(custom.collectionPrefix(.job) == Array("team/pps/jobs/".utf8))
        #expect(layout.collectionPrefix(.commit) == Array("pachyderm_pfs/commits/".utf8))
        for kind in RecordKind.allCases { #expect(layout.collectionPrefix(kind).last == UInt8(ascii: "/")) }
    }

    @Test("every sample key classifies as its meta.json counts say", arguments: ["at-rest", "busy"])
    func sampleCounts(sample: String) throws {
        var records = 0, index = 0, refCounts = 0, other = 0
        for kv in try SampleData.keyValues(before: sample) {
            switch layout.classify(kv.key) {
            case .record: records += 1
            case .indexKey: index += 1
            case .repoRefCount: refCounts += 1
            default: other += 1
            }
        }
        #expect(records == (sample == "at-rest" ? 508 : 510))
        #expect(index == 1018 || sample == "busy")
        #expect(refCounts == 11 && other == 0)
    }
}

@Suite("Version planner")
struct PlannerTests {
    @Test(
        "every 1.4 patch level and the wildcard plan one step to 1.5.0",
        arguments: (0...9).map { "1.4.\($0)" } + ["1.4.x", "v1.4.8", "1.4"])
    func from14(version: String) throws {
        let plan = try VersionPlanner.plan(from: version, to: "1.5.0")
        #expect(plan.needsRewrite)
        #expect(plan.steps.map(\.name) == ["pachyderm-1.4.x-to-1.5.0"])
        #expect(plan.steps[0].kinds == Set(RecordKind.allCases))
    }

    @Test("1.5 patch levels need no rewrite", arguments: [("1.5.0", "1.5.2"), ("1.5.0", "1.5.0"), ("1.5.1", "1.5.3")])
    func within15(from: String, to: String) throws {
        let plan = try VersionPlanner.plan(from: from, to: to)
        #expect(!plan.needsRewrite)
        #expect(plan.summary.contains("no record needs rewriting"))
    }

    @Test("1.4.x to a later 1.5 patch: the 1.5.0 step, then nothing")
    func to153() throws {
        let plan = try VersionPlanner.plan(from: "1.4.8", to: "1.5.3")
        #expect(plan.steps.count == 1)
        #expect(plan.summary.contains("1.5.0 → 1.5.3 needs no rewrite"))
    }

    @Test(
        "refused paths say why",
        arguments: [
            ("1.3.0", "1.5.0", VersionPlanError.Code.unsupportedSource, "no migration script"),
            ("1.2.5", "1.5.0", .unsupportedSource, "1.3 and older"),
            ("1.4.10", "1.5.0", .unknownVersion, "not a release"),
            ("1.6.0", "1.7.0", .unknownVersion, "not a release"),
            ("1.4.8", "1.6.0", .unknownVersion, "not a release"),
            ("banana", "1.5.0", .unknownVersion, "not a Pachyderm version"),
            ("1.4.8", "1.4.9", .unsupportedPath, "nothing to migrate"),
        ])
    func refused(from: String, to: String, code: VersionPlanError.Code, says: String) throws {
        let error = try #require(throws: VersionPlanError.self) { try VersionPlanner.plan(from: from, to: to) }
        #expect(error.code == code)
        #expect(error.message.contains(says), "\(error.message)")
    }
}

@Suite("Accessors for at-rest checks and the reprocessing forecast")
struct AccessorTests {
    @Test("busy sample: open commits, starting/running jobs, pipelines with env")
    func busySample() throws {
        var openCommits: [String] = [], active: [String] = [], envPipelines: [String: [String]] = [:]
        var dataTotals: [String: Int64] = [:]
        for kv in try SampleData.keyValues(before: "busy") {
            guard case .record(let kind, _) = layout.classify(kv.key) else { continue }
            let record = try RecordCodec.decode(kind: kind, key: kv.key, value: kv.value).record
            if let commit = record.commit, commit.isOpen {
                openCommits.append("\(commit.repoName)/\(commit.commitID)")
                let entry = try layout.openCommitEntry(forOpen: commit.commit)
                #expect(entry.key == Array("pachyderm_pfs/openCommits/\(commit.commitID)".utf8))
                let value = try Pach150_Commit(serializedBytes: entry.value)
                #expect(value.repo.name == commit.commit.repo.name && value.id == commit.commit.id)
            }
            if let job = record.job {
                if job.isStartingOrRunning { active.append(job.stateName) }
                if job.state == .jobSuccess, let name = job.pipelineName, job.finishedTime != nil {
                    dataTotals[name] = job.dataTotal
                }
            }
            if let pipeline = record.pipeline, !pipeline.envNames.isEmpty {
                envPipelines[pipeline.pipelineName] = pipeline.envNames
            }
        }
        #expect(openCommits.count == 2)
        #expect(active.sorted() == ["JOB_RUNNING", "JOB_RUNNING", "JOB_STARTING"])
        #expect(envPipelines["edges"] == ["EMPTY", "GREETING", "LOG_LEVEL"])
        #expect(envPipelines["montage"] == ["A", "Z", "Ω"])
        #expect(!dataTotals.isEmpty)
    }

    /// The scan's single pass (`examine`) finds what the decoded records say: the findings
    /// and the forecast match the fixture's own facts (listed in the test above and in
    /// `busy/after-pachyderm-1.5.0.decoded.jsonl`).
    @Test("busy sample through the scan's examine: findings and reprocessing forecast")
    func busySampleExamined() throws {
        let migration = PachydermRecordMigration(layout: layout, plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0"))
        var findings: [AtRestFinding] = []
        var tally = PachydermScanTally()
        for kv in try SampleData.keyValues(before: "busy") {
            if case .record(_, let conversion) = migration.examine(kv, findings: &findings, tally: &tally) { _ = try conversion.get() }
        }
        let kinds = Dictionary(grouping: findings, by: \.kind).mapValues(\.count)
        #expect(kinds[.openCommit] == 2 && kinds[.runningJob] == 3)
        let blocking = findings.filter { $0.kind == .openCommit || $0.kind == .runningJob }.map(\.blocking)
        #expect(blocking == Array(repeating: true, count: 5))
        let forecast = tally.forecast.pipelines
        #expect(forecast.map(\.pipeline) == ["edges", "join", "montage", "wordcount"])
        #expect(forecast.map(\.envNames) == [["EMPTY", "GREETING", "LOG_LEVEL"], ["AWS_REGION"], ["A", "Z", "Ω"], ["JSON", "PATH_EXTRA"]])
        // The newest finished job of each (2017-05-03 at 20:05:26, 18:23:34, 21:53:42, 18:21:45).
        #expect(
            forecast.map(\.newestFinishedJob) == [
                "8ec42918-6477-405b-aab0-4ddfc0977016", "a3cd31c2-7331-4492-ba65-c032d0d3b513",
                "410bbc56-cf31-4b30-b2a8-7204d454542d", "7cc33d22-6cca-4ea2-83e5-e16399678895",
            ])
        #expect(forecast.map(\.dataTotal) == [2, 2966, 59, 6])
    }

    @Test("a finished commit needs no openCommits entry")
    func finishedCommit() throws {
        let record = try RecordCodec.decode(
            kind: .commit, key: Array("pachyderm_pfs/commits/r/c".utf8),
            value: Array(#"commit:<repo:<name:"r" > id:"c" > finished:<seconds:2 > "#.utf8)
        ).record
        let commit = try #require(record.commit)
        #expect(!commit.isOpen && commit.repoName == "r" && commit.commitID == "c")
    }

    @Test("job accessors")
    func job() throws {
        let job = try #require(
            try RecordCodec.decode(
                kind: .job, key: Array("pachyderm_pps/jobs/j".utf8),
                value: Array(
                    #"job:<id:"j" > pipeline:<name:"p" > finished:<seconds:1497000000 nanos:5 > state:JOB_STOPPED stopped:true data_total:42 "#.utf8)
            ).record.job)
        #expect(job.stateName == "JOB_STOPPED" && !job.isStartingOrRunning)
        #expect(job.pipelineName == "p" && job.jobID == "j" && job.dataTotal == 42)
        #expect(job.finishedTime == Date(timeIntervalSince1970: 1_497_000_000.000000005))
    }
}
