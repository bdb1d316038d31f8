import EtcdModel
import PachydermSchema
import SwiftProtobuf

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The result of converting one record's value.
public struct ConvertedValue: Sendable, Hashable {
    /// The 1.5.0 binary value to store.
    public var value: [UInt8]
    /// How the input was encoded (`.binary15`: it had been migrated already).
    public var sourceEncoding: StoredEncoding
    public var notes: [MigrationNote]
    /// The record as read, so callers that need more than the new bytes (the at-rest
    /// checks, the reprocessing forecast) do not decode it a second time.
    public var source: Decoded14Record
    /// False when the source was 1.5 binary that already means exactly `value` (the same
    /// fields, map entries in any order): nothing to repair.
    public var changesRecord = true

    /// For a commit without `finished`: its `Commit`, from which the 1.5.0
    /// `openCommits/<id>` entry is built (`PachydermLayout.openCommitEntry`). nil otherwise.
    public var openCommit: Read14_Commit? {
        if case .commit(let info) = source, info.isOpen { info.commit } else { nil }
    }
}

/// Pachyderm 1.4.x → 1.5.0 for one record: decode any 1.4.x record whatever the
/// cluster's patch level, drop what 1.5.0 has no place for, normalize ParallelismSpec,
/// rename enums and `Branch`→`BranchInfo` (same numbers), encode deterministic binary.
public enum Pachyderm14To15Step {
    public static func convert(kind: RecordKind, key: [UInt8], value: [UInt8]) throws(RecordCodecError)
        -> ConvertedValue
    {
        let decoded = try RecordCodec.decode(kind: kind, key: key, value: value)
        let (record, encoding) = (decoded.record, decoded.encoding)
        var notes: [MigrationNote] = []
        let keyText = key.printable
        if value.isEmpty {
            notes.append(
                MigrationNote(kind: .warning, key: keyText, message: "empty value: an all-default \(kind) record; written as an empty 1.5.0 value"))
        }
        let bytes = try convert(record, key: key, keyText: keyText, source: encoding, notes: &notes)
        var converted = ConvertedValue(value: bytes, sourceEncoding: encoding, notes: notes, source: record)
        if encoding == .binary15 {
            // Map entries in another order (Go writes them in map order) mean the same record.
            converted.changesRecord = try RecordCodec.canonicalBinary(record, key: key) != bytes
            if converted.changesRecord {
                // Open commits aside: whether their entry exists is the live migration's to say.
                let problems = LeftoverProblem.found(in: record) { _ in true }
                let what = problems.isEmpty ? "" : " (" + problems.sorted().map(\.rawValue).joined(separator: ", ") + ")"
                converted.notes.append(
                    MigrationNote(
                        kind: .warning, key: keyText,
                        message: "1.5.0 binary left by another migration\(what): repaired by the same policy"))
            }
        }
        return converted
    }

    /// Converts a decoded record. `source` is how it was stored: 1.5 binary has no `stopped`
    /// and no `strategy` on the wire, so their absence there means nothing.
    static func convert(
        _ record: Decoded14Record, key: [UInt8], keyText: String, source: StoredEncoding, notes: inout [MigrationNote]
    ) throws(RecordCodecError) -> [UInt8] {
        let fromText = source == .text14
        // Pachyderm's own binary (it still carries stopped/strategy) holds 1.4.8 semantics.
        func fourteenSemantics(_ stopped: Bool, _ spec: Read14_ParallelismSpec?) -> Bool {
            fromText || LeftoverProblem.carriesRemovedFields(stopped: stopped, spec: spec)
        }
        switch record {
        case .repo(let info):
            return try RecordCodec.encode15(Pach150_RepoInfo(copying: info), key: key)
        case .commit(let info):
            return try RecordCodec.encode15(Pach150_CommitInfo(copying: info), key: key)
        case .branch(let head):
            return try RecordCodec.encode15(Pach150_Commit(copying: head), key: key)
        case .pipeline(let info):
            var out = Pach150_PipelineInfo(copying: info)
            if info.hasGcPolicy {
                notes.append(
                    MigrationNote(
                        kind: .droppedField, key: keyText, field: "gc_policy",
                        message: "dropped ≤1.4.3 gc_policy (\(info.gcPolicy.textFormatString().trimmed)); 1.5.0 has no such field"))
            }
            noteStopped(
                info.stopped, expected: expectedStopped(info.state), state: "pipeline state \(info.state)", fromText: fromText,
                keyText: keyText, notes: &notes)
            if info.hasParallelismSpec {
                out.parallelismSpec = try normalize(
                    info.parallelismSpec, fourteenSemantics: fourteenSemantics(info.stopped, info.parallelismSpec), key: keyText,
                    notes: &notes)
            }
            return try RecordCodec.encode15(out, key: key)
        case .job(let info):
            var out = Pach150_JobInfo(copying: info)
            if !info.error.isEmpty {
                notes.append(
                    MigrationNote(
                        kind: .droppedField, key: keyText, field: "error",
                        message: "dropped 1.4.0–1.4.1 error (\(info.error.count) bytes, the log of the last failed datum); 1.5.0 has no such field"))
            }
            noteStopped(
                info.stopped, expected: expectedStopped(info.state), state: "job state \(info.state)", fromText: fromText,
                keyText: keyText, notes: &notes)
            if info.hasParallelismSpec {
                out.parallelismSpec = try normalize(
                    info.parallelismSpec, fourteenSemantics: fourteenSemantics(info.stopped, info.parallelismSpec), key: keyText,
                    notes: &notes)
            }
            return try RecordCodec.encode15(out, key: key)
        }
    }

