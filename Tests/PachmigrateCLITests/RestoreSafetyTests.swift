import EtcdGateway
import EtcdTestSupport
import Foundation
import MigrationEngine
import Testing

/// `restore` replaces the cluster it is pointed at, so it first checks that the cluster is
/// the backup's and that nothing but pachmigrate wrote there since: the built executable
/// against real etcds, each refusal leaving the target exactly as it was.
@Suite("restore knows where a backup belongs")
struct RestoreSafetyTests {
    /// Everything a refused restore must leave alone: keys, values, create and mod
    /// revisions under the roots, and the cluster's revision (no write at all, not even the lock).
    struct Fingerprint: Equatable {
        var state: [[String]]
        var revision: Int64

        init(_ client: EtcdClient) throws {
            state = try pachydermState(client).map {
                [text($0.key), $0.value.map { String($0) }.joined(separator: ","), "\($0.createRevision)", "\($0.modRevision)"]
            }
            revision = try client.range(RangeRequest(key: bytes("pachyderm_pfs/"), countOnly: true)).header.revision
        }
    }

    @Test func helpNamesTheFlagsAndTheExitCode() async throws {
        try await onOwnThread {
            let help = try pachmigrate(["restore", "--help"])
            #expect(help.status == 0)
            for text in ["--onto-other-cluster", "--discard-newer-writes", "--dry-run", "exit 4", "pachmigrate restore --endpoints"] {
                #expect(help.stdout.contains(text), "\(text): \(help.stdout)")
            }
        }
    }

    @Test func ontoAnotherNonEmptyClusterIsRefusedUntilSaidSo() async throws {
        try await onOwnThread {
            let source = try SampleServer()
            defer { source.server.stop() }
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let backup = try pachmigrate(["backup", "\(dir)/b.jsonl"] + source.endpoint)
            #expect(backup.status == 0, "\(backup.stderr)")
            #expect(FileManager.default.fileExists(atPath: "\(dir)/b.jsonl.origin.json"))

            // An unrelated cluster: other records, created at other revisions.
            let other = try SampleServer("busy")
            defer { other.server.stop() }
            let untouched = try Fingerprint(other.client)
            let dryRun = try pachmigrate(["restore", "--dry-run", "\(dir)/b.jsonl"] + other.endpoint)
            #expect(dryRun.status == 4, "\(dryRun.stderr)")
            #expect(dryRun.stdout.contains("NOT the cluster the backup was taken from"), "\(dryRun.stdout)")
            #expect(dryRun.stdout.contains("cluster ID"), "\(dryRun.stdout)")
            let refused = try pachmigrate(["restore", "\(dir)/b.jsonl"] + other.endpoint)
            #expect(refused.status == 4, "\(refused.stderr)")
            #expect(refused.stderr.contains("--onto-other-cluster"), "\(refused.stderr)")
            #expect(refused.stderr.contains(other.server.endpoint), "\(refused.stderr)")
            #expect(refused.stderr.contains("would remove"), "\(refused.stderr)")
            #expect(try Fingerprint(other.client) == untouched)
            let json = try pachmigrate(["restore", "\(dir)/b.jsonl", "--output", "json"] + other.endpoint)
            #expect(json.status == 4)
            #expect((json.json["error"] as? [String: Any])?["code"] as? String == "restoreRefused", "\(json.stdout)")
            #expect(try Fingerprint(other.client) == untouched)

            // A cluster loaded with the very same records (same keys, same create revisions):
            // only etcd's cluster ID tells it apart, and that is enough to refuse.
            let twin = try SampleServer()
            defer { twin.server.stop() }
            let twinBefore = try Fingerprint(twin.client)
            let twinRefused = try pachmigrate(["restore", "\(dir)/b.jsonl"] + twin.endpoint)
            #expect(twinRefused.status == 4, "\(twinRefused.stderr)")
            #expect(twinRefused.stderr.contains("cluster ID"), "\(twinRefused.stderr)")
            #expect(try Fingerprint(twin.client) == twinBefore)

            let accepted = try pachmigrate(["restore", "--onto-other-cluster", "\(dir)/b.jsonl"] + other.endpoint)
            #expect(accepted.status == 0, "\(accepted.stderr)")
            let restored = try pachydermState(other.client)
            #expect(restored.map { [$0.key, $0.value] } == source.before.map { [$0.key, $0.value] })
        }
    }

