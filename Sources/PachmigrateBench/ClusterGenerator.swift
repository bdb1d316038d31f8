import EtcdGateway
import EtcdModel
import Glibc
import MigrationEngine
import SeededRandom

/// SplitMix64 with the draws the generator needs: the same seed gives the same cluster on
/// every machine, so dumps of two commits can be compared byte for byte.
struct SeededRandom {
    private var base: SplitMix64

    init(seed: UInt64) { base = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { base.next() }

    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// True with probability `percent`/100.
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

    mutating func hex(_ count: Int) -> String {
        let digits = Array("0123456789abcdef")
        var s = ""
        s.reserveCapacity(count)
        for _ in 0..<count { s.append(digits[below(16)]) }
        return s
    }

    mutating func uuid() -> String {
        "\(hex(8))-\(hex(4))-4\(hex(3))-\(pick(["8", "9", "a", "b"]))\(hex(3))-\(hex(12))"
    }
}

/// What a generated cluster holds, written beside the dump as `DUMP.meta` (key=value lines)
/// so the bench can compute throughput without re-reading the dump.
struct GeneratedClusterSummary {
    var keys = 0
    /// Values the migration rewrites (repos, commits, branches, pipelines, jobs).
    var records = 0
    /// Bytes of 1.4 gogo text in those records: the "input text" of MB/s figures.
    var recordTextBytes = 0
    var indexKeys = 0
    var repoRefCounts = 0
    var jobsWithWorkerStatus = 0
    /// Jobs and pipelines given a large transform (`LargeRecords`), and the largest value.
    var largeRecords = 0
    var largestValueBytes = 0

    var metaText: String {
        """
        keys=\(keys)
        records=\(records)
        record_text_bytes=\(recordTextBytes)
        index_keys=\(indexKeys)
        repo_ref_counts=\(repoRefCounts)
        jobs_with_worker_status=\(jobsWithWorkerStatus)
        large_records=\(largeRecords)
        largest_value_bytes=\(largestValueBytes)

        """
    }
}

/// Generates a Pachyderm 1.4.8 cluster as it sits in etcd, shaped like the shared sample
/// (`testdata/pachyderm-1.4.8-sample/at-rest`) but of any size: input repos with long commit
/// chains, pipelines whose output repos have provenance, and many finished jobs (inputs,
/// worker status, parallelism specs of both strategies, egress, resource specs), each job
/// with the index keys 1.4.8 writes (Pipeline, Stopped, Input) and an output commit with its
/// Provenance index keys; plus repoRefCounts, repo and pipeline index keys, and branches.
///
/// The value texts follow gogo's compact text format exactly as the sample has it (field
/// names as in the .proto, a space after each field, `<…>` nesting, octal escapes). The
/// cluster is at rest: no open commit, no running job, `stopped` agrees with every state.
/// Ratios follow the sample: about one key in three is a record, the rest index keys.
struct ClusterGenerator {
    let targetKeys: Int
    var random: SeededRandom
    let largeRecords: LargeRecords?
    /// The large transforms' own draws: the cluster is the same, key for key, with or
    /// without them; only some values grow.
    private var payloadRandom: SeededRandom

    private var revision: Int64 = 1
    private var clock: Int64 = 1_493_716_000
    private(set) var summary = GeneratedClusterSummary()

