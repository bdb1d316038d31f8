import PachydermSchema
import SwiftProtobuf

// Field-by-field copies from the 1.4 read schema to the 1.5.0 schema. Field numbers are
// identical, so a binary round trip would also work, but it runs at a third of the speed
// (docs/performance.md, "Offline convert", has its measured rate).
// Fields 1.5.0 no longer has (`stopped`, `ParallelismSpec.strategy`, 1.4.0–1.4.1 `error`,
// ≤1.4.3 `gc_policy`) are handled by `Pachyderm14To15Step`, not here.
// A test checks every copy against the binary round trip, so a field forgotten here fails.

extension Pach150_Repo {
    init(copying source: Read14_Repo) {
        self.init()
        name = source.name
    }
}

extension Pach150_Commit {
    init(copying source: Read14_Commit) {
        self.init()
        if source.hasRepo { repo = Pach150_Repo(copying: source.repo) }
        id = source.id
    }
}

extension Pach150_Object {
    init(copying source: Read14_Object) {
        self.init()
        hash = source.hash
    }
}

extension Pach150_RepoInfo {
    init(copying source: Read14_RepoInfo) {
        self.init()
        if source.hasRepo { repo = Pach150_Repo(copying: source.repo) }
        if source.hasCreated { created = source.created }
        sizeBytes = source.sizeBytes
        provenance = source.provenance.map(Pach150_Repo.init(copying:))
        description_p = source.description_p
    }
}

extension Pach150_CommitInfo {
    init(copying source: Read14_CommitInfo) {
        self.init()
        if source.hasCommit { commit = Pach150_Commit(copying: source.commit) }
        if source.hasParentCommit { parentCommit = Pach150_Commit(copying: source.parentCommit) }
        if source.hasStarted { started = source.started }
        if source.hasFinished { finished = source.finished }
        sizeBytes = source.sizeBytes
        provenance = source.provenance.map(Pach150_Commit.init(copying:))
        if source.hasTree { tree = Pach150_Object(copying: source.tree) }
    }
}

extension Pach150_BranchInfo {
    init(copying source: Read14_Branch) {
        self.init()
        name = source.name
        if source.hasHead { head = Pach150_Commit(copying: source.head) }
    }
}

extension Pach150_Secret {
    init(copying source: Read14_Secret) {
        self.init()
        name = source.name
        mountPath = source.mountPath
    }
}

extension Pach150_EnvEntry {
    init(copying source: Read14_EnvEntry) {
        self.init()
        // `optional`: presence is part of the wire form (gogo writes an empty value).
        if source.hasKey { key = source.key }
        if source.hasValue { value = source.value }
    }
}

extension Pach150_Transform {
    init(copying source: Read14_Transform) {
        self.init()
        image = source.image
        cmd = source.cmd
        // Sorted: binary written by Go holds the map in iteration order; gogo text is sorted already.
        env = source.env.sortedByKey().map(Pach150_EnvEntry.init(copying:))
        secrets = source.secrets.map(Pach150_Secret.init(copying:))
        imagePullSecrets = source.imagePullSecrets
        stdin = source.stdin
        acceptReturnCode = source.acceptReturnCode
        debug = source.debug
    }
}

extension Pach150_Egress {
    init(copying source: Read14_Egress) {
        self.init()
        url = source.url
    }
}

extension Pach150_Job {
    init(copying source: Read14_Job) {
        self.init()
        id = source.id
    }
}

extension Pach150_Pipeline {
    init(copying source: Read14_Pipeline) {
        self.init()
        name = source.name
    }
}

extension Pach150_Service {
    init(copying source: Read14_Service) {
        self.init()
        internalPort = source.internalPort
        externalPort = source.externalPort
    }
}

extension Pach150_AtomInput {
    init(copying source: Read14_AtomInput) {
        self.init()
        name = source.name
        repo = source.repo
        branch = source.branch
        commit = source.commit
        glob = source.glob
        lazy = source.lazy
        fromCommit = source.fromCommit
    }
}

extension Pach150_Input {
    init(copying source: Read14_Input) {
        self.init()
        if source.hasAtom { atom = Pach150_AtomInput(copying: source.atom) }
        cross = source.cross.map(Pach150_Input.init(copying:))
        union = source.union.map(Pach150_Input.init(copying:))
    }
}

extension Pach150_JobInput {
    init(copying source: Read14_JobInput) {
        self.init()
        name = source.name
        if source.hasCommit { commit = Pach150_Commit(copying: source.commit) }
        glob = source.glob
        lazy = source.lazy
    }
}

extension Pach150_PipelineInput {
    init(copying source: Read14_PipelineInput) {
        self.init()
        name = source.name
        if source.hasRepo { repo = Pach150_Repo(copying: source.repo) }
        branch = source.branch
        glob = source.glob
        lazy = source.lazy
        if source.hasFrom { from = Pach150_Commit(copying: source.from) }
    }
}

