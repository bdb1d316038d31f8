import EtcdGateway
import EtcdModel
import Foundation
import MigrationEngine
import PachydermMigrations
import SeededRandom
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built `pachmigrate`, beside the test bundle (or $PACHMIGRATE_BIN).
public let pachmigrateBinary: String = {
    if let path = ProcessInfo.processInfo.environment["PACHMIGRATE_BIN"] { return path }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("pachmigrate").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/pachmigrate").path
}()

public struct RunResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] ?? [:]
    }
}

/// A running pachmigrate process.
public final class PachmigrateProcess: @unchecked Sendable {
    public let process = Process()
    private let out: CapturedOutput
    private let err: CapturedOutput

    /// `shell`: a /bin/sh script run in front of the binary (e.g. to set a ulimit); it must
    /// end with `exec "$0" "$@"`. `readerGone`: stdout and stderr go to a pipe nobody reads,
    /// as when Ctrl-C or a hangup has ended the `tee` the output was piped to; nothing is
    /// captured.
    public init(
        _ arguments: [String], environment: [String: String] = [:], directory: String? = nil, shell: String? = nil,
        readerGone: Bool = false
    ) throws {
        out = try CapturedOutput()
        err = try CapturedOutput()
        if let shell {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", shell, pachmigrateBinary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: pachmigrateBinary)
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        for key in ["ETCD_ENDPOINTS", "ETCDCTL_ENDPOINTS", "ETCDCTL_PASSWORD", "ETCDCTL_USER"] { env[key] = nil }
        env.merge(environment) { $1 }
        process.environment = env
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardOutput = out.handle
        process.standardError = err.handle
        process.standardInput = FileHandle.nullDevice
        if readerGone {
            let pipe = Pipe()
            try pipe.fileHandleForReading.close()
            process.standardOutput = pipe
            process.standardError = pipe
        }
        try spawnChild(process)
        out.closeOurCopy()
        err.closeOurCopy()
    }

    public var pid: Int32 { process.processIdentifier }
    /// What it has written to stderr so far.
    public var currentStderr: String { err.text() }
    public func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits for the run to end (SIGKILL after `timeout`); every wait is bounded (see
    /// `waitForExit`). A process that outlives even SIGKILL reports status -1.
    public func wait(timeout: TimeInterval = 120) -> RunResult {
        if !waitForExit(process, seconds: timeout) {
            kill(process.processIdentifier, SIGKILL)
            _ = waitForExit(process, seconds: 10)
        }
        let status = process.isRunning ? -1 : process.terminationStatus
        return RunResult(status: status, stdout: out.text(), stderr: err.text())
    }
}

/// Runs pachmigrate to completion.
public func pachmigrate(_ arguments: [String], environment: [String: String] = [:], directory: String? = nil, timeout: TimeInterval = 120)
    throws -> RunResult
{
    try PachmigrateProcess(arguments, environment: environment, directory: directory).wait(timeout: timeout)
}

public func temporaryDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pachmigrate-cli-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

public let layout = PachydermLayout()

/// The ordering group (lane name: `commits/images`) of a record key; nil for any other key.
public func orderingGroup(_ key: [UInt8]) -> String? {
    if case .record(let kind, let group) = layout.classify(key) { return LaneID(kind: kind.collection, group: group).name }
    return nil
}

/// Pachyderm's keys, in mod-revision order.
public func pachydermState(_ client: EtcdClient) throws -> [KeyValue] {
    (try client.dumpState(prefix: "pachyderm_pfs/") + client.dumpState(prefix: "pachyderm_pps/")).sorted {
        $0.modRevision != $1.modRevision ? $0.modRevision < $1.modRevision : $0.key.lexicographicallyPrecedes($1.key)
    }
}

/// What an uninterrupted migration of `before` must leave in a cluster, and the checks
/// that the cluster (reached through `client`) holds exactly that.
public struct MigrationExpectation: Sendable {
    public let client: EtcdClient
    /// Pachyderm's keys before any migration, in mod-revision order.
    public let before: [KeyValue]
    /// The per-kind counts the journal's history must record; nil: not checked.
    public let counts: [String: Int]?

    public init(client: EtcdClient, before: [KeyValue], counts: [String: Int]?) {
        self.client = client
        self.before = before
        self.counts = counts
    }

    /// The offline conversion of `before`: what the migration must produce.
    public func expectedValues() throws -> [[UInt8]: [UInt8]] {
        let plan = try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")
        return valuesByKeyBytes(OfflineConverter(layout: layout, plan: plan).convert(before).output)
    }

    /// Checks the cluster equals an uninterrupted run: values, per-group order, journal.
    /// With `fault`, also reports the records lost to `Scripts/reliability`'s table.
    public func expectMigratedLikeAnUninterruptedRun(_ comment: Comment? = nil, fault: String? = nil) throws {
        let after = try pachydermState(client)
        let expected = try expectedValues()
        if let fault {
            reportReliability(fault: fault, records: before.count, losses: lostRecords(expected: expected, after: after))
        }
        #expect(valuesByKeyBytes(after) == expected, comment)
        #expect(orderByGroup(after, group: orderingGroup) == orderByGroup(before, group: orderingGroup), comment)
        let journal = JournalFacts(client)
        #expect(try journal.version() == "1.5.0", comment)
        #expect(try journal.lanesLeft() == 0, comment)
        if let counts {
            #expect(try journal.lastMigrateCounts() == counts, comment)
        }
    }
}

/// Key → value, keyed by the raw key bytes (keys need not be UTF-8).
public func valuesByKeyBytes(_ kvs: [KeyValue]) -> [[UInt8]: [UInt8]] {
    Dictionary(kvs.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
}

/// A server loaded with a sample, and the migrated state an uninterrupted run produces.
public struct SampleServer: Sendable {
    public let server: EtcdServer
    public let client: EtcdClient
    public let before: [KeyValue]
    /// The journal counts of the `at-rest` sample.
    public static let atRestCounts = ["repos": 11, "commits": 273, "branches": 18, "pipelines": 6, "jobs": 200]

    public init(_ sample: String = "at-rest", auth: Bool = false) throws {
        server = try EtcdServer.start(auth: auth)
        client = try server.makeClient(credentials: server.rootCredentials)
        try client.seed(dump: SampleData.before(sample))
        before = try pachydermState(client)
    }

    public var endpoint: [String] { ["--endpoints", server.endpoint] }

    public var expectation: MigrationExpectation {
        MigrationExpectation(client: client, before: before, counts: Self.atRestCounts)
    }

    /// What the migration must produce: the offline conversion of the sample.
    public func expectedValues() throws -> [[UInt8]: [UInt8]] { try expectation.expectedValues() }

    /// Checks the cluster equals an uninterrupted run: values, per-group order, journal.
    /// With `fault`, also reports the records lost to `Scripts/reliability`'s table.
    public func expectMigratedLikeAnUninterruptedRun(_ comment: Comment? = nil, fault: String? = nil) throws {
        try expectation.expectMigratedLikeAnUninterruptedRun(comment, fault: fault)
    }
}

/// Waits until the run has written at least one record (a lane cursor exists); false if
/// the process ended first.
public func waitUntilWriting(_ client: EtcdClient, _ process: PachmigrateProcess, timeout: TimeInterval = 60) -> Bool {
    eventually(timeout: timeout) {
        !process.process.isRunning || ((try? client.range(.prefix(bytes("pachmigrate/lanes/"))).kvs.isEmpty) == false)
    } && process.process.isRunning
}

/// How many seeds the randomized fault tests try: `$PACHMIGRATE_FAULT_SEEDS`, else 10 (CI: the live-engine issue asks for 10+ SIGKILL points).
/// `Scripts/reliability` runs 20 or more.
public let faultSeedCount: Int = ProcessInfo.processInfo.environment["PACHMIGRATE_FAULT_SEEDS"].flatMap(Int.init) ?? 10

/// Appends one line to `$PACHMIGRATE_RELIABILITY_REPORT` (when set), which
/// `Scripts/reliability` sums into its summary table: fault, seeds, records checked, losses.
public func reportReliability(fault: String, seeds: Int = 1, records: Int, losses: Int) {
    guard let path = ProcessInfo.processInfo.environment["PACHMIGRATE_RELIABILITY_REPORT"] else { return }
    let line = "\(fault)\t\(seeds)\t\(records)\t\(losses)\n"
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
    guard fd >= 0 else { return }
    defer { close(fd) }
    // One write() per line with O_APPEND: lines from parallel tests never interleave.
    _ = Array(line.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}

/// The number of records in `expected` whose value differs in `after` or is missing
/// there: what a run lost or corrupted.
public func lostRecords(expected: [[UInt8]: [UInt8]], after: [KeyValue]) -> Int {
    let actual = valuesByKeyBytes(after)
    return expected.filter { actual[$0.key] != $0.value }.count
}

/// The tests' deterministic generator, so a failing seed can be replayed.
public typealias SeededGenerator = SplitMix64

/// Reads pachmigrate's journal keys directly, as an operator with etcdctl would.
public struct JournalFacts {
    public let client: EtcdClient
    public init(_ client: EtcdClient) { self.client = client }

    public func version() throws -> String? {
        try client.range(RangeRequest(key: bytes("pachmigrate/version"))).kvs.first.map { text($0.value) }
    }

    public func lanesLeft() throws -> Int {
        try client.range(.prefix(bytes("pachmigrate/lanes/"))).kvs.count
    }

    public func history() throws -> [[String: Any]] {
        try client.range(.prefix(bytes("pachmigrate/history/"))).kvs.compactMap {
            try JSONSerialization.jsonObject(with: Data($0.value)) as? [String: Any]
        }
    }

    public func lastMigrateCounts() throws -> [String: Int]? {
        (try history().last { $0["event"] as? String == "migrate" })?["counts"] as? [String: Int]
    }

    public func state() throws -> [String: Any]? {
        try client.range(RangeRequest(key: bytes("pachmigrate/state"))).kvs.first.flatMap {
            try JSONSerialization.jsonObject(with: Data($0.value)) as? [String: Any]
        }
    }
}
