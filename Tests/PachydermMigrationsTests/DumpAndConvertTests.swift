import ArgumentParser
import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Foundation
import MigrationEngine
import PachmigrateCLI
import PachydermMigrations
import PachydermSchema
import Testing

/// A directory for one test: Swift Testing makes a suite instance per test and releases it
/// when the test ends, so a class suite holding one removes it then, whatever the outcome.
class ScratchDirectorySuite {
    let dir: URL

    init() throws { dir = URL(fileURLWithPath: try temporaryDirectory()) }

    deinit { try? FileManager.default.removeItem(at: dir) }
}

func run(_ executable: String, _ arguments: [String], in directory: URL) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = directory
    // A file, not a pipe: an etcd spawned by another test at the same moment would inherit
    // a pipe's write end and withhold its EOF until it exits.
    let output = directory.appendingPathComponent("output-\(UUID().uuidString)")
    _ = FileManager.default.createFile(atPath: output.path, contents: nil)
    let handle = try FileHandle(forWritingTo: output)
    process.standardOutput = handle
    try spawnChild(process)
    if !waitForExit(process, seconds: 60) { kill(process.processIdentifier, SIGKILL) }
    try handle.close()
    defer { try? FileManager.default.removeItem(at: output) }
    return try String(contentsOf: output, encoding: .utf8)
}

func readAll(_ path: String) throws -> [KeyValue] { try DumpReader(path: path).readAll() }

