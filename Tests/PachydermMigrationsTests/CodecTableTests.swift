import EtcdGateway
import EtcdTestSupport
import Foundation
import PachydermMigrations
import PachydermPatchSchemas
import PachydermSchema
import SwiftProtobuf
import Testing

/// Converts `text` as a `kind` record under a typical key and returns the 1.5.0 bytes and notes.
func convertText(_ kind: RecordKind, _ text: String, key: String? = nil) throws -> ConvertedValue {
    try Pachyderm14To15Step.convert(kind: kind, key: Array((key ?? defaultKey(kind)).utf8), value: Array(text.utf8))
}

func defaultKey(_ kind: RecordKind) -> String {
    switch kind {
    case .repo: "pachyderm_pfs/repos/r"
    case .commit: "pachyderm_pfs/commits/r/0123456789abcdef0123456789abcdef"
    case .branch: "pachyderm_pfs/branches/r/master"
    case .pipeline: "pachyderm_pps/pipelines/p"
    case .job: "pachyderm_pps/jobs/j1"
    }
}

/// Parses 1.5.0 *swift-protobuf* text (1.5 names: `output_branch`, `JOB_KILLED`) as the expected value.
func expected15(_ kind: RecordKind, _ text: String) throws -> AnyHashable {
    switch kind {
    case .repo: try canonical(Pach150_RepoInfo(textFormatString: text))
    case .commit: try canonical(Pach150_CommitInfo(textFormatString: text))
    case .branch: try canonical(Pach150_Commit(textFormatString: text))
    case .pipeline: try canonical(Pach150_PipelineInfo(textFormatString: text))
    case .job: try canonical(Pach150_JobInfo(textFormatString: text))
    }
}

/// Whether `text` parses with the schema of one 1.4 patch level.
func parses(_ schema: String, _ kind: RecordKind, _ text: String) -> Bool {
    func ok<M: Message>(_: M.Type) -> Bool { (try? M(textFormatString: text)) != nil }
    switch (schema, kind) {
    case ("1.4.0", .job): return ok(Pach140_JobInfo.self)
    case ("1.4.0", .pipeline): return ok(Pach140_PipelineInfo.self)
    case ("1.4.0", .repo): return ok(Pach140_RepoInfo.self)
    case ("1.4.2", .job): return ok(Pach142_JobInfo.self)
    case ("1.4.2", .pipeline): return ok(Pach142_PipelineInfo.self)
    case ("1.4.2", .repo): return ok(Pach142_RepoInfo.self)
    case ("1.4.3", .job): return ok(Pach143_JobInfo.self)
    case ("1.4.3", .pipeline): return ok(Pach143_PipelineInfo.self)
    case ("1.4.3", .repo): return ok(Pach143_RepoInfo.self)
    case ("1.4.8", .job): return ok(Pach148_JobInfo.self)
    case ("1.4.8", .pipeline): return ok(Pach148_PipelineInfo.self)
    case ("1.4.8", .repo): return ok(Pach148_RepoInfo.self)
    default: fatalError("no \(schema) \(kind) in this table")
    }
}

struct PatchLevelCase: Sendable, CustomTestStringConvertible {
    var name: String
    var kind: RecordKind
    /// gogo compact text as that release wrote it.
    var text: String
    /// Patch-level schemas that accept the text, and those that reject it.
    var parsesWith: [String]
    var failsWith: [String]
    /// (note kind, field) the step must report.
    var notes: [String]
    /// The expected 1.5.0 record in swift-protobuf text with 1.5 names.
    var expected: String
    var testDescription: String { name }
}

