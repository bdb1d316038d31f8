import ArgumentParser
import MigrationEngine

/// `--etcd-quota` and `--compact`, shared by plan and migrate.
struct SpaceOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "etcd's --quota-backend-bytes (bytes, or 8Gi, 8GiB, 8G, 8GB: Gi/GiB are 1024³, G/GB 1000³). "
                + "etcd does not tell its quota, so say it; without this flag etcd's default, 2GiB, is assumed (and plan says so). "
                + "The run refuses (exit 9) before writing if it would not fit, and stops "
                + "itself (exit 9, resumable) 1% below it (at least 256KiB) if a member's backend gets there.",
            valueName: "size"))
    var etcdQuota: ByteSize?

    @Flag(
        name: .long,
        help:
            """
            Make room as the run goes: compact etcd's history behind it (physical, every 500 writes) and, when a member nears \
            the quota, compact to the latest write and defragment every member, followers first and the leader last (each \
            stalls its member while it rewrites its file). Defragmenting needs the root role where auth is on; without it, \
            only compaction. History from before the run is lost (the backup keeps every original value).
            """
    )
    var compact = false

    var policy: SpacePolicy {
        SpacePolicy(quotaBytes: etcdQuota?.bytes ?? SpacePolicy().quotaBytes, compactEvery: compact ? SpacePolicy.defaultCompactionInterval : nil)
    }

    /// No `--etcd-quota`: the run compares with etcd's default, which a cluster may not use.
    var quotaAssumed: Bool { etcdQuota == nil }
}
