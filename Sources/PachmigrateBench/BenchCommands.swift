import ArgumentParser
import EtcdGateway
import EtcdModel
import Glibc
import Logging
import MigrationEngine

import PlatformShim

/// A failure of the bench itself (not of the tool it measures).
struct BenchError: Error, Sendable, CustomStringConvertible {
    enum Code: String, Sendable {
        case badInput, etcd, lockTaken, fenceFailed, spawnFailed, io
    }
    var code: Code
    var message: String
    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    var description: String { "\(code.rawValue): \(message)" }
}

@main
struct PachmigrateBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pachmigrate-bench",
        abstract: "Pieces of Scripts/bench: generate clusters, seed etcd, measure the write limit, time a command, report.",
        subcommands: [Generate.self, Seed.self, WriteLimit.self, ReadAll.self, Measure.self, Report.self, LatencyProxy.self])
}

/// `generate`: a deterministic 1.4.8 cluster of about N keys, as a dump.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a generated Pachyderm 1.4.8 cluster as a dump (plus DUMP.meta).")

    @Option(help: "Keys in the cluster (records + index keys + repoRefCounts), approximately.")
    var keys: Int

    @Option(help: "Seed: the same seed gives the same dump.")
    var seed: UInt64 = 1

    @Option(help: "Percent of jobs and pipelines given a long transform script (0 to 100; fractions allowed).")
    var largeRecords: Double = 0

    @Option(help: "The largest such script in bytes (sizes spread from 4096 to this on a log scale; at most 1048576).")
    var largestBytes = 262_144

    @Argument(help: "The dump to write.")
    var output: String

    func validate() throws {
        guard (0...100).contains(largeRecords) else { throw ValidationError("--large-records is a percent, 0 to 100.") }
        let allowed = ClusterGenerator.LargeRecords.bytesAllowed
        guard allowed.contains(largestBytes) else {
            throw ValidationError(
                "--largest-bytes is \(allowed.lowerBound) to \(allowed.upperBound) (etcd's default request limit is 1.5 MiB).")
        }
    }

    func run() throws {
        let writer = try DumpWriter(path: output, overwrite: true)
        var generator = ClusterGenerator(
            targetKeys: keys, seed: seed,
            largeRecords: largeRecords > 0 ? .init(percent: largeRecords, largestBytes: largestBytes) : nil)
        try generator.generate(into: writer)
        try writer.finish()
        try writeFile(output + ".meta", generator.summary.metaText)
        print(generator.summary.metaText, terminator: "")
    }
}

func makeClient(_ endpoint: String, caFile: String? = nil) throws -> EtcdClient {
    try EtcdClient(
        configuration: .init(endpoints: [endpoint], requestTimeout: .seconds(30), tls: caFile.map { .init(caFile: $0) }),
        logger: Logger(label: "bench"))
}

/// `seed`: loads a dump into an empty etcd, up to 100 puts per txn (etcd allows 128) and half
/// a request's limit of keys and values (a cluster with large records). Keys of one txn share
/// a revision; file order, hence the relative order of records, is kept.
struct Seed: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Load a dump into an empty etcd, fast.")

    @Option(help: "etcd client URL.")
    var endpoint: String

    @Argument(help: "The dump to load.")
    var dump: String

    func run() throws {
        let client = try makeClient(endpoint)
        let reader = try DumpReader(path: dump)
        let maxBytes = client.txnLimits.maxRequestBytes / 2
        var group: [RequestOp] = []
        var bytes = 0
        var loaded = 0
        func flush() throws {
            guard !group.isEmpty else { return }
            _ = try client.txn(TxnRequest(success: group))
            loaded += group.count
            group.removeAll(keepingCapacity: true)
            bytes = 0
        }
        while let kv = try reader.read() {
            let size = kv.key.count + kv.value.count
            if group.count == 100 || bytes + size > maxBytes { try flush() }
            group.append(.put(PutRequest(key: kv.key, value: kv.value)))
            bytes += size
        }
        try flush()
        print("seeded \(loaded) keys")
    }
}