extension Pach150_Datum {
    init(copying source: Read14_Datum) {
        self.init()
        path = source.path
        hash = source.hash
    }
}

extension Pach150_WorkerStatus {
    init(copying source: Read14_WorkerStatus) {
        self.init()
        workerID = source.workerID
        jobID = source.jobID
        data = source.data.map(Pach150_Datum.init(copying:))
        if source.hasStarted { started = source.started }
    }
}

extension Pach150_ResourceSpec {
    init(copying source: Read14_ResourceSpec) {
        self.init()
        cpu = source.cpu
        memory = source.memory
        gpu = source.gpu
    }
}

extension Pach150_JobState {
    /// Same numbers; `JOB_STOPPED` (4) is called `JOB_KILLED` in 1.5.0.
    init(copying source: Read14_JobState) {
        self = Pach150_JobState(rawValue: source.rawValue) ?? .UNRECOGNIZED(source.rawValue)
    }
}

extension Pach150_PipelineState {
    /// Same numbers; `PIPELINE_STOPPED` (4) is called `PIPELINE_PAUSED` in 1.5.0.
    init(copying source: Read14_PipelineState) {
        self = Pach150_PipelineState(rawValue: source.rawValue) ?? .UNRECOGNIZED(source.rawValue)
    }
}

extension Pach150_JobInfo {
    /// Copies every field 1.5.0 has; `parallelismSpec` is copied verbatim (minus the
    /// removed `strategy`) — the step normalizes it afterwards.
    init(copying source: Read14_JobInfo) {
        self.init()
        if source.hasJob { job = Pach150_Job(copying: source.job) }
        if source.hasTransform { transform = Pach150_Transform(copying: source.transform) }
        pipelineID = source.pipelineID
        if source.hasPipeline { pipeline = Pach150_Pipeline(copying: source.pipeline) }
        pipelineVersion = source.pipelineVersion
        if source.hasParallelismSpec {
            parallelismSpec.constant = source.parallelismSpec.constant
            parallelismSpec.coefficient = source.parallelismSpec.coefficient
        }
        inputs = source.inputs.map(Pach150_JobInput.init(copying:))
        if source.hasEgress { egress = Pach150_Egress(copying: source.egress) }
        if source.hasParentJob { parentJob = Pach150_Job(copying: source.parentJob) }
        if source.hasStarted { started = source.started }
        if source.hasFinished { finished = source.finished }
        if source.hasOutputCommit { outputCommit = Pach150_Commit(copying: source.outputCommit) }
        state = Pach150_JobState(copying: source.state)
        if source.hasService { service = Pach150_Service(copying: source.service) }
        if source.hasOutputRepo { outputRepo = Pach150_Repo(copying: source.outputRepo) }
        outputBranch = source.outputBranch
        restart = source.restart
        dataProcessed = source.dataProcessed
        dataTotal = source.dataTotal
        workerStatus = source.workerStatus.map(Pach150_WorkerStatus.init(copying:))
        if source.hasResourceSpec { resourceSpec = Pach150_ResourceSpec(copying: source.resourceSpec) }
        if source.hasInput { input = Pach150_Input(copying: source.input) }
        if source.hasNewBranch { newBranch = Pach150_BranchInfo(copying: source.newBranch) }
        incremental = source.incremental
    }
}

extension Pach150_PipelineInfo {
    /// Copies every field 1.5.0 has; see `Pach150_JobInfo.init(copying:)` for `parallelismSpec`.
    init(copying source: Read14_PipelineInfo) {
        self.init()
        id = source.id
        if source.hasPipeline { pipeline = Pach150_Pipeline(copying: source.pipeline) }
        version = source.version
        if source.hasTransform { transform = Pach150_Transform(copying: source.transform) }
        if source.hasParallelismSpec {
            parallelismSpec.constant = source.parallelismSpec.constant
            parallelismSpec.coefficient = source.parallelismSpec.coefficient
        }
        inputs = source.inputs.map(Pach150_PipelineInput.init(copying:))
        if source.hasEgress { egress = Pach150_Egress(copying: source.egress) }
        if source.hasCreatedAt { createdAt = source.createdAt }
        state = Pach150_PipelineState(copying: source.state)
        recentError = source.recentError
        jobCounts = source.jobCounts
        outputBranch = source.outputBranch
        if source.hasScaleDownThreshold { scaleDownThreshold = source.scaleDownThreshold }
        if source.hasResourceSpec { resourceSpec = Pach150_ResourceSpec(copying: source.resourceSpec) }
        if source.hasInput { input = Pach150_Input(copying: source.input) }
        description_p = source.description_p
        incremental = source.incremental
    }
}
