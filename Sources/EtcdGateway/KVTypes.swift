// Value types of etcd's v3 KV and lease API, as the JSON gateway speaks them.
// Keys and values are raw bytes ([UInt8]); etcd keys are arbitrary bytes, not strings.

import EtcdModel

public struct RangeRequest: Sendable, Hashable {
    public enum SortOrder: String, Sendable {
        case none = "NONE"
        case ascend = "ASCEND"
        case descend = "DESCEND"
    }
    public enum SortTarget: String, Sendable {
        case key = "KEY"
        case version = "VERSION"
        case create = "CREATE"
        case mod = "MOD"
        case value = "VALUE"
    }

    public var key: [UInt8]
    /// Empty: only `key`. `[0]`: every key >= `key`. Otherwise the exclusive end.
    public var rangeEnd: [UInt8]
    public var limit: Int64
    /// 0: the current revision.
    public var revision: Int64
    public var sortOrder: SortOrder
    public var sortTarget: SortTarget
    public var keysOnly: Bool
    public var countOnly: Bool

    public init(
        key: [UInt8], rangeEnd: [UInt8] = [], limit: Int64 = 0, revision: Int64 = 0,
        sortOrder: SortOrder = .none, sortTarget: SortTarget = .key, keysOnly: Bool = false,
        countOnly: Bool = false
    ) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.limit = limit
        self.revision = revision
        self.sortOrder = sortOrder
        self.sortTarget = sortTarget
        self.keysOnly = keysOnly
        self.countOnly = countOnly
    }

    /// Every key that starts with `prefix`.
    public static func prefix(
        _ prefix: [UInt8], limit: Int64 = 0, revision: Int64 = 0, keysOnly: Bool = false,
        countOnly: Bool = false
    ) -> RangeRequest {
        RangeRequest(
            key: prefix, rangeEnd: prefixRangeEnd(prefix), limit: limit, revision: revision,
            keysOnly: keysOnly, countOnly: countOnly)
    }
}

/// The `range_end` that selects every key starting with `prefix`: the prefix with its last
/// byte below 0xff incremented (and what follows dropped); `[0]` (all keys) when every byte is 0xff.
public func prefixRangeEnd(_ prefix: [UInt8]) -> [UInt8] {
    var end = prefix
    while let last = end.last {
        if last < 0xff {
            end[end.count - 1] = last + 1
            return end
        }
        end.removeLast()
    }
    return [0]
}

public struct ResponseHeader: Sendable, Hashable {
    public var clusterID: UInt64
    public var memberID: UInt64
    public var revision: Int64
    public var raftTerm: UInt64

    public init(clusterID: UInt64 = 0, memberID: UInt64 = 0, revision: Int64 = 0, raftTerm: UInt64 = 0) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.revision = revision
        self.raftTerm = raftTerm
    }
}

public struct RangeResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var kvs: [KeyValue]
    public var more: Bool
    /// Total number of keys in the range (not the page size).
    public var count: Int64

    public init(header: ResponseHeader = .init(), kvs: [KeyValue] = [], more: Bool = false, count: Int64 = 0) {
        self.header = header
        self.kvs = kvs
        self.more = more
        self.count = count
    }
}

public struct PutRequest: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var lease: Int64
    public var prevKV: Bool
    /// Keep the key's current lease (a put without a lease otherwise detaches it).
    public var ignoreLease: Bool

    public init(key: [UInt8], value: [UInt8], lease: Int64 = 0, prevKV: Bool = false, ignoreLease: Bool = false) {
        self.key = key
        self.value = value
        self.lease = lease
        self.prevKV = prevKV
        self.ignoreLease = ignoreLease
    }
}

public struct PutResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var prevKV: KeyValue?

    public init(header: ResponseHeader = .init(), prevKV: KeyValue? = nil) {
        self.header = header
        self.prevKV = prevKV
    }
}

public struct DeleteRangeRequest: Sendable, Hashable {
    public var key: [UInt8]
    public var rangeEnd: [UInt8]
    public var prevKV: Bool