/// `write-limit`: the order-preserving write limit. Writes the already-converted values of
/// every record back, one fenced single-key txn at a time (compare the lock key's create
/// revision and the record's mod revision, like the migrator's lane writer), in mod-revision
/// order, over one keep-alive connection. Everything is read and converted before the clock
/// starts: this is the cost of the writes alone.
struct WriteLimit: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time sequential fenced single-key writes of converted values.")

    @Option(help: "etcd client URL (seeded with BEFORE).")
    var endpoint: String

    @Option(help: "The 1.4 dump etcd was seeded with.")
    var before: String

    @Option(help: "`pachmigrate convert` of BEFORE: the values to write.")
    var after: String

    @Option(help: "Write only the first N records: enough to time a lone fenced txn where all would take minutes.")
    var maxWrites: Int?

    @Option(help: "Write only records whose key starts with this (e.g. the longest group's collection).")
    var keyPrefix: String?

    @Flag(help: "Put a lane cursor beside each record, as the migrator's txns do (a second put).")
    var withCursor = false

    @Option(help: "PEM CA bundle, for an https endpoint.")
    var cacert: String?

    func run() throws {
        var original: [[UInt8]: [UInt8]] = [:]
        for kv in try DumpReader(path: before).readAll() { original[kv.key] = kv.value }
        // Only what the migration rewrites: values that convert changed.
        var writes: [KeyValue] = []
        let prefix = Array((keyPrefix ?? "").utf8)
        for kv in try DumpReader(path: after).readAll() where original[kv.key] != kv.value && kv.key.starts(with: prefix) {
            writes.append(kv)
        }
        original = [:]
        if let maxWrites, maxWrites < writes.count { writes.removeLast(writes.count - maxWrites) }

        let client = try makeClient(endpoint, caFile: cacert)
        var modRevisions: [[UInt8]: Int64] = [:]
        for root in ["pachyderm_pfs/", "pachyderm_pps/"] {
            try client.scanPrefix(Array(root.utf8), keysOnly: true) { page in
                for kv in page { modRevisions[kv.key] = kv.modRevision }
            }
        }
        let lockKey = Array("pachmigrate-bench/lock".utf8)
        let acquired = try client.txn(
            TxnRequest(
                compare: [Compare(key: lockKey, .equal, .createRevision(0))],
                success: [.put(PutRequest(key: lockKey, value: Array("bench".utf8)))]))
        guard acquired.succeeded else { throw BenchError(.lockTaken, "\(String(decoding: lockKey, as: UTF8.self)) exists") }
        let fence = acquired.header.revision

        let clock = ContinuousClock()
        let started = clock.now
        let cursorKey = Array("pachmigrate-bench/cursor".utf8)
        var each: [Double] = []
        each.reserveCapacity(writes.count)
        for (written, kv) in writes.enumerated() {
            let sent = clock.now
            guard let modRevision = modRevisions[kv.key] else {
                throw BenchError(.badInput, "\(String(decoding: kv.key, as: UTF8.self)) is not in etcd")
            }
            let response = try client.txn(
                TxnRequest(
                    compare: [Compare(key: lockKey, .equal, .createRevision(fence)), Compare(key: kv.key, .equal, .modRevision(modRevision))],
                    success: [.put(PutRequest(key: kv.key, value: kv.value))]
                        + (withCursor
                            ? [
                                .put(
                                    PutRequest(
                                        key: cursorKey,
                                        value: Array(
                                            #"{"written":\#(written + 1),"lastKey":"\#(kv.key.printable)","lastRevision":\#(modRevision)}"#.utf8)))
                            ] : [])))
            guard response.succeeded else {
                throw BenchError(.fenceFailed, "fenced write of \(String(decoding: kv.key, as: UTF8.self)) failed")
            }
            each.append(Self.seconds(clock.now - sent))
        }
        let seconds = Self.seconds(clock.now - started)
        // txn_seconds: one fenced txn's mean latency, each waiting for the one before; the
        // median beside it says how much of the mean the slow ones make.
        each.sort()
        let median = each.isEmpty ? 0 : each[each.count / 2]
        print(
            "records=\(writes.count) write_seconds=\(seconds) txn_seconds=\(seconds / Double(max(1, writes.count))) "
                + "median_txn_seconds=\(median)")
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// `read-all`: the floor for `plan`. Reads every key under the roots once, with its value,
/// at one revision, paged as the scan pages (windowed), over one keep-alive connection, and
/// does nothing with them: what any tool must pay to look at the whole cluster.
struct ReadAll: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time one paged read of every key with its value.")

    @Option(help: "etcd client URL.")
    var endpoint: String

    func run() throws {
        let client = try makeClient(endpoint)
        let clock = ContinuousClock()
        let started = clock.now
        var keys = 0
        var revision: Int64 = 0
        for root in ["pachyderm_pfs/", "pachyderm_pps/"] {
            revision = try client.scanPrefix(Array(root.utf8), revision: revision) { page in keys += page.count }
        }
        let elapsed = clock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("keys_read=\(keys) read_seconds=\(seconds)")
    }
}

func writeFile(_ path: String, _ text: String) throws {
    guard let file = fopen(path, "w") else { throw BenchError(.io, "cannot write \(path)") }
    defer { fclose(file) }
    guard fputs(text, file) >= 0 else { throw BenchError(.io, "cannot write \(path)") }
}
