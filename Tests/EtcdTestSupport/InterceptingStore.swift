import EtcdGateway
import Synchronization

/// A store that passes every call to `base` (a real etcd's client), and lets a test act
/// just before a txn is sent: lose the lock's lease at exactly the txn a safety claim is
/// about, or write as another client would in the middle of a run.
public final class InterceptingStore: KeyValueService {
    public let base: any KeyValueService
    /// Called with each txn before it is sent; what it does happens first.
    private let hook: Mutex<(@Sendable (TxnRequest) -> Void)?>

    public init(_ base: any KeyValueService, beforeTxn: (@Sendable (TxnRequest) -> Void)? = nil) {
        self.base = base
        hook = Mutex(beforeTxn)
    }

    public func beforeTxn(_ body: (@Sendable (TxnRequest) -> Void)?) { hook.withLock { $0 = body } }

    public func txn(_ request: TxnRequest) throws(EtcdError) -> TxnResponse {
        if let hook = hook.withLock({ $0 }) { hook(request) }
        return try base.txn(request)
    }

    public func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse { try base.range(request) }
    public func leaseGrant(ttl: Int64) throws(EtcdError) -> LeaseGrantResponse { try base.leaseGrant(ttl: ttl) }
    public func leaseRevoke(id: Int64) throws(EtcdError) { try base.leaseRevoke(id: id) }
    public func leaseKeepAliveOnce(id: Int64) throws(EtcdError) -> Int64? { try base.leaseKeepAliveOnce(id: id) }
    public func leaseKeepAliveOnce(id: Int64, timeout: Duration) throws(EtcdError) -> Int64? {
        try base.leaseKeepAliveOnce(id: id, timeout: timeout)
    }
    public func leaseTimeToLive(id: Int64, keys: Bool) throws(EtcdError) -> LeaseTimeToLiveResponse {
        try base.leaseTimeToLive(id: id, keys: keys)
    }
    public func status() throws(EtcdError) -> StatusResponse { try base.status() }
    public func compact(revision: Int64, physical: Bool) throws(EtcdError) { try base.compact(revision: revision, physical: physical) }
    public var txnLimits: TxnLimits { base.txnLimits }
}

extension TxnRequest {
    /// Whether the txn puts `key` (in its success branch).
    public func puts(_ key: String) -> Bool {
        success.contains { if case .put(let p) = $0 { p.key == Array(key.utf8) } else { false } }
    }

    /// Whether the txn writes (puts or deletes) anything but the lock key: a heartbeat only
    /// rewrites the lock holder's record.
    public func writesBeyondTheLock(_ lockKey: String = "pachmigrate/lock") -> Bool {
        success.contains { op in
            switch op {
            case .put(let p): p.key != Array(lockKey.utf8)
            case .deleteRange: true
            case .range: false
            }
        }
    }
}

extension KeyValueService {
    /// Revokes the lease the lock key `lockKey` is bound to (etcd deletes the key): the
    /// holder's fence can no longer hold. Returns the revision of the revocation.
    @discardableResult
    public func revokeLockLease(_ lockKey: String = "pachmigrate/lock") throws -> Int64 {
        guard let lock = try range(RangeRequest(key: Array(lockKey.utf8))).kvs.first, lock.lease != 0 else {
            throw TestSupportError("no lease-bound lock at \(lockKey)")
        }
        try leaseRevoke(id: lock.lease)
        return try range(RangeRequest(key: Array(lockKey.utf8))).header.revision
    }
}

/// A test double that changes a few calls of a store and hands the others to `base`: it
/// spells out only what it changes. The six calls every store has, and its txn limits, are
/// forwarded; the maintenance calls keep `KeyValueService`'s defaults (unsupported) unless
/// a double forwards them itself.
public protocol ForwardingKeyValueService: KeyValueService {
    associatedtype Base: KeyValueService
    var base: Base { get }
}

extension ForwardingKeyValueService {
    public func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse { try base.range(request) }
    public func txn(_ request: TxnRequest) throws(EtcdError) -> TxnResponse { try base.txn(request) }
    public func leaseGrant(ttl: Int64) throws(EtcdError) -> LeaseGrantResponse { try base.leaseGrant(ttl: ttl) }
    public func leaseRevoke(id: Int64) throws(EtcdError) { try base.leaseRevoke(id: id) }
    public func leaseKeepAliveOnce(id: Int64) throws(EtcdError) -> Int64? { try base.leaseKeepAliveOnce(id: id) }
    public func leaseTimeToLive(id: Int64, keys: Bool) throws(EtcdError) -> LeaseTimeToLiveResponse {
        try base.leaseTimeToLive(id: id, keys: keys)
    }
    public var txnLimits: TxnLimits { base.txnLimits }
}
