import EtcdGateway
import EtcdModel
import Synchronization

/// An in-memory stand-in for etcd's KV, txn and lease semantics (revisions, create/mod
/// revisions, versions, leases that delete their keys, pinned-revision reads), for fast
/// engine tests. Real-etcd tests cover the same engine paths against the real server.
final class InMemoryKeyValueService: KeyValueService {
    private struct State {
        var revision: Int64 = 1
        /// Every version of every key, oldest first; nil marks a deletion.
        var history: [[UInt8]: [(revision: Int64, kv: KeyValue?)]] = [:]
        var leases: [Int64: Int64] = [:]
        var nextLease: Int64 = 0x1000
        var txnCount = 0
    }
    private let state = Mutex(State())
    /// Called before each txn is applied; a test can make foreign writes or fail calls here.
    let beforeTxn = Mutex<(@Sendable (Int) throws(EtcdError) -> Void)?>(nil)
    /// Called before each range is served; a test can fail it here.
    let beforeRange = Mutex<(@Sendable (RangeRequest) throws(EtcdError) -> Void)?>(nil)

    var revision: Int64 { state.withLock { $0.revision } }
    var txnCount: Int { state.withLock { $0.txnCount } }

    func seed(_ kvs: [(String, String)]) {
        for (k, v) in kvs { _ = try! txn(TxnRequest(success: [.put(PutRequest(key: Array(k.utf8), value: Array(v.utf8)))])) }
    }

    func current(_ key: String) -> KeyValue? {
        state.withLock { Self.get($0, Array(key.utf8), at: $0.revision) }
    }

    func all(prefix: String) -> [KeyValue] {
        (try? range(.prefix(Array(prefix.utf8))).kvs) ?? []
    }

    private static func get(_ s: State, _ key: [UInt8], at revision: Int64) -> KeyValue? {
        guard let versions = s.history[key] else { return nil }
        return versions.last(where: { $0.revision <= revision })?.kv ?? nil
    }

    private static func keys(_ s: State, _ key: [UInt8], _ end: [UInt8]) -> [[UInt8]] {
        if end.isEmpty { return [key] }
        return s.history.keys.filter { k in
            !k.lexicographicallyPrecedes(key) && (end == [0] || k.lexicographicallyPrecedes(end))
        }.sorted { $0.lexicographicallyPrecedes($1) }
    }

    private static func doRange(_ s: State, _ r: RangeRequest) -> RangeResponse {
        let at = r.revision == 0 ? s.revision : r.revision
        var kvs = keys(s, r.key, r.rangeEnd).compactMap { get(s, $0, at: at) }
        switch (r.sortOrder, r.sortTarget) {
        case (.descend, .key): kvs.reverse()
        case (.ascend, .mod): kvs.sort { $0.modRevision < $1.modRevision }
        default: break
        }
        let count = Int64(kvs.count)
        var more = false
        if r.limit > 0 && kvs.count > r.limit {
            kvs = Array(kvs.prefix(Int(r.limit)))
            more = true
        }
        if r.keysOnly {
            kvs = kvs.map {
                var k = $0; k.value = []; return k
            }
        }
        if r.countOnly { kvs = [] }
        return RangeResponse(header: ResponseHeader(revision: s.revision), kvs: kvs, more: more, count: count)
    }

    func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse {
        if let hook = beforeRange.withLock({ $0 }) { try hook(request) }
        return state.withLock { Self.doRange($0, request) }
    }

    func txn(_ request: TxnRequest) throws(EtcdError) -> TxnResponse {
        let n = state.withLock { s -> Int in
            s.txnCount += 1
            return s.txnCount
        }
        if let hook = beforeTxn.withLock({ $0 }) { try hook(n) }
        return state.withLock { s in
            let ok = request.compare.allSatisfy { c in
                let kv = Self.get(s, c.key, at: s.revision)
                func cmp<T: Comparable>(_ a: T, _ b: T) -> Bool {
                    switch c.result {
                    case .equal: return a == b
                    case .notEqual: return a != b
                    case .greater: return a > b
                    case .less: return a < b
                    }
                }
                switch c.target {
                case .version(let v): return cmp(kv?.version ?? 0, v)
                case .createRevision(let v): return cmp(kv?.createRevision ?? 0, v)
                case .modRevision(let v): return cmp(kv?.modRevision ?? 0, v)
                case .lease(let v): return cmp(kv?.lease ?? 0, v)
                case .value(let v): return cmp((kv?.value ?? []).lexicographicallyPrecedes(v) ? -1 : (kv?.value ?? []) == v ? 0 : 1, 0)
                }
            }
            let ops = ok ? request.success : request.failure
            let writes = ops.contains { if case .range = $0 { return false } else { return true } }
            let newRevision = s.revision + (writes ? 1 : 0)
            var responses: [ResponseOp] = []
            for op in ops {
                switch op {
                case .range(let r):
                    responses.append(.range(Self.doRange(s, r)))
                case .put(let p):
                    let old = Self.get(s, p.key, at: s.revision)
                    let kv = KeyValue(
                        key: p.key, value: p.value, createRevision: old?.createRevision ?? newRevision,
                        modRevision: newRevision, version: (old?.version ?? 0) + 1,
                        lease: p.ignoreLease ? (old?.lease ?? 0) : p.lease)
                    s.history[p.key, default: []].append((newRevision, kv))
                    responses.append(.put(PutResponse(header: ResponseHeader(revision: newRevision))))
                case .deleteRange(let d):
                    var deleted: Int64 = 0
                    for key in Self.keys(s, d.key, d.rangeEnd) where Self.get(s, key, at: s.revision) != nil {
                        s.history[key, default: []].append((newRevision, nil))
                        deleted += 1
                    }
                    responses.append(.deleteRange(DeleteRangeResponse(header: ResponseHeader(revision: newRevision), deleted: deleted)))
                }
            }
            s.revision = newRevision
            return TxnResponse(header: ResponseHeader(revision: newRevision), succeeded: ok, responses: responses)
        }
    }

    func leaseGrant(ttl: Int64) throws(EtcdError) -> LeaseGrantResponse {
        state.withLock { s in
            s.nextLease += 1
            s.leases[s.nextLease] = max(ttl, 2)
            return LeaseGrantResponse(header: ResponseHeader(revision: s.revision), id: s.nextLease, ttl: max(ttl, 2))
        }
    }

    func leaseRevoke(id: Int64) throws(EtcdError) {
        let known = state.withLock { $0.leases.removeValue(forKey: id) != nil }
        guard known else { throw EtcdError(.leaseNotFound, "requested lease not found") }
        let attached = state.withLock { s in s.history.keys.filter { Self.get(s, $0, at: s.revision)?.lease == id } }
        if !attached.isEmpty {
            _ = try txn(TxnRequest(success: attached.map { .deleteRange(DeleteRangeRequest(key: $0)) }))
        }
    }

    func leaseKeepAliveOnce(id: Int64) throws(EtcdError) -> Int64? {
        state.withLock { $0.leases[id] }
    }

    func leaseTimeToLive(id: Int64, keys: Bool) throws(EtcdError) -> LeaseTimeToLiveResponse {
        state.withLock { s in
            guard let ttl = s.leases[id] else { return LeaseTimeToLiveResponse(id: id, ttl: -1) }
            let attached = s.history.keys.filter { Self.get(s, $0, at: s.revision)?.lease == id }
            return LeaseTimeToLiveResponse(id: id, ttl: ttl, grantedTTL: ttl, keys: keys ? attached : [])
        }
    }
}
