import EtcdGateway
import EtcdModel
import MigrationEngine
import PachydermSchema
import SwiftProtobuf

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public struct VerificationReport: Sendable, Encodable {
    /// What the records were checked against.
    public var expectedVersion: String
    public var counts: [String: Int]
    /// Any problem fails `verify` (exit 6).
    public var problems: [VerificationProblem]
    /// Worth knowing, harmless to Pachyderm (e.g. fields 1.5.0 ignores).
    public var warnings: [String]
    public var ok: Bool { problems.isEmpty }

    mutating func problem(_ kind: VerificationProblem.Kind, _ key: String?, _ detail: String) {
        problems.append(VerificationProblem(kind: kind, key: key, detail: detail))
    }
}

/// One thing `verify` found wrong: about one record (its key), or about the whole cluster.
public struct VerificationProblem: Sendable, Hashable, Encodable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// The value decodes neither as 1.4 text nor as 1.5 binary, or not with the 1.5.0 schema.
        case undecodable
        /// Stored in the other release's encoding than the one expected.
        case wrongEncoding
        /// What another migration left (`LeftoverProblem`); `migrate` repairs it.
        case leftover
        /// A reference to a repo or commit that does not exist.
        case danglingReference
        /// Fewer records than the journal's last migration recorded.
        case missingRecords
    }
    public var kind: Kind
    public var key: String?
    public var detail: String

    public var description: String { key.map { "\($0): \(detail)" } ?? detail }

    /// Encoded as its sentence, the form `verify --output json` has always had.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Checks a cluster's Pachyderm records: each decodes with the expected version's schema,
/// and the references between them resolve.
public struct PachydermVerifier: Sendable {
    public let layout: PachydermLayout
    public let pageSize: Int

    public init(layout: PachydermLayout, pageSize: Int = 1000) {
        self.layout = layout
        self.pageSize = pageSize
    }

    /// `expectedVersion`: `1.5.x` requires every record in 1.5 binary; `1.4.x` in 1.4 text.
    /// `journalCounts`: records per kind (`RecordKind.collection`) the last migration wrote
    /// (`HistoryEntry.writtenCounts`), checked when given.
    public func verify(
        store: any KeyValueService, expectedVersion: String, journalCounts: [String: Int]? = nil
    ) throws(MigrationError) -> VerificationReport {
        var report = VerificationReport(expectedVersion: expectedVersion, counts: [:], problems: [], warnings: [])
        let existing = try checkRecords(store: store, expectedVersion: expectedVersion, report: &report)
        try checkReferences(store: store, existing: existing, report: &report)
        if let journalCounts { checkCounts(journalCounts, report: &report) }
        return report
    }

    /// The repos, commits and pipelines that exist, for the references to resolve against.
    private struct ExistingRecords {
        var repos = Set<Data>()
        var commits = Set<Data>()
        var pipelines = Set<Data>()
    }

    /// Pass 1: every record decodes as the expected version; collects what exists.
    private func checkRecords(
        store: any KeyValueService, expectedVersion: String, report: inout VerificationReport
    ) throws(MigrationError) -> ExistingRecords {
        let wants15 = expectedVersion.hasPrefix("1.5")
        let openCommitEntries = wants15 ? try ClusterInspection.openCommitEntries(store: store, layout: layout) : []
        var existing = ExistingRecords()
        for kind in RecordKind.allCases {
            try ClusterInspection.scanRecords(store: store, layout: layout, kind: kind, pageSize: pageSize) { kv in
                report.counts[kind.rawValue, default: 0] += 1
                let key = kv.key.printable
                let decoded: DecodedRecord
                do {
                    decoded = try RecordCodec.decode(kind: kind, key: kv.key, value: kv.value)
                } catch {
                    report.problem(.undecodable, key, "does not decode: \(error)")
                    return
                }
                if wants15 && decoded.encoding != .binary15 {
                    report.problem(.wrongEncoding, key, "still 1.4 text; the cluster is not fully migrated (`pachmigrate migrate` converts it)")
                    return
                }
                if !wants15 && decoded.encoding != .text14 {
                    report.problem(.wrongEncoding, key, "1.5 binary in a cluster expected at \(expectedVersion)")
                }
                if wants15 {
                    check15(kind: kind, kv: kv, report: &report)
                    // The same classification `plan` reports and `migrate` repairs.
                    let problems = LeftoverProblem.found(in: decoded.record) {
                        openCommitEntries.contains(layout.openCommitKey(forOpen: $0))
                    }
                    for problem in problems.sorted() {
                        report.problem(.leftover, key, "\(problem.rawValue): \(problem.summary); `pachmigrate migrate` repairs it: \(problem.remedy)")
                    }
                }
                switch decoded.record {
                case .repo(let info): existing.repos.insert(info.repo.name)
                case .commit(let info): existing.commits.insert(commitRef(info.commit.repo.name, info.commit.id))
                case .pipeline(let info): existing.pipelines.insert(info.pipeline.name)
                default: break
                }
            }
        }
        return existing
    }