@Suite("Dump files")
final class DumpTests: ScratchDirectorySuite {
    @Test(
        "SHA-256 test vectors, in any chunking",
        arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            (
                "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
            ),
        ])
    func sha256(text: String, hex: String) {
        var whole = SHA256Digest()
        whole.update(Array(text.utf8))
        #expect(SHA256Digest.hex(whole.finalize()) == hex)
        var bytewise = SHA256Digest()
        for byte in text.utf8 { bytewise.update([byte]) }
        #expect(SHA256Digest.hex(bytewise.finalize()) == hex)
    }

    // Many blocks in one update: the path the SHA-extension code takes for dumps.
    @Test("SHA-256 of a million 'a's, whole and in odd-sized chunks")
    func sha256MillionA() {
        let input = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        var whole = SHA256Digest()
        whole.update(input)
        #expect(SHA256Digest.hex(whole.finalize()) == expected)
        var chunked = SHA256Digest()
        var offset = 0
        while offset < input.count {
            let end = min(offset + 4_099, input.count)
            chunked.update(Array(input[offset..<end]))
            offset = end
        }
        #expect(SHA256Digest.hex(chunked.finalize()) == expected)
    }

    @Test("writer → reader round trip; mode 0600; .sha256 equals sha256sum's output")
    func roundTrip() throws {
        let path = dir.appendingPathComponent("dump.jsonl").path
        let kvs =
            [
                KeyValue(key: Array("a".utf8), value: Array("1".utf8), createRevision: 2, modRevision: 3, version: 1),
                KeyValue(key: [0x00, 0xff, 0x80, 0x0a], value: [], createRevision: 0, modRevision: 0, version: 0, lease: 7_587_870_000_000_000_000),
                KeyValue(
                    key: Array("pachyderm_pps/workers/rc/10.0.0.1".utf8), value: [0xde, 0xad], createRevision: 9, modRevision: 9, version: 3,
                    lease: -1),
            ]
            + (0..<5000).map {
                KeyValue(key: Array("k\($0)".utf8), value: [UInt8](repeating: UInt8($0 & 0xff), count: $0 % 97), modRevision: Int64($0))
            }
        let writer = try DumpWriter(path: path)
        try writer.write(contentsOf: kvs)
        let hex = try writer.finish()
        #expect(try readAll(path) == kvs)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let checksum = try String(contentsOfFile: path + ".sha256", encoding: .utf8)
        #expect(checksum == "\(hex)  dump.jsonl\n")
        #expect(try run("/usr/bin/sha256sum", ["dump.jsonl"], in: dir) == checksum)
        #expect(try run("/usr/bin/sha256sum", ["-c", "dump.jsonl.sha256"], in: dir) == "dump.jsonl: OK\n")
        #expect(try verifyDumpChecksum(path: path) == hex)
        // Refuses to overwrite unless asked.
        let exists = try #require(throws: DumpError.self) { try DumpWriter(path: path) }
        #expect(exists.code == .alreadyExists)
    }

    @Test("rewriting a sample reproduces etcd's JSON byte for byte", arguments: ["at-rest", "busy"])
    func sampleShape(sample: String) throws {
        let path = dir.appendingPathComponent("copy.jsonl").path
        let writer = try DumpWriter(path: path)
        try writer.write(contentsOf: SampleData.keyValues(before: sample))
        try writer.finish()
        let original = try Data(contentsOf: URL(fileURLWithPath: SampleData.path(sample, "before.etcd.jsonl")))
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == original)
    }

    @Test(
        "a bad line fails with its line number",
        arguments: [
            (#"{"key":"YQ==","value":"!!"}"#, "`value` is not standard base64"),
            (#"{"key":"YQ==","mod_revision":"x"}"#, "`mod_revision` is not a decimal int64"),
            (#"{"value":"YQ=="}"#, "no `key`"),
            (#"{"key":"YQ==""#, "missing `}`"),
            ("not json", "expected `{`"),
        ])
    func badLine(line: String, says: String) throws {
        let path = dir.appendingPathComponent("bad.jsonl").path
        try (#"{"key":"YQ==","mod_revision":"2"}"# + "\n\n" + line + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let reader = try DumpReader(path: path)
        #expect(try reader.read()?.key == Array("a".utf8))
        let error = try #require(throws: DumpError.self) { try reader.read() }
        #expect(error.code == .malformedLine)
        #expect(error.line == 3)
        #expect(error.message.contains(says), "\(error.message)")
        #expect(error.description.hasPrefix("\(path):3: "))
    }

    @Test("checksum verification catches tampering and a missing .sha256")
    func checksumFailures() throws {
        let path = dir.appendingPathComponent("d.jsonl").path
        let writer = try DumpWriter(path: path)
        try writer.write(KeyValue(key: Array("a".utf8), value: Array("b".utf8)))
        try writer.finish()
        try #"{"key":"YQ==","value":"Yw=="}"#.appending("\n").write(toFile: path, atomically: false, encoding: .utf8)
        let tampered = #expect(throws: DumpError.self) { try verifyDumpChecksum(path: path) }
        #expect(tampered?.code == .checksumMismatch)
        try FileManager.default.removeItem(atPath: path + ".sha256")
        let missing = #expect(throws: DumpError.self) { try verifyDumpChecksum(path: path) }
        #expect(missing?.code == .missingChecksum)
    }
}

@Suite("Offline conversion end to end")
final class ConvertTests: ScratchDirectorySuite {
    @Test("at-rest sample: every record converted, the rest copied, ordered by mod revision")
    func atRest() throws {
        let output = dir.appendingPathComponent("out.jsonl").path
        let converter = OfflineConverter(plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0"))
        let report = try converter.convertDump(inputPath: SampleData.path("at-rest", "before.etcd.jsonl"), outputPath: output)
        #expect(report.succeeded)
        #expect(report.converted == [.repo: 11, .commit: 273, .branch: 18, .pipeline: 6, .job: 200])
        #expect(report.copiedUnchanged == 1029 && report.keysRead == 1537 && report.notes.isEmpty)
        try verifyDumpChecksum(path: output)

        let before = try SampleData.keyValues(before: "at-rest")
        let after = try readAll(output)
        #expect(after.count == before.count)
        #expect(after.map(\.modRevision) == after.map(\.modRevision).sorted())
        let theirs = try SampleData.pachydermAfter("at-rest")
        for (old, new) in zip(before, after) {
            #expect(old.key == new.key && old.modRevision == new.modRevision && old.createRevision == new.createRevision)
            if case .record(let kind, _) = layout.classify(old.key) {
                #expect(try canonical15(kind, new.value) == canonical15(kind, theirs[old.keyText]!))
            } else {
                #expect(old == new)
            }
        }
    }

    @Test("an unordered dump gives the same output as the ordered one")
    func unorderedInput() throws {
        let plan = try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")
        var kvs = try SampleData.keyValues(before: "busy")
        let expected = OfflineConverter(plan: plan).convert(kvs)
        var generator = SystemRandomNumberGenerator()
        kvs.shuffle(using: &generator)
        let shuffled = dir.appendingPathComponent("shuffled.jsonl").path
        let writer = try DumpWriter(path: shuffled)
        try writer.write(contentsOf: kvs)
        try writer.finish()
        let output = dir.appendingPathComponent("out.jsonl").path
        let report = try OfflineConverter(plan: plan).convertDump(inputPath: shuffled, outputPath: output)
        let after = try readAll(output)
        #expect(after.map(\.modRevision) == expected.output.map(\.modRevision))
        #expect(Set(after) == Set(expected.output))
        #expect(report.converted == expected.report.converted && report.keysRead == kvs.count)
        try verifyDumpChecksum(path: output)
    }

    @Test("busy sample: open commits are reported, or given openCommits entries on request")
    func busyOpenCommits() throws {
        let plan = try VersionPlanner.plan(from: "1.4.x", to: "1.5.0")
        let kvs = try SampleData.keyValues(before: "busy")
        let warned = OfflineConverter(plan: plan).convert(kvs).report
        #expect(warned.succeeded && warned.warnings.count == 2 && warned.openCommitsWritten == 0)
        let withEntries = OfflineConverter(plan: plan, writeOpenCommits: true).convert(kvs)
        let output = withEntries.output
        #expect(withEntries.report.openCommitsWritten == 2)
        let entries = output.filter { layout.classify($0.key) == .openCommit }
        #expect(entries.count == 2)
        #expect(output.count == kvs.count + 2)
    }

    @Test("every failed key is reported, not only the first; the others still convert")
    func allFailuresListed() throws {
        var kvs = try Array(SampleData.keyValues(before: "at-rest").prefix(200))
        let broken = kvs.indices.filter { if case .record = layout.classify(kvs[$0].key) { true } else { false } }.prefix(3)
        for i in broken { kvs[i].value = Array("bogus:1 ".utf8) }
        let converted = OfflineConverter(plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")).convert(kvs)
        let (output, report) = (converted.output, converted.report)
        #expect(!report.succeeded)
        #expect(report.failures.map(\.key) == broken.map { kvs[$0].keyText })
        #expect(report.failures.allSatisfy { $0.error.code == .unknownField && $0.error.field == "bogus" })
        #expect(output.count == kvs.count)
        #expect(report.description.contains("FAILED keys (3):"))
    }

    @Test("convert command: exit 0, 8 naming failures, 5 for unsupported versions")
    func command() throws {
        let good = dir.appendingPathComponent("good.jsonl").path
        var command = try ConvertCommand.parse(["--from", "1.4.8", SampleData.path("at-rest", "before.etcd.jsonl"), good])
        try command.run()
        try verifyDumpChecksum(path: good)

        let broken = dir.appendingPathComponent("broken.jsonl").path
        let writer = try DumpWriter(path: broken)
        try writer.write(KeyValue(key: Array("pachyderm_pps/jobs/j1".utf8), value: Array("bogus:1 ".utf8), modRevision: 2))
        try writer.write(KeyValue(key: Array("pachyderm_pps/jobs/j2".utf8), value: Array("state:JOB_RUNNING ".utf8), modRevision: 3))
        try writer.finish()
        command = try ConvertCommand.parse(["--from", "1.4.8", "--to", "1.5.0", broken, dir.appendingPathComponent("o.jsonl").path])
        #expect(throws: ExitCode(8)) { try command.run() }

        command = try ConvertCommand.parse(["--from", "1.3.0", broken, dir.appendingPathComponent("o3.jsonl").path])
        #expect(throws: ExitCode(5)) { try command.run() }

        #expect(throws: (any Error).self) { try ConvertCommand.parse(["--from", "1.4.8", broken]) }
    }
}

@Suite("Offline repair of Pachyderm 1.5.0's own output")
struct OfflineRepairTests {
    /// The busy sample's open commits, as Pachyderm's routine left them (binary, no entry),
    /// get their `openCommits` entry; converting the result again writes none twice.
    @Test func openCommitsGetOneEntryEach() throws {
        let theirs = try SampleData.pachydermAfter("busy").sorted { $0.key < $1.key }.enumerated().map { i, record in
            KeyValue(key: Array(record.key.utf8), value: record.value, createRevision: Int64(i + 2), modRevision: Int64(i + 2), version: 1)
        }
        let converter = OfflineConverter(plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0"), writeOpenCommits: true)
        let once = converter.convert(theirs)
        #expect(once.report.failures.isEmpty)
        #expect(once.report.openCommitsWritten == 2)
        let twice = converter.convert(once.output)
        #expect(twice.report.openCommitsWritten == 0)
        #expect(Set(twice.output.map(\.key)).count == twice.output.count)
        #expect(twice.output.map(\.value) == once.output.map(\.value))
    }
}
