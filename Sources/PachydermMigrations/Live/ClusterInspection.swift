import EtcdGateway
import EtcdModel
import MigrationEngine

/// What version a cluster's metadata is at, and how we know.
public struct DetectedVersion: Sendable, Hashable, Codable {
    /// `1.5.0`, `1.4.x` (records are 1.4 text; the patch level cannot be told from etcd), or nil for an empty cluster.
    public var version: String?
    public enum Source: String, Sendable, Hashable, Codable {
        /// An unfinished run's `from`.
        case journal
        /// A completed migration stamped it.
        case stamp
        /// Sampled records.
        case records
        /// No records.
        case empty
    }
    public var source: Source
    public var detail: String
    /// Of the sampled records (`source == .records`), how many are 1.4 text and how many
    /// 1.5 binary: what a stated `--from` is held to.
    public var sampledText = 0
    public var sampledBinary = 0
}

public enum ClusterInspection {
    /// The version an interrupted run started from (it must be resumed as it began: its
    /// records may all be rewritten already, with only the stamp missing); else the stamped
    /// version if pachmigrate migrated this cluster; else a sample of each collection: any
    /// 1.4 text record means 1.4.x, all binary means 1.5.0.
    public static func detectVersion(
        store: any KeyValueService, layout: PachydermLayout, namespace: Namespace, sample: Int = 100
    ) throws(MigrationError) -> DetectedVersion {
        let journal = JournalReader(store: store, namespace: namespace)
        if let run = try journal.state(), run.status == .running || run.status == .failed {
            return DetectedVersion(
                version: run.from, source: .journal,
                detail: "an unfinished migration from \(run.from) to \(run.to) is recorded (run \(run.runID), \(run.statusName)); migrate resumes it"
            )
        }
        if let stamped = try journal.stampedVersion() {
            return DetectedVersion(version: stamped, source: .stamp, detail: "stamped by pachmigrate at \(namespace.versionKey.printable)")
        }
        var text = 0
        var binary = 0
        for kind in RecordKind.allCases {
            let request = RangeRequest.prefix(layout.collectionPrefix(kind), limit: Int64(sample))
            let page = try etcd("sampling \(kind) records") { () throws(EtcdError) in try store.range(request) }
            for kv in page.kvs {
                guard case .record = layout.classify(kv.key) else { continue }
                switch (try? RecordCodec.decode(kind: kind, key: kv.key, value: kv.value))?.encoding {
                case .text14: text += 1
                case .binary15: binary += 1
                case nil: break
                }
            }
        }
        if text > 0 {
            return DetectedVersion(
                version: "1.4.x", source: .records,
                detail: "\(text) sampled record(s) are 1.4 text\(binary > 0 ? ", \(binary) already 1.5 binary (a partly migrated cluster)" : "")",
                sampledText: text, sampledBinary: binary)
        }
        if binary > 0 {
            return DetectedVersion(
                version: "1.5.0", source: .records,
                detail:
                    "every sampled record is 1.5 binary, and no pachmigrate run stamped the cluster: "
                    + "every record is checked for what another migration left behind",
                sampledBinary: binary)
        }
        return DetectedVersion(version: nil, source: .empty, detail: "no Pachyderm records under \(layout.pfsPrefix)/ and \(layout.ppsPrefix)/")
    }

    /// The `openCommits/<id>` keys that exist: 1.5.0 needs one for every open commit.
    public static func openCommitEntries(store: any KeyValueService, layout: PachydermLayout) throws(MigrationError) -> Set<[UInt8]> {
        var keys: Set<[UInt8]> = []
        var pages = store.pages(prefix: layout.openCommitsPrefix, keysOnly: true)
        while let page = try etcd("reading the openCommits entries", { () throws(EtcdError) in try pages.next() }) {
            for kv in page { keys.insert(kv.key) }
        }
        return keys
    }

    /// Every record of one kind, at one revision, page by page. Index keys that share the
    /// collection's prefix (`commits/<repo>__index_…`) are skipped.
    static func scanRecords(
        store: any KeyValueService, layout: PachydermLayout, kind: RecordKind, pageSize: Int, _ body: (KeyValue) -> Void
    ) throws(MigrationError) {
        var pages = store.pages(prefix: layout.collectionPrefix(kind), pageSize: pageSize)
        while let page = try etcd("reading \(kind) records", { () throws(EtcdError) in try pages.next() }) {
            for kv in page {
                if case .record(kind, _) = layout.classify(kv.key) { body(kv) }
            }
        }
    }
}

/// Pipelines that reprocess all their data on their first 1.5 job: 1.5.0 hashes datums
/// with `env` cleared, so every datum of a pipeline whose transform sets env looks new.
/// Fed every pipeline and job the scan reads; the size is the newest finished job's
/// `data_total`.
public struct ReprocessingForecaster: Sendable {
    private var envNames: [String: [String]] = [:]
    private var newestFinished: [String: (finished: Int64, job: String, total: Int64)] = [:]

    public init() {}

    mutating func observe(_ record: Decoded14Record) {
        switch record {
        case .pipeline(let info) where !info.transform.env.isEmpty:
            envNames[info.pipelineName] = info.envNames
        case .job(let job):
            // Jobs come before pipelines in key order, so every pipeline's are kept.
            guard let name = job.pipelineName, job.hasFinished else { return }
            let finished = job.finished.seconds
            if (newestFinished[name]?.finished ?? Int64.min) < finished {
                newestFinished[name] = (finished, job.jobID ?? "", job.dataTotal)
            }
        default:
            return
        }
    }

    /// One entry per pipeline that sets env, by name.
    public var pipelines: [ReprocessingForecast] {
        envNames.keys.sorted().map { name in
            let newest = newestFinished[name]
            return ReprocessingForecast(
                pipeline: name, envNames: envNames[name]!, newestFinishedJob: newest?.job, dataTotal: newest?.total)
        }
    }
}

public struct ReprocessingForecast: Sendable, Hashable, Codable {
    public var pipeline: String
    public var envNames: [String]
    public var newestFinishedJob: String?
    /// `data_total` of the newest finished job: roughly what the first 1.5 job reprocesses.
    public var dataTotal: Int64?
}
