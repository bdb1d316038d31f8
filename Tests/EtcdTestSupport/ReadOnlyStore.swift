import EtcdGateway

/// A test store that simulates only what a test reads (pages of keys, a backend's sizes):
/// its txns and leases fail with `unsupported`, so a test that reaches them by mistake
/// fails saying why. Conformers implement `range` (and whatever else they simulate).
public protocol ReadOnlyStore: KeyValueService {}

extension ReadOnlyStore {
    public func txn(_ request: TxnRequest) throws(EtcdError) -> TxnResponse { throw Self.notSimulated }
    public func leaseGrant(ttl: Int64) throws(EtcdError) -> LeaseGrantResponse { throw Self.notSimulated }
    public func leaseRevoke(id: Int64) throws(EtcdError) {}
    public func leaseKeepAliveOnce(id: Int64) throws(EtcdError) -> Int64? { nil }
    public func leaseTimeToLive(id: Int64, keys: Bool) throws(EtcdError) -> LeaseTimeToLiveResponse { throw Self.notSimulated }

    static var notSimulated: EtcdError { EtcdError(.unsupported, "not simulated by this read-only test store") }
}