    public init(key: [UInt8], rangeEnd: [UInt8] = [], prevKV: Bool = false) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.prevKV = prevKV
    }

    public static func prefix(_ prefix: [UInt8], prevKV: Bool = false) -> DeleteRangeRequest {
        DeleteRangeRequest(key: prefix, rangeEnd: prefixRangeEnd(prefix), prevKV: prevKV)
    }
}

public struct DeleteRangeResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var deleted: Int64
    public var prevKVs: [KeyValue]

    public init(header: ResponseHeader = .init(), deleted: Int64 = 0, prevKVs: [KeyValue] = []) {
        self.header = header
        self.deleted = deleted
        self.prevKVs = prevKVs
    }
}

/// A txn guard. A compare on an absent key compares against zeros (and an empty value).
public struct Compare: Sendable, Hashable {
    public enum Result: String, Sendable {
        case equal = "EQUAL"
        case greater = "GREATER"
        case less = "LESS"
        case notEqual = "NOT_EQUAL"
    }
    public enum Target: Sendable, Hashable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value([UInt8])
        case lease(Int64)
    }

    public var key: [UInt8]
    public var rangeEnd: [UInt8]
    public var result: Result
    public var target: Target

    public init(key: [UInt8], _ result: Result, _ target: Target, rangeEnd: [UInt8] = []) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.result = result
        self.target = target
    }
}

public enum RequestOp: Sendable, Hashable {
    case range(RangeRequest)
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
}

public enum ResponseOp: Sendable, Hashable {
    case range(RangeResponse)
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
}

public struct TxnRequest: Sendable, Hashable {
    public var compare: [Compare]
    public var success: [RequestOp]
    public var failure: [RequestOp]

    public init(compare: [Compare] = [], success: [RequestOp] = [], failure: [RequestOp] = []) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }
}

public struct TxnResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var succeeded: Bool
    public var responses: [ResponseOp]

    public init(header: ResponseHeader = .init(), succeeded: Bool = false, responses: [ResponseOp] = []) {
        self.header = header
        self.succeeded = succeeded
        self.responses = responses
    }
}

public struct LeaseGrantResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var id: Int64
    public var ttl: Int64

    public init(header: ResponseHeader = .init(), id: Int64, ttl: Int64) {
        self.header = header
        self.id = id
        self.ttl = ttl
    }
}

public struct LeaseTimeToLiveResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var id: Int64
    /// Remaining seconds; -1 when the lease does not exist (expired or revoked).
    public var ttl: Int64
    public var grantedTTL: Int64
    public var keys: [[UInt8]]

    public init(header: ResponseHeader = .init(), id: Int64, ttl: Int64, grantedTTL: Int64 = 0, keys: [[UInt8]] = []) {
        self.header = header
        self.id = id
        self.ttl = ttl
        self.grantedTTL = grantedTTL
        self.keys = keys
    }
}

public struct StatusResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var version: String
    /// `version`, parsed; nil where it is not MAJOR.MINOR[.PATCH].
    public var serverVersion: EtcdVersion? { EtcdVersion(version) }
    public var dbSize: Int64
    /// The part of the backend in use (etcd 3.4+); nil where the server does not say.
    public var dbSizeInUse: Int64?
    public var leader: UInt64
    public var raftIndex: UInt64
    public var raftTerm: UInt64

    public init(
        header: ResponseHeader = .init(), version: String = "", dbSize: Int64 = 0, dbSizeInUse: Int64? = nil, leader: UInt64 = 0,
        raftIndex: UInt64 = 0, raftTerm: UInt64 = 0
    ) {
        self.header = header
        self.version = version
        self.dbSize = dbSize
        self.dbSizeInUse = dbSizeInUse
        self.leader = leader
        self.raftIndex = raftIndex
        self.raftTerm = raftTerm
    }
}

/// An alarm etcd has raised on a member: while one is active, writes fail.
public struct EtcdAlarm: Sendable, Hashable {
    public enum Kind: String, Sendable {
        /// The backend reached `--quota-backend-bytes`: every put and txn fails until an
        /// operator compacts, defragments and disarms it.
        case noSpace = "NOSPACE"
        case corrupt = "CORRUPT"
        case unknown
    }
    public var memberID: UInt64
    public var kind: Kind

