import EtcdGateway
import EtcdModel

/// What the run will do to etcd's backend, against its space quota. etcd keeps every old
/// value as history until a compaction, so rewriting every record grows the backend by
/// about one more copy of what is written; past `--quota-backend-bytes` etcd raises the
/// NOSPACE alarm and refuses every write, pachd's included, until an operator compacts,
/// defragments and disarms it. So the run compares the projection with the quota before
/// its first write.
public struct SpaceEstimate: Sendable, Hashable, Encodable {
    /// The backend file's size now (`dbSize`), as the member in use reports it.
    public var currentBytes: Int64
    /// The part of it in use (etcd 3.4+); the rest is free pages bbolt reuses first.
    public var inUseBytes: Int64?
    /// Keys and values the run writes: records, companions and the lanes' cursors.
    public var writeBytes: Int64
    /// What those writes add to the backend (`writeBytes` with etcd's per-revision cost).
    public var expectedGrowthBytes: Int64
    public var projectedBytes: Int64
    /// `--quota-backend-bytes`; etcd does not expose it, so the operator says it.
    public var quotaBytes: Int64
    /// The run compacts its history behind itself (`SpacePolicy.compactEvery` writes apart).
    public var compacting: Bool
    /// With `compacting`: the projection were compaction to free nothing. How much of the old
    /// values' space bbolt can hand back depends on what shares their pages (measured: 24% to
    /// 68% of the uncompacted growth remained; docs/performance.md, "Space"), so past the quota
    /// here the run may still raise NOSPACE, which stops it resumably.
    public var uncompactedProjectedBytes: Int64?

    public var fits: Bool { projectedBytes <= quotaBytes }
    /// Fits only if compaction frees enough of the old values' pages.
    public var fitsOnlyIfCompactionFrees: Bool { fits && (uncompactedProjectedBytes ?? 0) > quotaBytes }

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

    /// `writes`: record writes ahead (each also writes its lane's cursor, in whatever txn it shares).
    public init(
        currentBytes: Int64, inUseBytes: Int64?, writeBytes: Int64, writes: Int, quotaBytes: Int64, compactEvery: Int?
    ) {
        self.currentBytes = currentBytes
        self.inUseBytes = inUseBytes
        self.writeBytes = writeBytes
        self.quotaBytes = quotaBytes
        self.compacting = compactEvery != nil
        let growth = Self.growth(writeBytes: writeBytes, writes: writes)
        let base = inUseBytes ?? currentBytes
        if let every = compactEvery, writes > 0 {
            // Physical compaction every `every` writes frees the history behind it: the decision
            // counts two intervals' worth outstanding, and says where the backend would end
            // were bbolt to reuse none of the freed pages (`uncompactedProjectedBytes`).
            let perWrite = Double(growth) / Double(writes)
            expectedGrowthBytes = Int64(perWrite * Double(min(writes, 2 * every)))
            uncompactedProjectedBytes = max(currentBytes, base + growth)
        } else {
            expectedGrowthBytes = growth
        }
        // A file never shrinks without a defragmentation: the quota sees at least its size.
        projectedBytes = max(currentBytes, base + expectedGrowthBytes)
    }
}

/// How the run treats etcd's space.
public struct SpacePolicy: Sendable, Hashable {
    /// etcd's `--quota-backend-bytes` (its default: 2 GiB).
    public var quotaBytes: Int64 = 2 << 30
    /// Compact (physically) every this many writes; nil: never.
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
}
