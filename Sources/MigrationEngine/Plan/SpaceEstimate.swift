import EtcdGateway
import EtcdModel

/// What the run will do to etcd's backend, against its space quota. etcd keeps every old
/// value as history until a compaction, so rewriting every record grows the backend by
/// about one more copy of what is written; past `--quota-backend-bytes` etcd raises the
/// NOSPACE alarm and refuses every write, pachd's included, until an operator compacts,
/// defragments and disarms it. So the run compares the projection with the quota before
/// its first write, and its `SpaceGuard` holds it under the quota as it writes.
public struct SpaceEstimate: Sendable, Hashable, Encodable {
    /// The largest member's backend file now (`dbSize`): etcd holds each member to the quota.
    public var currentBytes: Int64
    /// The part of it in use (etcd 3.4+); the rest is free pages bbolt reuses first.
    public var inUseBytes: Int64?
    /// Keys and values the run writes: records, companions and the lanes' cursors.
    public var writeBytes: Int64
    /// What those writes add to the backend (`writeBytes` with etcd's per-revision cost).
    public var expectedGrowthBytes: Int64
    /// The backend's peak: where the writes take it, or in `compactionAndDefragmentation`
    /// at most the guard's limit, which the rounds keep it under.
    public var projectedBytes: Int64
    /// `--quota-backend-bytes`; etcd does not expose it, so the operator says it.
    public var quotaBytes: Int64
    /// Kept free below the quota: the guard stops the run before it (`SpaceLimits`).
    public var reserveBytes: Int64
    /// How the run keeps under the quota (from `--compact` and the user's permissions).
    public var mode: SpaceMode
    /// Whether the user may defragment (probed); nil when not asked (no `--compact`).
    public var defragmentPermitted: Bool?
    /// The run compacts its history behind itself.
    public var compacting: Bool
    /// With `compaction`: the projection were compaction to free nothing. How much of the old
    /// values' space bbolt can hand back depends on what shares their pages (measured: 24% to
    /// 68% of the uncompacted growth remained; docs/performance.md, "Space"), so past the
    /// limit here the guard may stop the run part way.
    public var uncompactedProjectedBytes: Int64?
    /// With `compactionAndDefragmentation`: what stays in use at most once every old value is
    /// compacted away, the floor a defragmentation can shrink a backend to.
    public var liveBytes: Int64?
    /// With `compactionAndDefragmentation`: about how many rounds of compaction and
    /// defragmentation the run needs.
    public var expectedRounds: Int?

    public var limitBytes: Int64 { quotaBytes - reserveBytes }
    public var fits: Bool {
        guard mode == .compactionAndDefragmentation, let liveBytes else { return projectedBytes <= limitBytes }
        return liveBytes + SpaceLimits(quotaBytes: quotaBytes).minimumWindowBytes <= limitBytes
    }
    /// Fits only if compaction frees enough of the old values' pages.
    public var fitsOnlyIfCompactionFrees: Bool { fits && (uncompactedProjectedBytes ?? 0) > limitBytes }

    /// What one record write costs the backend beyond the record's key and value: the lane
    /// cursor written in the same txn, the revision keys, the `mvccpb.KeyValue` framing and
    /// bbolt's page overhead. Measured on generated 1.4.8 clusters (docs/performance.md,
    /// "Space"): 367 bytes a record on etcd 3.1.4 and on 3.4.23 at 30k keys, 372 at 80k,
    /// when every record had a txn of its own. Records now share txns across ordering
    /// groups, but each still writes its own cursor put, and every put in a txn is its own
    /// backend key (revision main.sub), so the cost per record is counted as before; not
    /// re-measured with shared txns (one txn's header is shared, so it can only be less).
    public static let perWriteOverheadBytes: Int64 = 380
    /// Margin over the measured growth, so the estimate errs on the side of refusing.
    public static let margin: Double = 1.25

