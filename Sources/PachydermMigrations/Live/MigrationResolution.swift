import EtcdGateway
import MigrationEngine

/// What `plan` and `migrate` do once `--from` and `--to` are resolved against the cluster.
public struct ResolvedMigration: Sendable {
    public var detected: DetectedVersion
    /// Nil when the cluster holds no Pachyderm records.
    public var plan: MigrationPlan?
    /// The migration to run; nil when there is nothing to do (`nothingToDo` says why).
    public var migration: PachydermRecordMigration?
    public var nothingToDo: NothingToDo?

    /// Why there is nothing to do (the caller words it).
    public enum NothingToDo: Sendable, Hashable {
        /// The cluster holds no Pachyderm records (`detected` says what was seen).
        case noRecords
        /// The plan rewrites no record (`plan.summary` says why: 1.5.x patch releases store
        /// the same metadata).
        case noRecordToRewrite
    }

    /// Chooses the migration: `from` defaults to the detected version, `to` to 1.5.0. A
    /// cluster pachmigrate stamped with a version it does not know is refused; 1.5 records
    /// no pachmigrate run stamped are planned as a repair (they may be what another
    /// migration left half done: Pachyderm's own routine, or a 1.5 pachd on 1.4 data).
    public static func resolve(
        store: any KeyValueService, layout: PachydermLayout, namespace: Namespace, from: String? = nil, to: String? = nil,
        allowOpenCommits: Bool = false
    ) throws -> ResolvedMigration {
        let detected = try ClusterInspection.detectVersion(store: store, layout: layout, namespace: namespace)
        let to = to ?? VersionStepRegistry.defaultTarget.description
        let stamped = detected.source == .stamp
        if stamped, let version = detected.version, !VersionStepRegistry.knows(version) {
            throw MigrationError(
                .unsupportedVersion,
                "the cluster is stamped \(version), a version this pachmigrate does not know; use a newer pachmigrate")
        }
        if let stated = from { try requireRecordsMatch(stated: stated, to: to, detected: detected) }
        guard let from = from ?? detected.version else {
            return ResolvedMigration(detected: detected, nothingToDo: .noRecords)
        }
        let plan =
            if !stamped, let version = PachydermVersion(parsing: from), version.major == 1, version.minor == 5 {
                try VersionPlanner.repairPlan(at: from, to: to)
            } else {
                try VersionPlanner.plan(from: from, to: to)
            }
        if !plan.needsRewrite {
            return ResolvedMigration(detected: detected, plan: plan, nothingToDo: .noRecordToRewrite)
        }
        let entries = try ClusterInspection.openCommitEntries(store: store, layout: layout)
        return ResolvedMigration(
            detected: detected, plan: plan,
            migration: PachydermRecordMigration(
                layout: layout, plan: plan, allowOpenCommits: allowOpenCommits, openCommitEntries: entries))
    }

    /// A stated `--from` must agree with the records an unstamped cluster holds: 1.4 text
    /// only with `--from 1.5.x` would be "repaired" record by record, 1.5 binary only with
    /// `--from 1.4.x` is a cluster some other migration already converted. Either is a typo
    /// or the wrong cluster, refused (exit 5) before anything is read further or written. A
    /// mix of both is what an interrupted migration leaves; either `--from` handles it.
    static func requireRecordsMatch(stated: String, to: String, detected: DetectedVersion) throws(MigrationError) {
        guard detected.source == .records, let version = PachydermVersion(parsing: stated), version.major == 1 else { return }
        let sampled = detected.sampledText + detected.sampledBinary
        let found: String
        let fitting: String
        switch version.minor {
        case 5 where detected.sampledBinary == 0 && detected.sampledText > 0:
            found = "all \(sampled) sampled record(s) are 1.4 text, what Pachyderm 1.4.x stores"
            fitting = "pachmigrate migrate --from 1.4.x --to \(to)"
        case 4 where detected.sampledText == 0 && detected.sampledBinary > 0:
            found =
                "all \(sampled) sampled record(s) are already 1.5 binary and no pachmigrate run stamped the cluster "
                + "(another migration converted them)"
            fitting = "pachmigrate migrate --from 1.5.0 --to \(to), which checks and repairs what that migration left"
        default:
            return
        }
        throw MigrationError(
            .unsupportedVersion,
            "--from \(stated) contradicts the cluster: \(found). Nothing was written. "
                + "If this is the cluster you meant, run `\(fitting)` (or leave --from out: pachmigrate detects it)")
    }
}
