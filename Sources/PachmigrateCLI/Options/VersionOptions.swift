import ArgumentParser
import PachydermMigrations

/// `--from` and `--to`, shared by plan and migrate.
struct VersionOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Pachyderm release the metadata is at: 1.4.0 … 1.4.9 or 1.4.x. Default: detected from the cluster.",
            valueName: "version"))
    var from: String?

    @Option(name: .long, help: ArgumentHelp("Release to migrate to. Default: the newest pachmigrate knows (1.5.0).", valueName: "version"))
    var to: String?

    var target: String { to ?? "1.5.0" }

    /// The plan the flags alone decide, nil when `--from` is left to the cluster. Made
    /// before any etcd call, so a path that cannot exist (e.g. `--from 2.0.0 --to 1.5.0`)
    /// exits 5 even when etcd is unreachable, instead of 1 for the connection.
    func explicitPlan() throws(VersionPlanError) -> MigrationPlan? {
        guard let from else { return nil }
        return try VersionPlanner.plan(from: from, to: target)
    }
}
