import ArgumentParser
import MigrationEngine

/// `--etcd-quota` and `--compact`, shared by plan and migrate.
struct SpaceOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "etcd's --quota-backend-bytes (bytes, or 8Gi, 8GiB, 8G, 8GB: Gi/GiB are 1024³, G/GB 1000³; etcd's default is 2GiB). "
                + "etcd does not tell its quota, so say it: the run refuses (exit 9) before writing if it would not fit, and stops "
                + "itself (exit 9, resumable) 1% below it (at least 256KiB) if a member's backend gets there.",
            valueName: "size"))
    var etcdQuota = ByteSize(bytes: SpacePolicy().quotaBytes)

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
        SpacePolicy(quotaBytes: etcdQuota.bytes, compactEvery: compact ? SpacePolicy.defaultCompactionInterval : nil)
    }
}