    public init(memberID: UInt64, kind: Kind) {
        self.memberID = memberID
        self.kind = kind
    }
}

/// The part of etcd the migration engine needs. `EtcdClient` implements it against a real
/// server; tests may give the engine an in-memory implementation. Calls block the calling
/// thread (libcurl is synchronous); run them off Swift's cooperative pool.
public protocol KeyValueService: Sendable {
    func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse
    func txn(_ request: TxnRequest) throws(EtcdError) -> TxnResponse
    func leaseGrant(ttl: Int64) throws(EtcdError) -> LeaseGrantResponse
    func leaseRevoke(id: Int64) throws(EtcdError)
    /// One keep-alive round trip; returns the new TTL, or nil when the lease is gone.
    func leaseKeepAliveOnce(id: Int64) throws(EtcdError) -> Int64?
    /// The same with its own timeout (a keeper uses one shorter than the TTL).
    func leaseKeepAliveOnce(id: Int64, timeout: Duration) throws(EtcdError) -> Int64?
    func leaseTimeToLive(id: Int64, keys: Bool) throws(EtcdError) -> LeaseTimeToLiveResponse
    /// The member's status: backend size (and size in use, 3.4+), the current revision.
    func status() throws(EtcdError) -> StatusResponse
    /// Discards history before `revision`; `physical` waits until the backend freed it.
    func compact(revision: Int64, physical: Bool) throws(EtcdError)
    /// Every member's own backend size: etcd holds each member to the quota.
    func memberStatuses() throws(EtcdError) -> [MemberStatus]
    /// Defragments one member (it answers nothing else meanwhile).
    func defragment(memberID: UInt64, timeout: Duration) throws(EtcdError)
    /// Whether this user may defragment, asked without defragmenting.
    func defragmentPermitted() throws(EtcdError) -> Bool
    /// The largest txn the server takes: what a writer packing txns must stay within.
    var txnLimits: TxnLimits { get }
}

/// etcd's limits on one txn (its `--max-txn-ops` and `--max-request-bytes`): `EtcdClient`
/// has them from its `Configuration`; stores without a configuration (test doubles) have
/// etcd's defaults.
public struct TxnLimits: Sendable, Hashable {
    /// The most entries in each of a txn's compare, success and failure lists: 128, fixed on
    /// etcd 3.1 and the default since.
    public var maxOps: Int
    /// The largest request, in protobuf bytes: 1.5 MiB, fixed on etcd 3.1 and the default since.
    public var maxRequestBytes: Int

    public init(maxOps: Int = 128, maxRequestBytes: Int = 1_572_864) {
        self.maxOps = maxOps
        self.maxRequestBytes = maxRequestBytes
    }
}

extension KeyValueService {
    /// Stores without timeouts of their own (test doubles) ignore it.
    public func leaseKeepAliveOnce(id: Int64, timeout: Duration) throws(EtcdError) -> Int64? {
        try leaseKeepAliveOnce(id: id)
    }

    /// Stores without maintenance calls (test doubles) say so; callers degrade.
    public func status() throws(EtcdError) -> StatusResponse {
        throw EtcdError(.unsupported, "this store reports no status")
    }

    public func compact(revision: Int64, physical: Bool) throws(EtcdError) {
        throw EtcdError(.unsupported, "this store cannot compact")
    }

    /// A store of one member: its own status.
    public func memberStatuses() throws(EtcdError) -> [MemberStatus] {
        let status = try status()
        return [
            MemberStatus(
                memberID: status.header.memberID, name: "", endpoint: "", dbSize: status.dbSize, dbSizeInUse: status.dbSizeInUse,
                isLeader: true, revision: status.header.revision)
        ]
    }

    public func defragment(memberID: UInt64, timeout: Duration) throws(EtcdError) {
        throw EtcdError(.unsupported, "this store cannot defragment")
    }

    public func defragmentPermitted() throws(EtcdError) -> Bool { false }

    public var txnLimits: TxnLimits { TxnLimits() }
}