    @Test func ontoAnEmptyEtcdNeedsNoFlag() async throws {
        try await onOwnThread {
            let source = try SampleServer()
            defer { source.server.stop() }
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            #expect(try pachmigrate(["backup", "\(dir)/b.jsonl"] + source.endpoint).status == 0)

            let empty = try EtcdServer.start()
            defer { empty.stop() }
            let client = try empty.makeClient()
            let revision = try Fingerprint(client).revision
            let dryRun = try pachmigrate(["restore", "--dry-run", "\(dir)/b.jsonl", "--endpoints", empty.endpoint])
            #expect(dryRun.status == 0, "\(dryRun.stderr)")
            #expect(dryRun.stdout.contains("holds no keys under the roots"), "\(dryRun.stdout)")
            #expect(dryRun.stdout.contains("Would restore \(source.before.count) keys"), "\(dryRun.stdout)")
            #expect(try Fingerprint(client).revision == revision)

            // The origin is covered by PATH.sha256 (`sha256sum -c` checks both files): an
            // altered one is refused like an altered backup.
            #expect(try runCommand("/usr/bin/env", ["sha256sum", "-c", "b.jsonl.sha256"], directory: dir).contains("b.jsonl.origin.json: OK"))
            let originPath = "\(dir)/b.jsonl.origin.json"
            let origin = try String(contentsOfFile: originPath, encoding: .utf8)
            try origin.replacingOccurrences(of: "\"revision\" : ", with: "\"revision\" : 1").write(
                toFile: originPath, atomically: true, encoding: .utf8)
            let altered = try pachmigrate(["restore", "\(dir)/b.jsonl", "--endpoints", empty.endpoint])
            #expect(altered.status == 1, "\(altered.stderr)")
            #expect(altered.stderr.contains("altered"), "\(altered.stderr)")
            #expect(try Fingerprint(client).revision == revision)
            try origin.write(toFile: originPath, atomically: true, encoding: .utf8)

            let restore = try pachmigrate(["restore", "\(dir)/b.jsonl", "--endpoints", empty.endpoint])
            #expect(restore.status == 0, "\(restore.stderr)")
            let restored = try pachydermState(client)
            #expect(restored.map { [$0.key, $0.value] } == source.before.map { [$0.key, $0.value] })
        }
    }

    /// A backup written before backups recorded their origin (no `.origin.json`, one line in
    /// `.sha256`) still restores: onto an empty etcd freely, onto a cluster with keys only
    /// with the flag, since where it belongs cannot be checked.
    @Test func aBackupOfUnknownOriginNeedsTheFlagUnlessTheTargetIsEmpty() async throws {
        try await onOwnThread {
            let source = try SampleServer()
            defer { source.server.stop() }
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            #expect(try pachmigrate(["backup", "\(dir)/b.jsonl"] + source.endpoint).status == 0)
            try FileManager.default.removeItem(atPath: "\(dir)/b.jsonl.origin.json")
            let checksums = try String(contentsOfFile: "\(dir)/b.jsonl.sha256", encoding: .utf8)
            try (String(checksums.split(separator: "\n")[0]) + "\n").write(toFile: "\(dir)/b.jsonl.sha256", atomically: true, encoding: .utf8)

            let before = try Fingerprint(source.client)
            let refused = try pachmigrate(["restore", "\(dir)/b.jsonl"] + source.endpoint)
            #expect(refused.status == 4, "\(refused.stderr)")
            #expect(refused.stderr.contains("records no origin"), "\(refused.stderr)")
            #expect(refused.stderr.contains("--onto-other-cluster"), "\(refused.stderr)")
            #expect(try Fingerprint(source.client) == before)
            let accepted = try pachmigrate(["restore", "--onto-other-cluster", "\(dir)/b.jsonl"] + source.endpoint)
            #expect(accepted.status == 0, "\(accepted.stderr)")

            let empty = try EtcdServer.start()
            defer { empty.stop() }
            let restore = try pachmigrate(["restore", "\(dir)/b.jsonl", "--endpoints", empty.endpoint])
            #expect(restore.status == 0, "\(restore.stderr)")
            #expect(try pachydermState(try empty.makeClient()).map { [$0.key, $0.value] } == source.before.map { [$0.key, $0.value] })
        }
    }

    /// After the migration a 1.5 pachd ran and wrote: restoring the migration's backup would
    /// throw that away, so it is refused until --discard-newer-writes; the migration's own
    /// writes are not held against the restore.
    @Test func overWritesNewerThanTheBackupThatAreNotPachmigratesIsRefusedUntilSaidSo() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let migrate = try pachmigrate(["migrate", "--backup", "\(dir)/b.jsonl", "--quiet"] + sample.endpoint)
            #expect(migrate.status == 0, "\(migrate.stderr)")

            // Right after the migration: the same cluster, every newer write pachmigrate's own.
            let clean = try pachmigrate(["restore", "--dry-run", "\(dir)/b.jsonl", "--output", "json"] + sample.endpoint)
            #expect(clean.status == 0, "\(clean.stderr)")
            let plan = try #require((clean.json["result"] as? [String: Any])?["plan"] as? [String: Any], "\(clean.stdout)")
            #expect(plan["verdict"] as? String == "sameCluster")
            #expect(plan["newerWrites"] as? Int == 0)

            // pachd 1.5 writes: a new job, an updated repo, a new branch.
            let repo = try #require(sample.before.first { text($0.key).hasPrefix("pachyderm_pfs/repos/") })
            let foreign = ["pachyderm_pps/jobs/written-by-pachd", text(repo.key), "pachyderm_pfs/branches/images/written-by-pachd"]
            for key in foreign { try sample.client.put(PutRequest(key: bytes(key), value: bytes("pachd 1.5"))) }
            let before = try Fingerprint(sample.client)

