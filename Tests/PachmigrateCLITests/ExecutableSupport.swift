import EtcdGateway
import EtcdTestSupport
import Foundation
import PachydermMigrations
import Testing

/// The built `pachmigrate`, beside the test bundle (or $PACHMIGRATE_BIN).
let pachmigrateBinary: String = {
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

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] ?? [:]
    }
}

/// A running pachmigrate process.
final class PachmigrateProcess: @unchecked Sendable {
    let process = Process()
    private let out = Pipe()
    private let err = Pipe()
    private var outData = Data()
    private var errData = Data()
    private let group = DispatchGroup()

    init(_ arguments: [String], environment: [String: String] = [:], directory: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: pachmigrateBinary)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for key in ["ETCD_ENDPOINTS", "ETCDCTL_ENDPOINTS", "ETCDCTL_PASSWORD", "ETCDCTL_USER"] { env[key] = nil }
        env.merge(environment) { $1 }
        process.environment = env
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        group.enter()
        group.enter()
        DispatchQueue.global().async { [self] in
            outData = out.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        DispatchQueue.global().async { [self] in
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    func wait(timeout: TimeInterval = 120) -> RunResult {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        process.waitUntilExit()
        group.wait()
        return RunResult(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// Runs pachmigrate to completion.
func pachmigrate(_ arguments: [String], environment: [String: String] = [:], directory: String? = nil, timeout: TimeInterval = 120)
    throws -> RunResult
{
    try PachmigrateProcess(arguments, environment: environment, directory: directory).wait(timeout: timeout)
}

func temporaryDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pachmigrate-cli-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

let layout = PachydermLayout()

func orderingGroup(_ key: [UInt8]) -> String? {
    if case .record(_, let g) = layout.classify(key) { return g }
    return nil
}

/// Pachyderm's keys, in mod-revision order.
func pachydermState(_ client: EtcdClient) throws -> [KeyValue] {
    (try client.dumpState(prefix: "pachyderm_pfs/") + client.dumpState(prefix: "pachyderm_pps/")).sorted {
        $0.modRevision != $1.modRevision ? $0.modRevision < $1.modRevision : $0.key.lexicographicallyPrecedes($1.key)
    }
}

/// A server loaded with a sample, and the migrated state an uninterrupted run produces.
struct SampleServer {
    let server: EtcdServer
    let client: EtcdClient
    let before: [KeyValue]

    init(_ sample: String = "at-rest", auth: Bool = false) throws {
        server = try EtcdServer.start(auth: auth)
        client = try server.makeClient(credentials: server.rootCredentials)
        try client.seed(dump: SampleData.before(sample))
        before = try pachydermState(client)
    }

    var endpoint: [String] { ["--endpoints", server.endpoint] }

    /// What the migration must produce: the offline conversion of the sample.
    func expectedValues() throws -> [String: [UInt8]] {
        let plan = try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")
        return valuesByKey(OfflineConverter(layout: layout, plan: plan).convert(before).output)
    }

    /// Checks the cluster equals an uninterrupted run: values, per-group order, journal.
    func expectMigratedLikeAnUninterruptedRun(_ comment: Comment? = nil) throws {
        let after = try pachydermState(client)
        #expect(valuesByKey(after) == (try expectedValues()), comment)
        #expect(orderByGroup(after, group: orderingGroup) == orderByGroup(before, group: orderingGroup), comment)
        let journal = JournalFacts(client)
        #expect(try journal.version() == "1.5.0", comment)
        #expect(try journal.lanesLeft() == 0, comment)
        #expect(try journal.lastMigrateCounts() == ["repos": 11, "commits": 273, "branches": 18, "pipelines": 6, "jobs": 200], comment)
    }
}

/// Reads pachmigrate's journal keys directly, as an operator with etcdctl would.
struct JournalFacts {
    let client: EtcdClient
    init(_ client: EtcdClient) { self.client = client }

    func version() throws -> String? {
        try client.range(RangeRequest(key: bytes("pachmigrate/version"))).kvs.first.map { text($0.value) }
    }

    func lanesLeft() throws -> Int {
        try client.range(.prefix(bytes("pachmigrate/lanes/"))).kvs.count
    }

    func history() throws -> [[String: Any]] {
        try client.range(.prefix(bytes("pachmigrate/history/"))).kvs.compactMap {
            try JSONSerialization.jsonObject(with: Data($0.value)) as? [String: Any]
        }
    }

    func lastMigrateCounts() throws -> [String: Int]? {
        (try history().last { $0["event"] as? String == "migrate" })?["counts"] as? [String: Int]
    }

    func state() throws -> [String: Any]? {
        try client.range(RangeRequest(key: bytes("pachmigrate/state"))).kvs.first.flatMap {
            try JSONSerialization.jsonObject(with: Data($0.value)) as? [String: Any]
        }
    }
}
