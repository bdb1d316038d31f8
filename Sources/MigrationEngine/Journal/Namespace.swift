/// The keys pachmigrate keeps in etcd, all under one configurable root (default
/// `pachmigrate/`), apart from the product's own prefixes.
public struct Namespace: Sendable, Hashable {
    public var root: String

    public init(root: String = "pachmigrate/") {
        self.root = root.hasSuffix("/") ? root : root + "/"
    }

    /// Lease-bound key whose JSON value names the migrator holding the lock.
    public var lockKey: [UInt8] { Array((root + "lock").utf8) }
    /// The run's state record (`RunState`).
    public var stateKey: [UInt8] { Array((root + "state").utf8) }
    /// The schema version the cluster was last migrated to.
    public var versionKey: [UInt8] { Array((root + "version").utf8) }
    /// One cursor per lane, written in the same txn as the record it covers.
    public var lanesPrefix: [UInt8] { Array((root + "lanes/").utf8) }
    /// A lane's cursor key: `lanes/` and the lane's name (`lanes/commits/images`).
    public func laneKey(_ lane: LaneID) -> [UInt8] { lanesPrefix + Array(lane.name.utf8) }
    /// The lane whose cursor `key` is (a key under `lanesPrefix`, as `laneKey` made it).
    public func lane(ofCursorKey key: [UInt8]) -> LaneID {
        LaneID(name: String(decoding: key.dropFirst(lanesPrefix.count), as: UTF8.self))
    }
    /// A restore under way (`RestoreInProgress`): written with its first write, removed
    /// with its last, so one that was stopped half way is known to every later command.
    public var restoreKey: [UInt8] { Array((root + "restore").utf8) }
    /// Append-only log of completed runs, restores and lock breaks.
    public var historyPrefix: [UInt8] { Array((root + "history/").utf8) }
}
