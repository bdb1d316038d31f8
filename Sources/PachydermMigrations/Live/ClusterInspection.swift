import EtcdGateway
import MigrationEngine

/// What version a cluster's metadata is at, and how we know.
public struct DetectedVersion: Sendable, Hashable, Codable {
    /// `1.5.0`, `1.4.x` (records are 1.4 text; the patch level cannot be told from etcd), or nil for an empty cluster.
    public var version: String?
    /// `stamp` (pachmigrate recorded it), `records` (sampled), or `empty`.
    public var source: String
    public var detail: String
}

public enum ClusterInspection {
    /// The stamped version if pachmigrate migrated this cluster; else a sample of each
    /// collection: any 1.4 text record means 1.4.x, all binary means 1.5.0.
    public static func detectVersion(
        store: any KeyValueService, layout: PachydermLayout, namespace: Namespace, sample: Int = 100
    ) throws(MigrationError) -> DetectedVersion {
        if let stamped = try JournalReader(store: store, namespace: namespace).stampedVersion() {
            return DetectedVersion(version: stamped, source: "stamp", detail: "stamped by pachmigrate at \(namespace.versionKey.printable)")
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
                version: "1.4.x", source: "records",
                detail: "\(text) sampled record(s) are 1.4 text\(binary > 0 ? ", \(binary) already 1.5 binary (a partly migrated cluster)" : "")")
        }
        if binary > 0 {
            return DetectedVersion(version: "1.5.0", source: "records", detail: "every sampled record is 1.5 binary")
        }
        return DetectedVersion(version: nil, source: "empty", detail: "no Pachyderm records under \(layout.pfsPrefix)/ and \(layout.ppsPrefix)/")
    }

    /// Pipelines that reprocess all their data on their first 1.5 job: 1.5.0 hashes datums
    /// with `env` cleared, so every datum of a pipeline whose transform sets env looks new.
    public static func reprocessingForecast(
        store: any KeyValueService, layout: PachydermLayout, pageSize: Int = 1000
    ) throws(MigrationError) -> [ReprocessingForecast] {
        var pipelines: [String: [String]] = [:]
        try scanRecords(store: store, layout: layout, kind: .pipeline, pageSize: pageSize) { kv in
            guard let info = (try? RecordCodec.decode(kind: .pipeline, key: kv.key, value: kv.value))?.record.pipeline,
                !info.transform.env.isEmpty
            else { return }
            pipelines[info.pipelineName] = info.envNames
        }
        guard !pipelines.isEmpty else { return [] }
        var newest: [String: (finished: Int64, job: String, total: Int64)] = [:]
        try scanRecords(store: store, layout: layout, kind: .job, pageSize: pageSize) { kv in
            guard let job = (try? RecordCodec.decode(kind: .job, key: kv.key, value: kv.value))?.record.job,
                let name = job.pipelineName, pipelines[name] != nil, job.hasFinished
            else { return }
            let finished = job.finished.seconds
            if (newest[name]?.finished ?? Int64.min) < finished {
                newest[name] = (finished, job.jobID ?? "", job.dataTotal)
            }
        }
        return pipelines.keys.sorted().map { name in
            ReprocessingForecast(
                pipeline: name, envNames: pipelines[name]!, newestFinishedJob: newest[name]?.job,
                dataTotal: newest[name]?.total)
        }
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

public struct ReprocessingForecast: Sendable, Hashable, Codable {
    public var pipeline: String
    public var envNames: [String]
    public var newestFinishedJob: String?
    /// `data_total` of the newest finished job: roughly what the first 1.5 job reprocesses.
    public var dataTotal: Int64?
}
