import EtcdModel
import PachydermSchema
import SwiftProtobuf

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A record decoded with the 1.4 read schema (which knows every 1.4.x field name).
/// Branch values are the head `Commit`, not a `Branch` message.
public enum Decoded14Record: Sendable, Hashable {
    case repo(Read14_RepoInfo)
    case commit(Read14_CommitInfo)
    case branch(Read14_Commit)
    case pipeline(Read14_PipelineInfo)
    case job(Read14_JobInfo)

    public var kind: RecordKind {
        switch self {
        case .repo: .repo
        case .commit: .commit
        case .branch: .branch
        case .pipeline: .pipeline
        case .job: .job
        }
    }
}

/// How a stored value was encoded.
public enum StoredEncoding: String, Sendable, Hashable {
    /// 1.4.x gogo compact text.
    case text14
    /// 1.5.0 protobuf binary: already migrated (by this tool, or by Pachyderm 1.5.0's own routine).
    case binary15
}

/// Reads one stored value of a record kind in either encoding.
/// A stored record as read: what it holds, and how it was stored.
public struct DecodedRecord: Sendable {
    public var record: Decoded14Record
    public var encoding: StoredEncoding
}

public enum RecordCodec {
    /// Classifies and decodes `value`: 1.4 text, else 1.5 binary (already migrated), else an
    /// error naming `key` (and the field and byte offset when they can be found).
    ///
    /// Text is tried first when the value starts like text (`name:`), and must then be pure
    /// printable ASCII. Binary values start with a tag byte < 0x20 for every message here, so
    /// the two cannot be confused. Binary is decoded with the 1.4 read schema, whose numbers
    /// are a superset of 1.5.0's, so values 1.5.0's own routine wrote (still holding the
    /// removed `stopped`/`strategy` fields) decode too and are cleaned by the step.
    public static func decode(kind: RecordKind, key: [UInt8], value: [UInt8]) throws(RecordCodecError)
        -> DecodedRecord
    {
        let keyText = key.printable
        if value.isEmpty || GogoText.looksLikeText(value) {
            if let offset = GogoText.firstNonTextByte(value) {
                // A value can start like text and still be binary only by accident; try it.
                if let record = try? decodeBinary(kind: kind, value: value) { return DecodedRecord(record: record, encoding: .binary15) }
                throw RecordCodecError(
                    code: .nonTextByte, key: keyText, byteOffset: offset,
                    message: "byte 0x\(String(value[offset], radix: 16)) in what looks like 1.4 text; gogo's text "
                        + "writer escapes every byte outside printable ASCII as \\ooo, so the value was altered "
                        + "after Pachyderm wrote it. Compare it with the backup, fix or delete the key, then run again.")
            }
            return DecodedRecord(record: try decodeText(kind: kind, value: value, key: keyText), encoding: .text14)
        }
        do {
            return DecodedRecord(record: try decodeBinary(kind: kind, value: value), encoding: .binary15)
        } catch {
            throw RecordCodecError(
                code: .notARecord, key: keyText, byteOffset: 0,
                message: "neither 1.4 text nor 1.5.0 binary of a \(kind) record (binary decoding: \(error)). "
                    + "Check the key belongs to Pachyderm and the value is intact; fix or delete it, then run again.")
        }
    }

    static func decodeText(kind: RecordKind, value: [UInt8], key: String) throws(RecordCodecError) -> Decoded14Record {
        switch kind {
        case .repo: .repo(try GogoText.decode(Read14_RepoInfo.self, value: value, key: key))
        case .commit: .commit(try GogoText.decode(Read14_CommitInfo.self, value: value, key: key))
        case .branch: .branch(try GogoText.decode(Read14_Commit.self, value: value, key: key))
        case .pipeline: .pipeline(try GogoText.decode(Read14_PipelineInfo.self, value: value, key: key))
        case .job: .job(try GogoText.decode(Read14_JobInfo.self, value: value, key: key))
        }
    }

    /// The deepest message nesting accepted, text or binary: far beyond any real `Input`
    /// tree, and shallow enough that decoding (which recurses per level) fits the stack of
    /// any thread it runs on (1 MiB at 500 levels in a debug build). Deeper values fail
    /// with `.malformedText` / `.notARecord` naming the key.
    static let messageDepthLimit = 500

    private static let binaryOptions: BinaryDecodingOptions = {
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = messageDepthLimit
        return options
    }()

    struct NotBinary15: Error, CustomStringConvertible { var description: String }

    /// Strict: fields 1.5.0 does not know (top-level unknown fields, or the text-only
    /// `error`/`gc_policy` of the read schema) mean the bytes are not a 1.5.0 record.
    static func decodeBinary(kind: RecordKind, value: [UInt8]) throws -> Decoded14Record {
        func strict<M: Message>(_ type: M.Type) throws -> M {
            let message = try M(serializedBytes: value, options: binaryOptions)
            guard message.unknownFields.data.isEmpty else {
                throw NotBinary15(description: "fields unknown to \(kind) records")
            }
            return message
        }
        switch kind {
        case .repo: return .repo(try strict(Read14_RepoInfo.self))
        case .commit: return .commit(try strict(Read14_CommitInfo.self))
        case .branch: return .branch(try strict(Read14_Commit.self))
        case .pipeline:
            let info = try strict(Read14_PipelineInfo.self)
            if info.hasGcPolicy { throw NotBinary15(description: "field 12 (gc_policy) is not in 1.5.0") }
            return .pipeline(info)
        case .job:
            let info = try strict(Read14_JobInfo.self)
            if !info.error.isEmpty { throw NotBinary15(description: "field 1020 is not in 1.5.0") }
            return .job(info)
        }
    }

    /// A binary record's bytes in this tool's form, whatever fields it carries: map entries
    /// sorted (`Transform.env` by key, as `encode15` does), deterministic encoding. Equal to
    /// the converted value exactly when the record needs no repair.
    static func canonicalBinary(_ record: Decoded14Record, key: [UInt8]) throws(RecordCodecError) -> [UInt8] {
        switch record {
        case .repo(let info): return try encode15(info, key: key)
        case .commit(let info): return try encode15(info, key: key)
        case .branch(let head): return try encode15(head, key: key)
        // Only when present: assigning into an absent transform would make it present.
        case .pipeline(var info):
            if info.hasTransform { info.transform.env = info.transform.env.sortedByKey() }
            return try encode15(info, key: key)
        case .job(var info):
            if info.hasTransform { info.transform.env = info.transform.env.sortedByKey() }
            return try encode15(info, key: key)
        }
    }

    /// Deterministic (map entries sorted) 1.5.0 binary.
    public static func encode15<M: Message>(_ message: M, key: [UInt8]) throws(RecordCodecError) -> [UInt8] {
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        do {
            return try message.serializedBytes(options: options)
        } catch {
            throw RecordCodecError(
                code: .encodingFailed, key: key.printable,
                message: "1.5.0 binary encoding failed (\(error)); this is a bug in pachmigrate, please report it.")
        }
    }
}

extension Array where Element == Read14_EnvEntry {
    /// `Transform.env` is a Go map, stored in map-iteration order: sorted by key, stably (a
    /// repeated key keeps its last-wins order), so every writer's bytes compare equal.
    func sortedByKey() -> [Read14_EnvEntry] {
        enumerated().sorted { a, b in
            a.element.key == b.element.key ? a.offset < b.offset : a.element.key.lexicographicallyPrecedes(b.element.key)
        }.map(\.element)
    }
}
