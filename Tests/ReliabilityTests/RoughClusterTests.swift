import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Foundation
import PachydermMigrations
import Testing

/// The built executable against clusters no test sample looks like.
@Suite("Rough clusters, end to end")
struct RoughClusterTests {
    /// The at-rest sample, made rough: every other record already 1.5.0 binary as
    /// Pachyderm 1.5.0's own routine wrote it (half-migrated by another tool), three job
    /// values near etcd's 1.5 MiB request limit (together over gRPC's 4 MiB message
    /// default), and records under keys with odd bytes (invalid UTF-8, NUL, newline).
    static func roughSample() throws -> [KeyValue] {
        let root = SampleData.root + "/at-rest"
        let before = try SampleData.keyValues("\(root)/before.etcd.jsonl")
        let binary = valuesByKeyBytes(try SampleData.keyValues("\(root)/after-pachyderm-1.5.0.etcd.jsonl"))
        var kvs: [KeyValue] = []
        var records = 0
        for var kv in before {
            if orderingGroup(kv.key) != nil {
                records += 1
                if records % 2 == 0, let migrated = binary[kv.key] { kv.value = migrated }
            }
            kvs.append(kv)
        }
        var revision = (kvs.map(\.modRevision).max() ?? 0) + 1
        func add(_ key: [UInt8], _ value: [UInt8]) {
            kvs.append(KeyValue(key: key, value: value, createRevision: revision, modRevision: revision, version: 1))
            revision += 1
        }
        let job = try #require(before.first { text($0.key).hasPrefix("pachyderm_pps/jobs/") && text($0.value).contains(#"cmd:"sh""#) })
        let repo = try #require(before.first { text($0.key).hasPrefix("pachyderm_pfs/repos/") })
        let commit = try #require(before.first { text($0.key).hasPrefix("pachyderm_pfs/commits/images/") })
        // etcd refuses requests over 1,572,864 bytes; leave room for the key and framing.
        let filler = String(repeating: "x", count: 1_572_864 - job.value.count - 4096)
        for n in 1...3 {
            add(
                bytes("pachyderm_pps/jobs/oversize-\(n)"),
                bytes(text(job.value).replacing(#"cmd:"sh""#, with: #"cmd:"sh" cmd:""# + filler + "\"", maxReplacements: 1)))
        }
        add(bytes("pachyderm_pps/jobs/") + [0xff, 0xfe, 0x00] + bytes("job"), job.value)
        add(bytes("pachyderm_pfs/repos/new\nline"), repo.value)
        add(bytes("pachyderm_pfs/commits/images/") + [0xc3, 0x28, 0x0a], commit.value)
        return kvs
    }

    /// The clusters the end-to-end test runs on.
    enum Cluster: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// `roughSample()`.
        case rough = "rough cluster (half binary, 1.5 MiB values, odd keys)"
        /// `largeRecordsCluster()`.
        case largeRecords = "generated cluster, one job or pipeline in ten 4 KiB to 1 MiB"

        var testDescription: String { rawValue }

        func keyValues() throws -> [KeyValue] {
            switch self {
            case .rough: try RoughClusterTests.roughSample()
            case .largeRecords: try RoughClusterTests.largeRecordsCluster()
            }
        }
    }

    /// A generated cluster whose jobs and pipelines carry transform scripts of 4 KiB to
    /// 1 MiB (one in ten), among records of the usual sizes: scan pages, backup, txns and
    /// the check meet values of every size.
    static func largeRecordsCluster() throws -> [KeyValue] {
        try generatedCluster(keys: 6_000, seed: 3, largeRecords: 10, largestBytes: 1_048_576)
    }

    /// The large scripts change values only: the same keys, and each grown value is the
    /// plain cluster's without its script's lines.
    @Test func largeRecordsGrowValuesOnly() throws {
        let plain = try generatedCluster(keys: 6_000, seed: 3)
        let cluster = try Self.largeRecordsCluster()
        #expect(cluster.map(\.key) == plain.map(\.key))
        let script = #/stdin:"echo step \d+: [0-9a-f]{64} >> /pfs/out/log" /#
        let grown = zip(cluster, plain).filter { $0.value != $1.value }
        #expect(grown.allSatisfy { text($0.value).replacing(script, with: "") == text($1.value) })
        let sizes = grown.map(\.0.value.count)
        #expect(sizes.count > 50 && sizes.allSatisfy { $0 >= 4096 } && sizes.contains { $0 > 512 * 1024 }, "\(sizes)")
    }

    @Test(arguments: Cluster.allCases)
    func migratesLikeTheOfflineConversionAndVerifies(_ cluster: Cluster) async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            try client.seed(try cluster.keyValues())
            let expectation = MigrationExpectation(client: client, before: try pachydermState(client), counts: nil)
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }

            let migrate = try pachmigrate(["migrate", "--backup", "\(dir)/b.jsonl", "--endpoints", server.endpoint])
            #expect(migrate.status == 0, "\(migrate.stderr)")
            let after = try pachydermState(client)
            let expected = try expectation.expectedValues()
            #expect(valuesByKeyBytes(after) == expected)
            #expect(try JournalFacts(client).version() == "1.5.0")
            // Where half the records were already binary, the order rule re-puts every record
            // after a group's first change, so every group keeps its order.
            #expect(orderByGroup(after, group: orderingGroup) == orderByGroup(expectation.before, group: orderingGroup))
            let verify = try pachmigrate(["verify", "--endpoints", server.endpoint])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
            let backup = try SampleData.keyValues("\(dir)/b.jsonl")
            #expect(valuesByKeyBytes(backup) == valuesByKeyBytes(expectation.before))
            let mode = try FileManager.default.attributesOfItem(atPath: "\(dir)/b.jsonl")[.posixPermissions] as? Int
            #expect(mode == 0o600)
            reportReliability(
                fault: cluster.rawValue, records: expectation.before.count, losses: lostRecords(expected: expected, after: after))
        }
    }

    /// A newer stamp than the tool knows, then a job's text under `repos/`: both refused
    /// with their exit codes before anything is written, the bad record named.
    @Test func newerStampAndForeignKindAreRefusedBeforeAnyWrite() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            try sample.client.put(PutRequest(key: bytes("pachmigrate/version"), value: bytes("1.7.0")))
            let newer = try pachmigrate(["migrate", "--no-backup"] + sample.endpoint)
            #expect(newer.status == 5, "\(newer.stderr)")
            #expect(newer.stderr.contains("1.7.0"))
            #expect(try pachydermState(sample.client) == sample.before)
            #expect(try sample.client.range(.prefix(bytes("pachmigrate/"))).kvs.map { text($0.key) } == ["pachmigrate/version"])
            try sample.client.deleteRange(DeleteRangeRequest(key: bytes("pachmigrate/version")))

            let job = try #require(sample.before.first { text($0.key).hasPrefix("pachyderm_pps/jobs/") })
            try sample.client.put(PutRequest(key: bytes("pachyderm_pfs/repos/not-a-repo"), value: job.value))
            let state = try pachydermState(sample.client)
            let wrongKind = try pachmigrate(["migrate", "--no-backup"] + sample.endpoint)
            #expect(wrongKind.status == 8, "\(wrongKind.stderr)")
            #expect(wrongKind.stderr.contains("pachyderm_pfs/repos/not-a-repo"))
            // plan reports the failure structured, as convert does.
            let plan = try pachmigrate(["plan", "--output", "json"] + sample.endpoint)
            #expect(plan.status == 8, "\(plan.stderr)")
            let scan = (plan.json["result"] as? [String: Any])?["scan"] as? [String: Any]
            let failures = scan?["failures"] as? [[String: Any]] ?? []
            #expect(failures.map { $0["key"] as? String } == ["pachyderm_pfs/repos/not-a-repo"])
            #expect(failures.first?["code"] as? String == "unknownField" && failures.first?["field"] is String)
            #expect((failures.first?["message"] as? String)?.isEmpty == false)
            #expect(try pachydermState(sample.client) == state)
            #expect(try JournalFacts(sample.client).state() == nil)
        }
    }
}