            let dryRun = try pachmigrate(["restore", "--dry-run", "\(dir)/b.jsonl"] + sample.endpoint)
            #expect(dryRun.status == 4, "\(dryRun.stderr)")
            #expect(dryRun.stdout.contains("by something other than pachmigrate: 3 key(s)"), "\(dryRun.stdout)")
            #expect(foreign.allSatisfy { dryRun.stdout.contains($0) }, "\(dryRun.stdout)")
            #expect(try Fingerprint(sample.client) == before)

            let refused = try pachmigrate(["restore", "\(dir)/b.jsonl"] + sample.endpoint)
            #expect(refused.status == 4, "\(refused.stderr)")
            #expect(refused.stderr.contains("--discard-newer-writes"), "\(refused.stderr)")
            #expect(refused.stderr.contains("3 key(s)"), "\(refused.stderr)")
            #expect(foreign.allSatisfy { refused.stderr.contains($0) }, "\(refused.stderr)")
            #expect(try Fingerprint(sample.client) == before)

            let accepted = try pachmigrate(["restore", "--discard-newer-writes", "\(dir)/b.jsonl"] + sample.endpoint)
            #expect(accepted.status == 0, "\(accepted.stderr)")
            let restored = try pachydermState(sample.client)
            #expect(restored.map { [$0.key, $0.value] } == sample.before.map { [$0.key, $0.value] })

            // Restoring the same backup again: the cluster holds the backup's own values now.
            let again = try pachmigrate(["restore", "\(dir)/b.jsonl"] + sample.endpoint)
            #expect(again.status == 0, "\(again.stderr)")
        }
    }

    /// deploy/backup-copy-pod.yaml's `kubectl cp` lines, as an operator follows them, take off
    /// every file a backup is made of: the copy checks with `sha256sum -c` and rolls the
    /// migration back. A copy without the `.origin.json` (what those lines once left out) is
    /// refused before any write, naming the file to fetch.
    @Test func theDocumentedCopyOfTheJobsBackupRollsBack() async throws {
        try await onOwnThread {
            let sample = try SampleServer()
            defer { sample.server.stop() }
            let volume = try temporaryDirectory()
            let laptop = try temporaryDirectory()
            defer {
                try? FileManager.default.removeItem(atPath: volume)
                try? FileManager.default.removeItem(atPath: laptop)
            }
            let migrate = try pachmigrate(["migrate", "--backup", "\(volume)/BACKUP.jsonl", "--quiet"] + sample.endpoint)
            #expect(migrate.status == 0, "\(migrate.stderr)")

            let manifest = try String(
                contentsOf: DeployManifestTests.deploy.appendingPathComponent("backup-copy-pod.yaml"), encoding: .utf8)
            let copies = manifest.split(separator: "\n").compactMap { line -> (from: String, to: String)? in
                let words = line.split(separator: " ")
                guard let cp = words.firstIndex(of: "cp"), words.count == cp + 3, words[cp - 1] == "kubectl",
                    let from = words[cp + 1].split(separator: ":/backup/").last, words[cp + 1].contains(":/backup/")
                else { return nil }
                return (String(from), String(words[cp + 2].trimmingPrefix("./")))
            }
            let written = try FileManager.default.contentsOfDirectory(atPath: volume).sorted()
            #expect(written.count == 3, "\(written)")
            #expect(copies.map(\.from).sorted() == written, "\(copies)")
            for copy in copies {
                try FileManager.default.copyItem(atPath: "\(volume)/\(copy.from)", toPath: "\(laptop)/\(copy.to)")
            }
            #expect(manifest.contains("sha256sum -c BACKUP.jsonl.sha256"))
            let checked = try runCommand("/usr/bin/env", ["sha256sum", "-c", "BACKUP.jsonl.sha256"], directory: laptop)
            #expect(checked.contains("BACKUP.jsonl: OK") && checked.contains("BACKUP.jsonl.origin.json: OK"), "\(checked)")

            let origin = try Data(contentsOf: URL(fileURLWithPath: "\(laptop)/BACKUP.jsonl.origin.json"))
            try FileManager.default.removeItem(atPath: "\(laptop)/BACKUP.jsonl.origin.json")
            let before = try Fingerprint(sample.client)
            let incomplete = try pachmigrate(["restore", "\(laptop)/BACKUP.jsonl"] + sample.endpoint)
            #expect(incomplete.status == 1, "\(incomplete.stderr)")
            #expect(incomplete.stderr.contains("copy BACKUP.jsonl.origin.json"), "\(incomplete.stderr)")
            #expect(try Fingerprint(sample.client) == before)

            try origin.write(to: URL(fileURLWithPath: "\(laptop)/BACKUP.jsonl.origin.json"))
            let restore = try pachmigrate(["restore", "\(laptop)/BACKUP.jsonl"] + sample.endpoint)
            #expect(restore.status == 0, "\(restore.stderr)")
            #expect(try pachydermState(sample.client).map { [$0.key, $0.value] } == sample.before.map { [$0.key, $0.value] })
        }
    }
}