/// The pages of a prefix range at one pinned revision: the paging every full scan needs
/// (each page continues exactly after the previous one's last key).
///
/// etcd 3.4 walks its index from a range's start to its *end* for every request, however
/// small the `limit`, so paging `[next, prefixEnd)` costs O(keys left) per page and
/// O(n²/page) for a scan: minutes at a million keys. So each request is bounded by a
/// window `[next, windowEnd)` sized from the key density of the page before (`PageWindow`),
/// aiming at about one page of keys. Windows tile the range: the next request always starts
/// exactly where the previous one stopped (after its last key when it was cut by the limit,
/// at its end when not), so the window sizes change the cost, never the keys returned.
///
/// A page holds at most `pageSize` keys and, where values are large, fewer: about
/// `targetBytes` of keys and values, at the size per key of the page before (a job of 1 MiB:
/// two a page, not a thousand). A page, and the memory that reads it, stays small whatever the
/// records weigh. The first page asks for `firstLimit` keys and each one after at most four
/// times as many as the one before, since one page's values say nothing of the next region's.
public struct PrefixPages {
    public static let targetBytes = 2 << 20
    static let firstLimit: Int64 = 16

    private let store: any KeyValueService
    private let end: [UInt8]
    private let pageSize: Int64
    private var limit: Int64
    private let keysOnly: Bool
    private var nextKey: [UInt8]?
    private var window: PageWindow
    /// The revision the pages are read at: `revision`, or that of the first page when 0.
    public private(set) var revision: Int64

    init(store: any KeyValueService, prefix: [UInt8], revision: Int64, pageSize: Int, keysOnly: Bool) {
        self.store = store
        self.end = prefixRangeEnd(prefix)
        self.window = PageWindow(rangeEnd: end)
        self.pageSize = Int64(max(1, pageSize))
        self.limit = min(self.pageSize, Self.firstLimit)
        self.keysOnly = keysOnly
        self.nextKey = prefix
        self.revision = revision
    }

    /// The next page, or nil after the last one. A page may be empty (a window with no keys).
    public mutating func next() throws(EtcdError) -> [KeyValue]? {
        guard let key = nextKey else { return nil }
        let request = RangeRequest(
            key: key, rangeEnd: window.end(after: key, keys: limit), limit: limit, revision: revision, keysOnly: keysOnly)
        let page = try store.range(request)
        if revision == 0 { revision = page.header.revision }
        if page.more, let last = page.kvs.last {
            nextKey = last.key + [0]
        } else {
            nextKey = request.rangeEnd == end ? nil : request.rangeEnd
        }
        limit = Self.limit(after: page.kvs, limit: limit, pageSize: pageSize)
        window.learn(from: page, requested: request, limit: limit)
        return page.kvs
    }

    /// The key limit of the page after `kvs`, read with `limit`.
    static func limit(after kvs: [KeyValue], limit: Int64, pageSize: Int64) -> Int64 {
        let bytes = kvs.reduce(0) { $0 + $1.key.count + $1.value.count }
        let fitting = bytes == 0 ? limit : Int64(targetBytes) * Int64(kvs.count) / Int64(bytes)
        return max(1, min(pageSize, limit * 4, fitting))
    }
}