    /// `stopped` is dropped (1.5.0 goes by state); say so when it disagreed with the state,
    /// and warn about a state 1.4.8 did not know.
    static func noteStopped(
        _ stopped: Bool, expected: Bool?, state: String, fromText: Bool, keyText: String, notes: inout [MigrationNote]
    ) {
        if let expected, expected != stopped, fromText || stopped {
            notes.append(
                MigrationNote(
                    kind: .disagreement, key: keyText, field: "stopped",
                    message: "stopped=\(stopped) disagrees with \(state) (1.4.8 derives stopped=\(expected)); "
                        + "stopped is dropped, 1.5.0 goes by state"))
        } else if expected == nil {
            notes.append(MigrationNote(kind: .warning, key: keyText, field: "state", message: "unknown \(state), copied as is"))
        }
    }

    /// Pachyderm 1.4.8's `jobStateToStopped`: a job is stopped once it reached a final state
    /// (JOB_SUCCESS, JOB_FAILURE, JOB_STOPPED); both samples agree on every job.
    public static func expectedStopped(_ state: Read14_JobState) -> Bool? {
        switch state {
        case .jobStarting, .jobRunning: false
        case .jobFailure, .jobSuccess, .jobStopped: true
        case .UNRECOGNIZED: nil
        }
    }

    /// Pachyderm 1.4.8's `pipelineStateToStopped`: PIPELINE_STOPPED and PIPELINE_FAILURE.
    public static func expectedStopped(_ state: Read14_PipelineState) -> Bool? {
        switch state {
        case .pipelineStarting, .pipelineRunning, .pipelineRestarting: false
        case .pipelineStopped, .pipelineFailure: true
        case .UNRECOGNIZED: nil
        }
    }

    /// Keeps the number of workers 1.4.8 would start. 1.5.0 has no strategy and
    /// rejects a spec with both constant and coefficient set.
    /// `fourteenSemantics`: the spec is 1.4 text, or binary Pachyderm's routine wrote with the
    /// 1.4.8 messages (it still carries stopped or strategy), where an absent strategy is
    /// CONSTANT. Otherwise a binary spec with only `coefficient` set is 1.5.0's own
    /// coefficient, and is kept as it is.
    static func normalize(_ spec: Read14_ParallelismSpec, fourteenSemantics: Bool, key: String, notes: inout [MigrationNote])
        throws(RecordCodecError) -> Pach150_ParallelismSpec
    {
        var out = Pach150_ParallelismSpec()
        if !fourteenSemantics && spec.strategy == .constant && spec.constant == 0 {
            out.coefficient = spec.coefficient
            return out
        }
        switch spec.strategy {
        case .constant:
            if spec.constant > 0 {
                out.constant = spec.constant
            }
            if spec.coefficient != 0 {
                notes.append(
                    MigrationNote(
                        kind: .normalized, key: key, field: "parallelism_spec",
                        message: "CONSTANT strategy with constant \(spec.constant) and a stale coefficient \(spec.coefficient): "
                            + "coefficient cleared, as 1.4.8 ignored it"
                            + (spec.constant == 0 ? " (constant 0: one worker per node, as in 1.4.8)" : "")))
            }
        case .coefficient:
            out.coefficient = spec.coefficient
            if spec.constant != 0 {
                notes.append(
                    MigrationNote(
                        kind: .normalized, key: key, field: "parallelism_spec",
                        message: "COEFFICIENT strategy with a stale constant \(spec.constant): constant cleared, as 1.4.8 "
                            + "ignored it (1.5.0 rejects a spec with both set)"))
            }
        case .UNRECOGNIZED(let raw):
            throw RecordCodecError(
                code: .invalidParallelismSpec, key: key, field: "parallelism_spec.strategy",
                message: "strategy \(raw) is neither CONSTANT nor COEFFICIENT; 1.4.8 could not interpret it either. "
                    + "Set the pipeline's parallelism_spec explicitly, then run again.")
        }
        return out
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s).replacing("\n", with: " ")
    }
}