    public static func growth(writeBytes: Int64, writes: Int) -> Int64 {
        Int64(Double(writeBytes + Int64(writes) * perWriteOverheadBytes) * margin)
    }

    /// `writes`: record writes ahead (each also writes its lane's cursor, in whatever txn it
    /// shares); `replacedBytes`: the keys and old values they replace.
    public init(
        currentBytes: Int64, inUseBytes: Int64?, writeBytes: Int64, replacedBytes: Int64 = 0, writes: Int, limits: SpaceLimits,
        mode: SpaceMode, defragmentPermitted: Bool? = nil, compactEvery: Int = SpacePolicy.defaultCompactionInterval
    ) {
        self.currentBytes = currentBytes
        self.inUseBytes = inUseBytes
        self.writeBytes = writeBytes
        self.quotaBytes = limits.quotaBytes
        self.reserveBytes = limits.reserveBytes
        self.mode = mode
        self.compacting = mode != .plain
        self.defragmentPermitted = defragmentPermitted
        let growth = Self.growth(writeBytes: writeBytes, writes: writes)
        let base = inUseBytes ?? currentBytes
        // A file never shrinks without a defragmentation: the quota sees at least its size.
        let uncompacted = max(currentBytes, base + growth)
        switch mode {
        case .plain:
            expectedGrowthBytes = growth
            projectedBytes = uncompacted
        case .compaction:
            // Physical compaction every `compactEvery` writes frees the history behind it: the
            // decision counts two intervals' worth outstanding, and says where the backend
            // would end were bbolt to reuse none of the freed pages.
            let perWrite = Double(growth) / Double(max(1, writes))
            expectedGrowthBytes = Int64(perWrite * Double(min(writes, 2 * compactEvery)))
            projectedBytes = max(currentBytes, base + expectedGrowthBytes)
            uncompactedProjectedBytes = uncompacted
        case .compactionAndDefragmentation:
            expectedGrowthBytes = growth
            // Each record's new value replaces its old one; only the difference stays.
            let live = max(base, base + Int64(Double(writeBytes - replacedBytes) * Self.margin))
            liveBytes = live
            projectedBytes = min(uncompacted, limits.limitBytes)
            // Each round shrinks every backend to what is in use and leaves the room up to the
            // limit for the next writes.
            let window = max(1, limits.limitBytes - live)
            let beyondFirst = growth - max(0, limits.limitBytes - currentBytes)
            expectedRounds = beyondFirst <= 0 ? 0 : Int((beyondFirst + window - 1) / window)
        }
    }
}

/// How the run treats etcd's space.
public struct SpacePolicy: Sendable, Hashable {
    /// etcd's `--quota-backend-bytes` (its default: 2 GiB).
    public var quotaBytes: Int64 = 2 << 30
    /// `--compact`: compact (physically) every this many writes, and make room by compacting
    /// and defragmenting when the user may; nil: never.
    public var compactEvery: Int?

    /// Measured: physical compaction every 500 writes kept a full rewrite of the sample scaled
    /// to 10k records within 1.3× the starting backend on etcd 3.1.4 and 3.4.23 (every 1,000
    /// non-physical ones did not); on a generated 100k-key cluster 2,000 and 500 left the same
    /// growth, 8,000 more.
    public static let defaultCompactionInterval = 500

    public init(quotaBytes: Int64 = 2 << 30, compactEvery: Int? = nil) {
        self.quotaBytes = quotaBytes
        self.compactEvery = compactEvery
    }

    public var limits: SpaceLimits { SpaceLimits(quotaBytes: quotaBytes) }

    /// The mode a run takes: without `--compact`, plain; with it, compaction and
    /// defragmentation where the user may defragment, else compaction only.
    public func mode(defragmentPermitted: Bool) -> SpaceMode {
        guard compactEvery != nil else { return .plain }
        return defragmentPermitted ? .compactionAndDefragmentation : .compaction
    }
}