    init(targetKeys: Int, seed: UInt64, largeRecords: LargeRecords? = nil) {
        self.targetKeys = targetKeys
        self.random = SeededRandom(seed: seed)
        self.largeRecords = largeRecords
        self.payloadRandom = SeededRandom(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Some jobs and pipelines with a long transform script (an embedded program, as people
    /// put in `stdin`): `percent` of each, sizes spread evenly on a log scale from 4 KiB to
    /// `largestBytes`, so pages, txns and the space guard meet values of every size.
    struct LargeRecords {
        var percent: Double
        var largestBytes: Int
        static let smallestBytes = 4096
        /// A record and the rest of its txn must fit etcd's default 1.5 MiB request.
        static let bytesAllowed = smallestBytes...1_048_576
    }

    private struct InputRepo {
        var name: String
        var head: String?
        var commits = 0
    }

    private struct Pipeline {
        var name: String
        var id: String
        var version: Int
        var inputs: [Int]
        var image: String
        var coefficient: Bool
        var lastJob: String?
        var outputHead: String?
        var withEnv: Bool
    }

    private static let inputNames = ["images", "raw_logs", "customers", "sensor-data", "trades_2017", "events", "clicks", "geo"]
    private static let pipelineNames = ["edges", "log-errors", "montage", "join", "aggregate", "train", "score", "report"]
    private static let images = ["busybox", "ubuntu:16.04", "pachyderm/opencv", "python:3.6", "pachyderm/job-shim:1.4.8"]

    mutating func generate(into writer: DumpWriter) throws(DumpError) {
        let inputCount = 5 + targetKeys / 40_000
        let pipelineCount = 6 + targetKeys / 20_000
        var inputs: [InputRepo] = (0..<inputCount).map { i in
            InputRepo(name: Self.inputNames[i % Self.inputNames.count] + (i < Self.inputNames.count ? "" : "-\(i)"))
        }
        for repo in inputs {
            try emit(writer, "pachyderm_pfs/repoRefCounts/\(repo.name)", "0", kind: .refCount)
            try emit(writer, "pachyderm_pfs/repos/\(repo.name)", repoText(repo.name, provenance: []), kind: .record)
        }
        var pipelines: [Pipeline] = []
        for i in 0..<pipelineCount {
            let name = Self.pipelineNames[i % Self.pipelineNames.count] + (i < Self.pipelineNames.count ? "" : "-\(i)")
            let inputIndexes = random.chance(40) ? [random.below(inputCount), random.below(inputCount)] : [random.below(inputCount)]
            let pipeline = Pipeline(
                name: name, id: random.hex(32), version: 1 + random.below(3), inputs: Array(Set(inputIndexes)).sorted(),
                image: random.pick(Self.images), coefficient: random.chance(30), withEnv: random.chance(50))
            pipelines.append(pipeline)
            let provenance = pipeline.inputs.map { inputs[$0].name }
            try emit(writer, "pachyderm_pfs/repoRefCounts/\(name)", "\(provenance.count)", kind: .refCount)
            revision += 1
            try emit(writer, "pachyderm_pfs/repos/\(name)", repoText(name, provenance: provenance), kind: .record, sameRevision: true)
            for source in provenance {
                try emit(
                    writer, "pachyderm_pfs/repos__index_{Provenance %!s(bool=true)}/name:\"\(source)\" /\(name)", name,
                    kind: .index, sameRevision: true)
            }
            revision += 1
            try emit(writer, "pachyderm_pps/pipelines/\(name)", pipelineText(pipeline, inputs), kind: .record, sameRevision: true)
            try emit(
                writer, "pachyderm_pps/pipelines__index_{Stopped %!s(bool=false)}/%!s(bool=false)/\(name)", name,
                kind: .index, sameRevision: true)
        }
        // Every input repo needs a first commit before any job can read it.
        for i in inputs.indices { try commitInput(&inputs[i], writer) }

        let branchKeys = inputCount * 2 + pipelineCount
        while summary.keys + branchKeys < targetKeys {
            if random.chance(25) {
                let i = random.below(inputCount)
                try commitInput(&inputs[i], writer)
            } else {
                let p = random.below(pipelineCount)
                try runJob(&pipelines[p], inputs, writer)
            }
        }
        for (i, repo) in inputs.enumerated() {
            try emit(writer, "pachyderm_pfs/branches/\(repo.name)/master", branchText(repo.name, repo.head!), kind: .record)
            if i % 2 == 0 {
                try emit(writer, "pachyderm_pfs/branches/\(repo.name)/dev", branchText(repo.name, repo.head!), kind: .record)
            } else {
                try emit(writer, "pachyderm_pfs/repoRefCounts/\(repo.name)-scratch", "0", kind: .refCount)
            }
        }
        for pipeline in pipelines {
            guard let head = pipeline.outputHead else {
                try emit(writer, "pachyderm_pfs/repoRefCounts/\(pipeline.name)-idle", "0", kind: .refCount)
                continue
            }
            try emit(writer, "pachyderm_pfs/branches/\(pipeline.name)/master", branchText(pipeline.name, head), kind: .record)
        }
    }

    private enum KeyKind { case record, index, refCount }

    private mutating func emit(
        _ writer: DumpWriter, _ key: String, _ value: String, kind: KeyKind, sameRevision: Bool = false
    ) throws(DumpError) {
        if !sameRevision { revision += 1 }
        let bytes = Array(value.utf8)
        try writer.write(
            KeyValue(key: Array(key.utf8), value: bytes, createRevision: revision, modRevision: revision, version: 1))
        summary.keys += 1
        summary.largestValueBytes = max(summary.largestValueBytes, bytes.count)
        switch kind {
        case .record:
            summary.records += 1
            summary.recordTextBytes += bytes.count
        case .index: summary.indexKeys += 1
        case .refCount: summary.repoRefCounts += 1
        }
    }

    private mutating func timestamp() -> String {
        clock += Int64(5 + random.below(120))
        return "<seconds:\(clock) nanos:\(random.below(1_000_000_000)) >"
    }

    private mutating func commitInput(_ repo: inout InputRepo, _ writer: DumpWriter) throws(DumpError) {
        let id = random.hex(32)
        var text = "commit:<repo:<name:\"\(repo.name)\" > id:\"\(id)\" > "
        if let parent = repo.head { text += "parent_commit:<repo:<name:\"\(repo.name)\" > id:\"\(parent)\" > " }
        text += "started:\(timestamp()) finished:\(timestamp()) size_bytes:\(random.below(50_000_000)) "
        text += "tree:<hash:\"\(random.hex(128))\" > "
        try emit(writer, "pachyderm_pfs/commits/\(repo.name)/\(id)", text, kind: .record)
        repo.head = id
        repo.commits += 1
    }

    private mutating func runJob(_ pipeline: inout Pipeline, _ inputs: [InputRepo], _ writer: DumpWriter) throws(DumpError) {
        let jobID = random.uuid()
        let atoms = pipeline.inputs.map { (name: inputs[$0].name, commit: inputs[$0].head!) }
        let inputText: String
        if atoms.count == 1 {
            inputText = "atom:<name:\"\(atoms[0].name)\" repo:\"\(atoms[0].name)\" branch:\"master\" commit:\"\(atoms[0].commit)\" glob:\"/*\" > "
        } else {
            inputText = atoms.map {
                "cross:<atom:<name:\"\($0.name)\" repo:\"\($0.name)\" branch:\"master\" commit:\"\($0.commit)\" glob:\"/*\" > > "
            }.joined()
        }
        // The job's index keys and its creation share one 1.4.8 txn, hence one revision.
        revision += 1
        try emit(
            writer, "pachyderm_pps/jobs__index_{Pipeline %!s(bool=false)}/name:\"\(pipeline.name)\" /\(jobID)", jobID,
            kind: .index, sameRevision: true)
        try emit(writer, "pachyderm_pps/jobs__index_{Input %!s(bool=false)}/\(inputText)/\(jobID)", jobID, kind: .index, sameRevision: true)

        // The output commit, with provenance on the input commits and its index keys.
        let outputID = random.hex(32)
        revision += 1
        var commit = "commit:<repo:<name:\"\(pipeline.name)\" > id:\"\(outputID)\" > "
        if let parent = pipeline.outputHead {
            commit += "parent_commit:<repo:<name:\"\(pipeline.name)\" > id:\"\(parent)\" > "
        }
        commit += "started:\(timestamp()) finished:\(timestamp()) size_bytes:\(random.below(900_000_000)) "
        for atom in atoms { commit += "provenance:<repo:<name:\"\(atom.name)\" > id:\"\(atom.commit)\" > " }
        commit += "tree:<hash:\"\(random.hex(128))\" > "
        try emit(writer, "pachyderm_pfs/commits/\(pipeline.name)/\(outputID)", commit, kind: .record, sameRevision: true)
        for atom in atoms {
            try emit(
                writer,
                "pachyderm_pfs/commits/\(pipeline.name)__index_{Provenance %!s(bool=true)}/"
                    + "repo:<name:\"\(atom.name)\" > id:\"\(atom.commit)\" /\(outputID)",
                outputID, kind: .index, sameRevision: true)
        }
        pipeline.outputHead = outputID

        // The job's final write: finished, stopped (1.4.8 derives it from the final state).
        let stateRoll = random.below(100)
        let state = stateRoll < 86 ? "JOB_SUCCESS" : stateRoll < 94 ? "JOB_FAILURE" : "JOB_STOPPED"
        var job = "job:<id:\"\(jobID)\" > transform:<image:\"\(pipeline.image)\" cmd:\"sh\" "
        if pipeline.withEnv {
            job += "env:<key:\"AWS_REGION\" value:\"us-west-2\" > env:<key:\"MODE\" value:\"batch\" > "
            job += "secrets:<name:\"aws-creds\" mount_path:\"/var/secrets/aws\" > image_pull_secrets:\"regcred\" "
        }
        job += "stdin:\"set -e\" stdin:\"echo \\\"processing $(ls /pfs)\\\"\" stdin:\"cp -r /pfs/\(atoms[0].name)/* /pfs/out/ || true\" "
        job += largeScript() + "> "
        job += "pipeline_id:\"\(pipeline.id)\" pipeline:<name:\"\(pipeline.name)\" > pipeline_version:\(pipeline.version) "
        job +=
            pipeline.coefficient ? "parallelism_spec:<strategy:COEFFICIENT coefficient:2 > " : "parallelism_spec:<constant:\(1 + random.below(4)) > "
        if random.chance(10) { job += "egress:<URL:\"s3://pachyderm-out/\(pipeline.name)?region=us-west-2\" > " }
        if let parent = pipeline.lastJob { job += "parent_job:<id:\"\(parent)\" > " }
        job += "started:\(timestamp()) finished:\(timestamp()) "
        job += "output_commit:<repo:<name:\"\(pipeline.name)\" > id:\"\(outputID)\" > state:\(state) stopped:true "
        job += "outputRepo:<name:\"\(pipeline.name)\" > outputBranch:\"master\" "
        if random.chance(15) { job += "restart:\(1 + random.below(3)) " }
        let total = 1 + random.below(500)
        job += "data_processed:\(state == "JOB_SUCCESS" ? total : random.below(total)) data_total:\(total) "
        if random.chance(30) {
            summary.jobsWithWorkerStatus += 1
            for _ in 0..<(1 + random.below(3)) {
                job += "worker_status:<worker_id:\"pipeline-\(pipeline.name)-v\(pipeline.version)-\(random.hex(5))\" job_id:\"\(jobID)\" "
                job +=
                    "data:<path:\"/file-\(random.below(1000)).png\" "
                    + "hash:\"\\000\\377\\\"\\\"\\\\\\177\\200\\2\(random.below(8))\(random.below(8))\" > "
                job += "started:\(timestamp()) > "
            }
        }
        if random.chance(20) { job += "resource_spec:<cpu:2 memory:\"4G\" gpu:1 > " }
        job += "input:<\(inputText)> "
        if random.chance(10) { job += "incremental:true " }
        revision += 1
        try emit(writer, "pachyderm_pps/jobs/\(jobID)", job, kind: .record, sameRevision: true)
        try emit(
            writer, "pachyderm_pps/jobs__index_{Stopped %!s(bool=false)}/%!s(bool=true)/\(jobID)", jobID,
            kind: .index, sameRevision: true)
        pipeline.lastJob = jobID
    }

    /// `stdin` lines of a long script for one record in `largeRecords.percent`; empty otherwise.
    private mutating func largeScript() -> String {
        guard let large = largeRecords, Double(payloadRandom.below(10_000)) < large.percent * 100 else { return "" }
        let smallest = Double(LargeRecords.smallestBytes)
        let span = log(Double(large.largestBytes) / smallest)
        let bytes = Int(smallest * exp(span * Double(payloadRandom.below(1_000_001)) / 1_000_000))
        var script = ""
        script.reserveCapacity(bytes + 128)
        var line = 0
        while script.utf8.count < bytes {
            line += 1
            script += "stdin:\"echo step \(line): \(payloadRandom.hex(64)) >> /pfs/out/log\" "
        }
        summary.largeRecords += 1
        return script
    }

    private mutating func repoText(_ name: String, provenance: [String]) -> String {
        var text = "repo:<name:\"\(name)\" > created:\(timestamp()) size_bytes:\(random.below(Int(Int32.max))) "
        for source in provenance { text += "provenance:<name:\"\(source)\" > " }
        if random.chance(30) { text += "description:\"\(name) data, \\351t\\351 2017\" " }
        return text
    }

    private func branchText(_ repo: String, _ head: String) -> String {
        "repo:<name:\"\(repo)\" > id:\"\(head)\" "
    }

    private mutating func pipelineText(_ p: Pipeline, _ inputs: [InputRepo]) -> String {
        var text = "id:\"\(p.id)\" pipeline:<name:\"\(p.name)\" > version:\(p.version) transform:<image:\"\(p.image)\" cmd:\"sh\" "
        if p.withEnv { text += "env:<key:\"AWS_REGION\" value:\"us-west-2\" > env:<key:\"MODE\" value:\"batch\" > " }
        text += "stdin:\"set -e\" stdin:\"cp -r /pfs/* /pfs/out/\" " + largeScript() + "> "
        text += p.coefficient ? "parallelism_spec:<strategy:COEFFICIENT coefficient:2 > " : "parallelism_spec:<constant:1 > "
        let atoms = p.inputs.map { inputs[$0].name }
        text += "created_at:\(timestamp()) state:PIPELINE_RUNNING "
        text += "job_counts:<key:0 value:0 > job_counts:<key:2 value:\(random.below(20)) > job_counts:<key:3 value:\(random.below(200)) > "
        text += "outputBranch:\"master\" "
        if random.chance(50) { text += "scaleDownThreshold:<seconds:600 > " }
        text += "input:<"
        if atoms.count == 1 {
            text += "atom:<name:\"\(atoms[0])\" repo:\"\(atoms[0])\" branch:\"master\" glob:\"/*\" > "
        } else {
            for atom in atoms { text += "cross:<atom:<name:\"\(atom)\" repo:\"\(atom)\" branch:\"master\" glob:\"/*\" > > " }
        }
        text += "> "
        return text
    }
}
