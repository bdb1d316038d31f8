import EtcdGateway
import Foundation
import MigrationEngine
import PachydermMigrations
import PachydermSchema
import SwiftProtobuf

/// Fixtures copied from testdata/pachyderm-1.4.8-sample (see Fixtures/…/README.md).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/pachyderm-1.4.8-sample")

    static func path(_ sample: String, _ file: String) -> String {
        directory.appendingPathComponent(sample).appendingPathComponent(file).path
    }

    static func before(_ sample: String) throws -> [KeyValue] {
        let reader = try DumpReader(path: path(sample, "before.etcd.jsonl"))
        var kvs: [KeyValue] = []
        while let kv = try reader.read() { kvs.append(kv) }
        return kvs
    }

    /// Pachyderm 1.5.0's own result: key → exact value bytes (records only, no index keys).
    static func pachydermAfter(_ sample: String) throws -> [String: [UInt8]] {
        let text = try String(contentsOfFile: path(sample, "after-pachyderm-1.5.0.decoded.jsonl"), encoding: .utf8)
        var out: [String: [UInt8]] = [:]
        for line in text.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            if object["index"] as? Bool == true { continue }
            out[object["key"] as! String] = [UInt8](Data(base64Encoded: object["value_b64"] as! String)!)
        }
        return out
    }
}

/// Semantic form of a 1.5.0 message for comparisons: unknown fields dropped (Pachyderm's
/// bytes keep the removed `stopped`/`strategy`), env entries sorted (Go map order is random).
func canonical<M: Message>(_ message: M) throws -> M {
    var copy = try M(jsonString: message.jsonString())
    if var job = copy as? Pach150_JobInfo {
        job.transform.env.sort { $0.key.lexicographicallyPrecedes($1.key) }
        copy = job as! M
    }
    if var pipeline = copy as? Pach150_PipelineInfo {
        pipeline.transform.env.sort { $0.key.lexicographicallyPrecedes($1.key) }
        copy = pipeline as! M
    }
    return copy
}

/// Decodes 1.5.0 bytes of `kind` and returns its canonical form, type-erased for `#expect`.
func canonical15(_ kind: RecordKind, _ bytes: [UInt8]) throws -> AnyHashable {
    switch kind {
    case .repo: try canonical(Pach150_RepoInfo(serializedBytes: bytes))
    case .commit: try canonical(Pach150_CommitInfo(serializedBytes: bytes))
    case .branch: try canonical(Pach150_Commit(serializedBytes: bytes))
    case .pipeline: try canonical(Pach150_PipelineInfo(serializedBytes: bytes))
    case .job: try canonical(Pach150_JobInfo(serializedBytes: bytes))
    }
}

extension KeyValue {
    var keyText: String { String(decoding: key, as: UTF8.self) }
}

let layout = PachydermLayout()
