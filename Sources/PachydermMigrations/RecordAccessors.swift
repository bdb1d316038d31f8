import EtcdModel
import PachydermSchema
import SwiftProtobuf

// Small typed views on decoded 1.4 records, for the engine's at-rest checks (open commits,
// starting/running jobs) and the CLI's reprocessing forecast (pipelines with env).

extension Read14_JobInfo {
    /// The 1.4 state name (`JOB_RUNNING`…), or the number when unknown.
    public var stateName: String {
        switch state {
        case .jobStarting: "JOB_STARTING"
        case .jobRunning: "JOB_RUNNING"
        case .jobFailure: "JOB_FAILURE"
        case .jobSuccess: "JOB_SUCCESS"
        case .jobStopped: "JOB_STOPPED"
        case .UNRECOGNIZED(let raw): "\(raw)"
        }
    }
    /// Not at rest: 1.5.0 would not resume such a job.
    public var isStartingOrRunning: Bool { state == .jobStarting || state == .jobRunning }
    public var pipelineName: String? { hasPipeline ? String(decoding: pipeline.name, as: UTF8.self) : nil }
    public var jobID: String? { hasJob ? String(decoding: job.id, as: UTF8.self) : nil }
}

extension Read14_CommitInfo {
    /// A commit without `finished` is open: 1.5.0 needs an `openCommits/<id>` entry for it.
    public var isOpen: Bool { !hasFinished }
    public var repoName: String { String(decoding: commit.repo.name, as: UTF8.self) }
    public var commitID: String { String(decoding: commit.id, as: UTF8.self) }
}

extension Read14_PipelineInfo {
    public var pipelineName: String { String(decoding: pipeline.name, as: UTF8.self) }
    /// Names of `transform.env`, in stored order. Non-empty means the pipeline reprocesses
    /// all its data on its first 1.5 job (1.5.0 hashes datums with env cleared).
    public var envNames: [String] { transform.env.map { String(decoding: $0.key, as: UTF8.self) } }
}

extension Decoded14Record {
    public var job: Read14_JobInfo? { if case .job(let j) = self { j } else { nil } }
    public var commit: Read14_CommitInfo? { if case .commit(let c) = self { c } else { nil } }
    public var pipeline: Read14_PipelineInfo? { if case .pipeline(let p) = self { p } else { nil } }
}

extension PachydermLayout {
    /// The 1.5.0 `openCommits/<commitID>` entry for an open 1.4 commit: key and value (the
    /// `Commit`, binary, as 1.5.0's StartCommit writes it). nil when the commit is finished.
    /// The `openCommits/<id>` key of `commit`.
    public func openCommitKey(forOpen commit: Read14_Commit) -> [UInt8] { openCommitsPrefix + [UInt8](commit.id) }

    /// The `openCommits/<id>` entry for `commit`, known to be open.
    public func openCommitEntry(forOpen commit: Read14_Commit) throws(RecordCodecError) -> KeyValue {
        let key = openCommitKey(forOpen: commit)
        return KeyValue(key: key, value: try RecordCodec.encode15(Pach150_Commit(copying: commit), key: key))
    }
}