/// Where the next page request should end. Keys are read as numbers: the 16 bytes after
/// a frame (a prefix of the keys in question), big-endian. From the last page's span and
/// count (its frame: the prefix its first and last keys share), the width that holds about
/// one page of keys is estimated; a window that came back (nearly) empty widens 256-fold.
///
/// A start outside that frame is a new region (the next repo's subtree, the next
/// collection) that the last page says nothing of. Its density is estimated from what was
/// read before it: under the deepest prefix of the start with at least two pages' worth of
/// keys read, over the span they covered. An estimated window that came back (nearly) empty
/// makes the next one 256 times as wide; after one that found the rest of its frame empty,
/// the next is estimated where earlier keys branched off that frame. A request runs to the
/// end of the range, one walk of every key left, only when nothing was read yet or when more
/// empty requests would cost more than that walk. Running there after every region made a
/// scan of many small subtrees walk its keys 40 to 60 times over.
struct PageWindow {
    /// The end of the range being read.
    let rangeEnd: [UInt8]
    private var frame: [UInt8] = []
    /// The estimated width of one page of keys, in units of `frame` (0: no estimate).
    private var width: UInt128 = 0
    /// The first key of each page read, with how many keys were read before it: the history
    /// a new region's density is estimated from.
    private var marks: [(key: [UInt8], keysBefore: Int)] = []
    private var keysRead = 0
    /// Keys left in the range, once a request that ran to its end has said.
    private var keysLeft: Int?
    /// Requests in a row that came back with fewer than two keys.
    private var sparseInARow = 0
    /// The last window estimated from `marks`, and whether it came back (nearly) empty.
    private var estimated: (frame: [UInt8], width: UInt128, empty: Bool)?
    /// The frame of the last request, and that of the last one that found the rest of its
    /// frame (nearly) empty, until a request finds keys again.
    private var requestFrame: [UInt8] = []
    private var exhausted: [UInt8]?
    static let marksKept = 4096

    init(rangeEnd: [UInt8]) { self.rangeEnd = rangeEnd }

    /// The end for a request for about `keys` keys starting at `start`.
    mutating func end(after start: [UInt8], keys: Int64) -> [UInt8] {
        let candidate: [UInt8]
        if width > 0, start.starts(with: frame) {
            (estimated, requestFrame) = (nil, frame)
            candidate = Self.adding(width, to: start, in: frame)
        } else if sparseInARow <= Self.sparseRequestsBeforeAWalk(keysLeft), let (frame, width) = estimate(at: start, keys: keys) {
            (estimated, requestFrame) = ((frame, width, false), frame)
            candidate = Self.adding(width, to: start, in: frame)
        } else {
            (estimated, requestFrame) = (nil, [])
            return rangeEnd
        }
        // `[0]` is etcd's "to the end of the key space".
        guard candidate != [0], rangeEnd == [0] || candidate.lexicographicallyPrecedes(rangeEnd) else { return rangeEnd }
        return start.lexicographicallyPrecedes(candidate) ? candidate : rangeEnd
    }

    /// How many (nearly) empty requests in a row before one walk of the `keysLeft` keys
    /// costs less: an empty request's round trip costs about what etcd takes to walk 300
    /// keys at loopback, 1,000 at a 0.5 ms round trip.
    static func sparseRequestsBeforeAWalk(_ keysLeft: Int?) -> Int {
        guard let keysLeft else { return 16 }
        return max(4, min(256, keysLeft / 500))
    }

    /// The frame and width of a window of about `keys` keys from `start`, from the keys read
    /// before it; nil before two keys are read.
    private func estimate(at start: [UInt8], keys: Int64) -> ([UInt8], UInt128)? {
        guard keysRead >= 2, var index = marks.indices.last else { return nil }
        // Marks are in key order, so the prefix they share with `start` only grows along them.
        if let exhausted, !start.starts(with: exhausted) {
            // The rest of that frame was empty: look next where earlier keys branched off it.
            // Keys tend to branch where they branched before, so the levels of a long key's
            // tail that had no siblings are passed in one step, not a request each.
            while index > 0, marks[index].key.starts(with: exhausted) { index -= 1 }
        } else {
            // The deepest prefix of `start` with two pages of history under it …
            while index > 0, keysRead - marks[index].keysBefore < 2 * Int(keys) { index -= 1 }
        }
        let depth = Self.sharedPrefixCount(marks[index].key, start)
        // … and that history's first mark.
        while index > 0, Self.sharedPrefixCount(marks[index - 1].key, start) >= depth { index -= 1 }
        let frame = Array(start[..<depth])
        let span = max(1, Self.value(of: start, in: frame) &- Self.value(of: marks[index].key, in: frame))
        let history = UInt128(keysRead - marks[index].keysBefore)
        var width = Self.saturating(span / history, times: UInt128(keys) + UInt128(keys) / 4)
        // An empty window that stayed inside this frame: 256 times as wide.
        if let last = estimated, last.empty, last.frame == frame { width = max(width, Self.saturating(last.width, times: 256)) }
        return (frame, max(1, width))
    }

