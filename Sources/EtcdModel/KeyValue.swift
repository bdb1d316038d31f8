// What etcd stores, without a client: the key-value pair, how a key is shown, and the
// line format of dumps and backups (etcd's JSON gateway rendering). No libcurl here, so
// the codecs and the offline converter depend on this and not on the gateway client.

/// One key-value pair as etcd stores it (`mvccpb.KeyValue`).
public struct KeyValue: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
    public var version: Int64
    public var lease: Int64

    public init(
        key: [UInt8], value: [UInt8], createRevision: Int64 = 0, modRevision: Int64 = 0,
        version: Int64 = 0, lease: Int64 = 0
    ) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }
}