    /// Pass 2: the references between records resolve.
    private func checkReferences(
        store: any KeyValueService, existing: ExistingRecords, report: inout VerificationReport
    ) throws(MigrationError) {
        for kind: RecordKind in [.repo, .commit, .branch, .job] {
            try ClusterInspection.scanRecords(store: store, layout: layout, kind: kind, pageSize: pageSize) { kv in
                guard let decoded = try? RecordCodec.decode(kind: kind, key: kv.key, value: kv.value) else { return }
                checkReferences(of: decoded.record, key: kv.key.printable, existing: existing, report: &report)
            }
        }
    }

    private func checkReferences(of record: Decoded14Record, key: String, existing: ExistingRecords, report: inout VerificationReport) {
        switch record {
        case .repo(let info):
            for repo in info.provenance where !existing.repos.contains(repo.name) {
                report.problem(.danglingReference, key, "provenance repo \(text(repo.name)) does not exist")
            }
        case .commit(let info):
            if !existing.repos.contains(info.commit.repo.name) {
                report.problem(.danglingReference, key, "repo \(text(info.commit.repo.name)) does not exist")
            }
            if info.hasParentCommit && !existing.commits.contains(commitRef(info.parentCommit.repo.name, info.parentCommit.id)) {
                report.problem(
                    .danglingReference, key, "parent commit \(text(info.parentCommit.repo.name))@\(text(info.parentCommit.id)) does not exist"
                )
            }
            for p in info.provenance where !existing.commits.contains(commitRef(p.repo.name, p.id)) {
                report.problem(.danglingReference, key, "provenance commit \(text(p.repo.name))@\(text(p.id)) does not exist")
            }
        case .branch(let head):
            if !existing.repos.contains(head.repo.name) {
                report.problem(.danglingReference, key, "repo \(text(head.repo.name)) does not exist")
            } else if !head.id.isEmpty && !existing.commits.contains(commitRef(head.repo.name, head.id)) {
                report.problem(.danglingReference, key, "head commit \(text(head.repo.name))@\(text(head.id)) does not exist")
            }
        case .job(let info):
            if info.hasPipeline && !existing.pipelines.contains(info.pipeline.name) {
                report.warnings.append("\(key): job of pipeline \(text(info.pipeline.name)), which no longer exists")
            }
        default:
            break
        }
    }

    /// No fewer records of a kind than the journal's last migration wrote.
    private func checkCounts(_ journalCounts: [String: Int], report: inout VerificationReport) {
        let foundPerCollection = Dictionary(uniqueKeysWithValues: RecordKind.allCases.map { ($0.collection, report.counts[$0.rawValue] ?? 0) })
        for (kind, expected) in journalCounts {
            let found = foundPerCollection[kind] ?? 0
            if found < expected {
                report.problem(.missingRecords, nil, "the journal records \(expected) \(kind) migrated, but only \(found) exist now")
            }
        }
    }

    /// Decodes with the 1.5.0 schema itself. Fields it does not know are the removed ones,
    /// and `LeftoverProblem` names them (with stale specs) as problems a repair fixes.
    private func check15(kind: RecordKind, kv: KeyValue, report: inout VerificationReport) {
        let key = kv.key.printable
        let bytes = Data(kv.value)
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 1000
            switch kind {
            case .repo: _ = try Pach150_RepoInfo(serializedBytes: bytes, options: options)
            case .commit: _ = try Pach150_CommitInfo(serializedBytes: bytes, options: options)
            case .branch: _ = try Pach150_Commit(serializedBytes: bytes, options: options)
            case .pipeline: _ = try Pach150_PipelineInfo(serializedBytes: bytes, options: options)
            case .job: _ = try Pach150_JobInfo(serializedBytes: bytes, options: options)
            }
        } catch {
            report.problem(.undecodable, key, "does not decode with the 1.5.0 schema: \(error)")
        }
    }
}

private func commitRef(_ repo: Data, _ id: Data) -> Data {
    repo + Data([0]) + id
}

private func text(_ data: Data) -> String {
    Array(data).printable
}