    mutating func learn(from page: RangeResponse, requested: RangeRequest, limit: Int64) {
        let kvs = page.kvs
        if requested.rangeEnd == rangeEnd { keysLeft = Int(page.count) - kvs.count } else { keysLeft = keysLeft.map { $0 - kvs.count } }
        if let first = kvs.first?.key {
            marks.append((first, keysRead))
            keysRead += kvs.count
            // Thin the history rather than let it grow with the range: every other mark still
            // spans the same keys.
            if marks.count > Self.marksKept {
                marks = marks.enumerated().compactMap { $0.offset % 2 == 0 || $0.offset == marks.count - 1 ? $0.element : nil }
            }
        }
        sparseInARow = kvs.count >= 2 ? 0 : sparseInARow + 1
        if kvs.count >= 2 {
            exhausted = nil
        } else if !requested.rangeEnd.starts(with: requestFrame) {
            exhausted = requestFrame
        }
        if kvs.count >= 2, let first = kvs.first?.key, let last = kvs.last?.key {
            frame = Self.sharedPrefix(first, last)
            let span = Self.value(of: last, in: frame) - Self.value(of: first, in: frame)
            // The width of one page at this page's density, a quarter more for slack,
            // at least 1 unit (saturating: a sparse frame may need the whole of it).
            width = max(1, Self.saturating(span / UInt128(kvs.count - 1), times: UInt128(limit) + UInt128(limit) / 4))
            estimated = nil
        } else if width > 0, requested.key.starts(with: frame) {
            // A sparse stretch of the frame: widen quickly (at most 16 steps span any frame).
            width = Self.saturating(width, times: 256)
        } else {
            width = 0
            estimated?.empty = true
        }
    }

    /// `start` plus `width` units of `frame`; the end of `frame`'s range when that overflows.
    static func adding(_ width: UInt128, to start: [UInt8], in frame: [UInt8]) -> [UInt8] {
        let (sum, overflow) = value(of: start, in: frame).addingReportingOverflow(width)
        return overflow ? prefixRangeEnd(frame) : frame + bytes(of: sum)
    }

    /// `a × b`, or `UInt128.max` where that overflows.
    static func saturating(_ a: UInt128, times b: UInt128) -> UInt128 {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? UInt128.max : product
    }

    static func sharedPrefix(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { Array(a[..<sharedPrefixCount(a, b)]) }

    static func sharedPrefixCount(_ a: [UInt8], _ b: [UInt8]) -> Int {
        var n = 0
        while n < a.count, n < b.count, a[n] == b[n] { n += 1 }
        return n
    }

    /// The 16 bytes of `key` after `frame` (zero-padded) as a big-endian number.
    static func value(of key: [UInt8], in frame: [UInt8]) -> UInt128 {
        var value: UInt128 = 0
        for i in 0..<16 {
            let index = frame.count + i
            value = value << 8 | UInt128(index < key.count ? key[index] : 0)
        }
        return value
    }

    static func bytes(of value: UInt128) -> [UInt8] {
        (0..<16).map { UInt8(truncatingIfNeeded: value >> (8 * (15 - $0))) }
    }
}

extension KeyValueService {
    /// Every key under `prefix`, page by page, at one pinned revision (`revision` 0: the
    /// current one, pinned by the first page).
    public func pages(prefix: [UInt8], revision: Int64 = 0, pageSize: Int = 1000, keysOnly: Bool = false) -> PrefixPages {
        PrefixPages(store: self, prefix: prefix, revision: revision, pageSize: pageSize, keysOnly: keysOnly)
    }

    /// Hands each page under `prefix` to `body`; returns the revision read.
    @discardableResult
    public func scanPrefix(
        _ prefix: [UInt8], revision: Int64 = 0, pageSize: Int = 1000, keysOnly: Bool = false,
        _ body: ([KeyValue]) throws -> Void
    ) throws -> Int64 {
        var pages = pages(prefix: prefix, revision: revision, pageSize: pageSize, keysOnly: keysOnly)
        while let page = try pages.next() {
            if !page.isEmpty { try body(page) }
        }
        return pages.revision
    }
}
