import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Foundation
import MigrationEngine
import PachydermMigrations
import PachydermSchema
import SwiftProtobuf

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