@Suite("Records of every 1.4 patch level")
struct PatchLevelTests {
    static let cases: [PatchLevelCase] = [
        PatchLevelCase(
            name: "1.4.0–1.4.1 JobInfo.error is dropped and reported", kind: .job,
            text: #"job:<id:"j1" > state:JOB_FAILURE stopped:true error:"datum /a failed:\n exit 1" "#,
            parsesWith: ["1.4.0"], failsWith: ["1.4.2", "1.4.3", "1.4.8"], notes: ["droppedField error"],
            expected: #"job { id: "j1" } state: JOB_FAILURE"#),
        PatchLevelCase(
            name: "1.4.2 reused number 20 as restart", kind: .job,
            text: #"job:<id:"j2" > state:JOB_SUCCESS stopped:true restart:3 "#,
            parsesWith: ["1.4.2", "1.4.3", "1.4.8"], failsWith: ["1.4.0"], notes: [],
            expected: #"job { id: "j2" } state: JOB_SUCCESS restart: 3"#),
        PatchLevelCase(
            name: "1.4.3 JOB_STOPPED becomes JOB_KILLED", kind: .job,
            text: #"job:<id:"j3" > state:JOB_STOPPED stopped:true "#,
            parsesWith: ["1.4.3", "1.4.8"], failsWith: ["1.4.0", "1.4.2"], notes: [],
            expected: #"job { id: "j3" } state: JOB_KILLED"#),
        PatchLevelCase(
            name: "≤1.4.3 PipelineInfo.gc_policy is dropped and reported", kind: .pipeline,
            text: #"pipeline:<name:"p" > gc_policy:<success:<seconds:1 > failure:<seconds:86400 > > state:PIPELINE_RUNNING "#,
            parsesWith: ["1.4.0", "1.4.2", "1.4.3"], failsWith: ["1.4.8"], notes: ["droppedField gc_policy"],
            expected: #"pipeline { name: "p" } state: PIPELINE_RUNNING"#),
        PatchLevelCase(
            name: "1.4.x PipelineInput inputs, outputBranch, scaleDownThreshold, PIPELINE_STOPPED", kind: .pipeline,
            text:
                #"pipeline:<name:"p" > inputs:<name:"in" repo:<name:"r" > branch:"master" glob:"/*" from:<repo:<name:"r" > id:"c1" > > "#
                + #"state:PIPELINE_STOPPED stopped:true outputBranch:"out" scaleDownThreshold:<seconds:600 > "#,
            parsesWith: ["1.4.0", "1.4.2", "1.4.3", "1.4.8"], failsWith: [], notes: [],
            expected:
                #"pipeline { name: "p" } inputs { name: "in" repo { name: "r" } branch: "master" glob: "/*" from { repo { name: "r" } id: "c1" } } "#
                + #"state: PIPELINE_PAUSED output_branch: "out" scale_down_threshold { seconds: 600 }"#
        ),
        PatchLevelCase(
            name: "1.4.6+ RepoInfo.description", kind: .repo,
            text: #"repo:<name:"r" > created:<seconds:1497000000 nanos:5 > size_bytes:42 provenance:<name:"a" > description:"d" "#,
            parsesWith: ["1.4.8"], failsWith: ["1.4.0", "1.4.2", "1.4.3"], notes: [],
            expected: #"repo { name: "r" } created { seconds: 1497000000 nanos: 5 } size_bytes: 42 provenance { name: "a" } description: "d""#),
        PatchLevelCase(
            name: "1.4.8 new_branch (Branch → BranchInfo), incremental, JobInput, outputRepo", kind: .job,
            text:
                #"job:<id:"j4" > inputs:<name:"in" commit:<repo:<name:"r" > id:"c" > glob:"/" lazy:true > state:JOB_RUNNING outputRepo:<name:"o" > "#
                + #"outputBranch:"master" new_branch:<name:"master" head:<repo:<name:"r" > id:"c" > > incremental:true "#,
            parsesWith: ["1.4.8"], failsWith: ["1.4.3"], notes: [],
            expected:
                #"job { id: "j4" } inputs { name: "in" commit { repo { name: "r" } id: "c" } glob: "/" lazy: true } "#
                + #"state: JOB_RUNNING output_repo { name: "o" } "#
                + #"output_branch: "master" new_branch { name: "master" head { repo { name: "r" } id: "c" } } incremental: true"#
        ),
    ]

    @Test(arguments: cases)
    func convertsWhateverThePatchLevel(_ c: PatchLevelCase) throws {
        for schema in c.parsesWith { #expect(parses(schema, c.kind, c.text), "\(schema) should parse it") }
        for schema in c.failsWith { #expect(!parses(schema, c.kind, c.text), "\(schema) should reject it") }
        let converted = try convertText(c.kind, c.text)
        #expect(converted.sourceEncoding == .text14)
        #expect(converted.notes.map { "\($0.kind) \($0.field ?? "")" } == c.notes)
        #expect(converted.notes.allSatisfy { $0.key == defaultKey(c.kind) })
        #expect(try canonical15(c.kind, converted.value) == expected15(c.kind, c.expected))
    }
}

@Suite("Enum renames, stopped, ParallelismSpec")
struct PolicyTests {
    static let jobStates: [(String, Bool, Pach150_JobState)] = [
        ("JOB_STARTING", false, .jobStarting), ("JOB_RUNNING", false, .jobRunning),
        ("JOB_FAILURE", true, .jobFailure), ("JOB_SUCCESS", true, .jobSuccess), ("JOB_STOPPED", true, .jobKilled),
    ]

    @Test("job states keep their numbers; JOB_STOPPED → JOB_KILLED", arguments: jobStates)
    func jobState(name: String, stopped: Bool, expected: Pach150_JobState) throws {
        let converted = try convertText(.job, "state:\(name) " + (stopped ? "stopped:true " : ""))
        #expect(try Pach150_JobInfo(serializedBytes: converted.value).state == expected)
        #expect(converted.notes.isEmpty)
        // A bare number parses too.
        let numeric = try convertText(.job, "state:\(expected.rawValue) " + (stopped ? "stopped:true " : ""))
        #expect(numeric.value == converted.value)
    }

    static let pipelineStates: [(String, Bool, Pach150_PipelineState)] = [
        ("PIPELINE_STARTING", false, .pipelineStarting), ("PIPELINE_RUNNING", false, .pipelineRunning),
        ("PIPELINE_RESTARTING", false, .pipelineRestarting), ("PIPELINE_FAILURE", true, .pipelineFailure),
        ("PIPELINE_STOPPED", true, .pipelinePaused),
    ]

    @Test("pipeline states keep their numbers; PIPELINE_STOPPED → PIPELINE_PAUSED", arguments: pipelineStates)
    func pipelineState(name: String, stopped: Bool, expected: Pach150_PipelineState) throws {
        let converted = try convertText(.pipeline, "state:\(name) " + (stopped ? "stopped:true " : ""))
        #expect(try Pach150_PipelineInfo(serializedBytes: converted.value).state == expected)
        #expect(converted.notes.isEmpty)
    }

    @Test("a 1.5 enum name is not 1.4 text")
    func newEnumNameRejected() throws {
        #expect(throws: RecordCodecError.self) { try convertText(.job, "state:JOB_KILLED ") }
    }

    @Test(
        "stopped that disagrees with state is dropped and reported",
        arguments: [
            (RecordKind.job, "state:JOB_RUNNING stopped:true "), (.job, "state:JOB_SUCCESS "),
            (.pipeline, "state:PIPELINE_RUNNING stopped:true "), (.pipeline, "state:PIPELINE_STOPPED "),
        ])
    func stoppedDisagreement(kind: RecordKind, text: String) throws {
        let converted = try convertText(kind, text)
        #expect(converted.notes.map(\.kind) == [.disagreement])
        #expect(converted.notes.first?.field == "stopped")
        #expect(converted.notes.first?.key == defaultKey(kind))
    }

    struct SpecCase: Sendable, CustomTestStringConvertible {
        var text: String
        /// Expected 1.5.0 `parallelism_spec` in swift-protobuf text; nil: absent.
        var expected: String?
        var normalized: Bool
        var testDescription: String { text.isEmpty ? "(no parallelism_spec)" : text }
    }

    static let specs: [SpecCase] = [
        SpecCase(text: "", expected: nil, normalized: false),
        SpecCase(text: "parallelism_spec:<> ", expected: "", normalized: false),
        SpecCase(text: "parallelism_spec:<constant:4 > ", expected: "constant: 4", normalized: false),
        SpecCase(text: "parallelism_spec:<strategy:CONSTANT constant:1 > ", expected: "constant: 1", normalized: false),
        SpecCase(text: "parallelism_spec:<strategy:COEFFICIENT coefficient:0.5 > ", expected: "coefficient: 0.5", normalized: false),
        SpecCase(text: "parallelism_spec:<strategy:1 coefficient:2 > ", expected: "coefficient: 2", normalized: false),
        // Stale values 1.4.8 ignored and 1.5.0 would reject ("Unable to interpret ParallelismSpec").
        SpecCase(text: "parallelism_spec:<strategy:COEFFICIENT constant:3 coefficient:1.5 > ", expected: "coefficient: 1.5", normalized: true),
        SpecCase(text: "parallelism_spec:<constant:3 coefficient:0.5 > ", expected: "constant: 3", normalized: true),
        SpecCase(text: "parallelism_spec:<coefficient:0.5 > ", expected: "", normalized: true),
    ]

    @Test("ParallelismSpec keeps the worker count 1.4.8 meant", arguments: specs, [RecordKind.job, .pipeline])
    func parallelismSpec(_ c: SpecCase, kind: RecordKind) throws {
        let state = kind == .job ? "state:JOB_RUNNING " : "state:PIPELINE_RUNNING "
        let converted = try convertText(kind, state + c.text)
        let spec: Pach150_ParallelismSpec?
        switch kind {
        case .job:
            let job = try Pach150_JobInfo(serializedBytes: converted.value)
            spec = job.hasParallelismSpec ? job.parallelismSpec : nil
        default:
            let pipeline = try Pach150_PipelineInfo(serializedBytes: converted.value)
            spec = pipeline.hasParallelismSpec ? pipeline.parallelismSpec : nil
        }
        #expect(try spec == c.expected.map { try Pach150_ParallelismSpec(textFormatString: $0) })
        #expect(converted.notes.map(\.kind) == (c.normalized ? [.normalized] : []))
        #expect(converted.notes.allSatisfy { $0.field == "parallelism_spec" })
    }

    @Test("an unknown strategy fails, naming the field")
    func unknownStrategy() throws {
        let error = try #require(throws: RecordCodecError.self) {
            try convertText(.pipeline, "parallelism_spec:<strategy:7 > ")
        }
        #expect(error.code == .invalidParallelismSpec)
        #expect(error.field == "parallelism_spec.strategy")
        #expect(error.key == "pachyderm_pps/pipelines/p")
    }
}

@Suite("Strings, empty values, binary values")
struct ValueFormTests {
    static let escapeCases: [(String, [UInt8])] = [
        (#"description:"plain" "#, Array("plain".utf8)),
        (#"description:"tab\there\nnew\rcr" "#, Array("tab\there\nnew\rcr".utf8)),
        (#"description:"q\"x\\y'z" "#, Array("q\"x\\y'z".utf8)),
        // Latin-1, not UTF-8: must survive as bytes (a Swift String field would reject it).
        (#"description:"\351 \357 \377 \376" "#, [0xe9, 0x20, 0xef, 0x20, 0xff, 0x20, 0xfe]),
        (#"description:"NUL=\000 DEL=\177" "#, Array("NUL=".utf8) + [0] + Array(" DEL=".utf8) + [0x7f]),
        (#"description:"\303\251t\303\251" "#, Array("été".utf8)),
        (#"description:"" "#, []),
    ]

    @Test("C and octal escapes, non-UTF-8 bytes", arguments: escapeCases)
    func escapes(text: String, expected: [UInt8]) throws {
        let converted = try convertText(.repo, #"repo:<name:"r" > "# + text)
        #expect([UInt8](try Pach150_RepoInfo(serializedBytes: converted.value).description_p) == expected)
    }

    @Test("extreme numbers and floats parse as gogo writes them")
    func extremes() throws {
        let job = try Pach150_JobInfo(
            serializedBytes: convertText(
                .job,
                "state:JOB_RUNNING data_processed:-9223372036854775808 data_total:9223372036854775807 pipeline_version:18446744073709551615 "
                    + "resource_spec:<cpu:inf gpu:-1 > "
            ).value)
        #expect(job.dataProcessed == .min && job.dataTotal == .max && job.pipelineVersion == .max)
        #expect(job.resourceSpec.cpu == .infinity && job.resourceSpec.gpu == -1)
        let nan = try Pach150_JobInfo(serializedBytes: convertText(.job, "resource_spec:<cpu:nan > ").value)
        #expect(nan.resourceSpec.cpu.isNaN)
    }

    @Test("deeply nested Input trees exceed swift-protobuf's default depth and still parse")
    func deepInput() throws {
        let depth = 300
        let text =
            "input:<" + String(repeating: "cross:<", count: depth) + #"atom:<name:"a" > "#
            + String(repeating: "> ", count: depth) + "> "
        var deep = BinaryDecodingOptions()
        deep.messageDepthLimit = 1000
        let job = try Pach150_JobInfo(serializedBytes: convertText(.job, text).value, options: deep)
        var input = job.input
        for _ in 0..<depth { input = try #require(input.cross.first) }
        #expect(input.atom.name == Data("a".utf8))
    }

    @Test("an empty value is an all-default record: empty 1.5 value plus a warning", arguments: RecordKind.allCases)
    func emptyValue(kind: RecordKind) throws {
        let converted = try convertText(kind, "")
        #expect(converted.value.isEmpty)
        #expect(converted.notes.map(\.kind) == [.warning])
    }

    @Test("our own 1.5 output is recognized as binary and converts to itself", arguments: RecordKind.allCases)
    func idempotent(kind: RecordKind) throws {
        let text: String =
            switch kind {
            case .repo: #"repo:<name:"r" > description:"\351" "#
            case .commit: #"commit:<repo:<name:"r" > id:"c" > started:<seconds:1 > "#
            case .branch: #"repo:<name:"r" > id:"c" "#
            case .pipeline:
                #"pipeline:<name:"p" > transform:<env:<key:"A" value:"" > > state:PIPELINE_STOPPED stopped:true "#
                    + #"parallelism_spec:<strategy:COEFFICIENT coefficient:1 > "#
            case .job: #"job:<id:"j" > state:JOB_SUCCESS stopped:true parallelism_spec:<constant:2 > "#
            }
        let once = try convertText(kind, text)
        let twice = try Pachyderm14To15Step.convert(kind: kind, key: Array(defaultKey(kind).utf8), value: once.value)
        #expect(twice.sourceEncoding == .binary15)
        #expect(twice.value == once.value)
        #expect(twice.notes.isEmpty)
    }

    @Test("Pachyderm 1.5.0's own output (removed fields kept) is binary; re-encoded without them, with a warning")
    func pachydermOwnOutput() throws {
        var job = Pach148_JobInfo()
        job.job.id = Data("j".utf8)
        job.state = .jobSuccess
        job.stopped = true
        job.parallelismSpec.strategy = .coefficient
        job.parallelismSpec.coefficient = 1
        let theirs: [UInt8] = try job.serializedBytes()
        let converted = try Pachyderm14To15Step.convert(kind: .job, key: Array("pachyderm_pps/jobs/j".utf8), value: theirs)
        #expect(converted.sourceEncoding == .binary15)
        #expect(converted.notes.map(\.kind) == [.warning])
        let ours = try convertText(.job, #"job:<id:"j" > parallelism_spec:<strategy:COEFFICIENT coefficient:1 > state:JOB_SUCCESS stopped:true "#)
        #expect(converted.value == ours.value)
    }
}

/// Pachyderm 1.5.0's own binary (encoded with the 1.4.8 messages) is repaired by the policy
/// for 1.4 text, reading the strategy it still carries (absent: CONSTANT); a clean 1.5
/// record with no removed field is left as 1.5.0 reads it.
@Suite("Repairing 1.5 binary left by another migration")
struct LeftoverRepairTests {
    struct Case: Sendable, CustomStringConvertible {
        var description: String
        var stopped: Bool
        var strategy: Pach148_ParallelismSpec.Strategy
        var constant: UInt64
        var coefficient: Double
        var problems: Set<LeftoverProblem>
        /// The 1.5 spec the repair writes: (constant, coefficient).
        var repaired: (UInt64, Double)
    }

    static let cases: [Case] = [
        Case(
            description: "clean 1.5 coefficient", stopped: false, strategy: .constant, constant: 0, coefficient: 0.5, problems: [], repaired: (0, 0.5)
        ),
        Case(description: "clean 1.5 constant", stopped: false, strategy: .constant, constant: 3, coefficient: 0, problems: [], repaired: (3, 0)),
        Case(
            description: "COEFFICIENT carried", stopped: false, strategy: .coefficient, constant: 0, coefficient: 2, problems: [.removedFields],
            repaired: (0, 2)),
        Case(
            description: "stale, COEFFICIENT", stopped: true, strategy: .coefficient, constant: 4, coefficient: 2,
            problems: [.removedFields, .staleParallelismSpec], repaired: (0, 2)),
        Case(
            description: "stale, CONSTANT absent", stopped: false, strategy: .constant, constant: 4, coefficient: 2,
            problems: [.staleParallelismSpec], repaired: (4, 0)),
        Case(
            description: "CONSTANT 0 with a coefficient, stopped carried", stopped: true, strategy: .constant, constant: 0, coefficient: 0.5,
            problems: [.removedFields, .strategyDependentParallelismSpec], repaired: (0, 0)),
    ]

    @Test(arguments: cases)
    func pipelineSpecs(_ c: Case) throws {
        var info = Pach148_PipelineInfo()
        info.pipeline.name = Data("p".utf8)
        info.state = c.stopped ? .pipelineStopped : .pipelineRunning
        info.stopped = c.stopped
        info.parallelismSpec.strategy = c.strategy
        info.parallelismSpec.constant = c.constant
        info.parallelismSpec.coefficient = c.coefficient
        let theirs: [UInt8] = try info.serializedBytes()
        let key = Array("pachyderm_pps/pipelines/p".utf8)
        let converted = try Pachyderm14To15Step.convert(kind: .pipeline, key: key, value: theirs)
        #expect(converted.sourceEncoding == .binary15)
        #expect(converted.changesRecord == !c.problems.isEmpty)
        let spec = try Pach150_PipelineInfo(serializedBytes: converted.value).parallelismSpec
        #expect(spec.constant == c.repaired.0 && spec.coefficient == c.repaired.1)
        // plan, migrate and verify classify with the same function.
        let decoded = try RecordCodec.decode(kind: .pipeline, key: key, value: theirs)
        #expect(LeftoverProblem.found(in: decoded.record) { _ in true } == c.problems)
    }

    @Test func envInAnotherOrderIsNotARepair() throws {
        var info = Pach148_PipelineInfo()
        info.pipeline.name = Data("p".utf8)
        info.transform.env = [("B", "2"), ("A", "1")].map { k, v in
            var e = Pach148_EnvEntry()
            e.key = Data(k.utf8)
            e.value = Data(v.utf8)
            return e
        }
        let theirs: [UInt8] = try info.serializedBytes()
        let converted = try Pachyderm14To15Step.convert(kind: .pipeline, key: Array("pachyderm_pps/pipelines/p".utf8), value: theirs)
        #expect(!converted.changesRecord)
        #expect(try Pach150_PipelineInfo(serializedBytes: converted.value).transform.env.map(\.key) == [Data("A".utf8), Data("B".utf8)])
    }
}
