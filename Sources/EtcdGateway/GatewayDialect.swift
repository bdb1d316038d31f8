// What differs between the JSON gateways of etcd 3.0 through 3.5+, in one place. The client
// asks every endpoint `GET /version` before its first request (and again after it failed or
// answered a path it should know with 404: members are upgraded one at a time) and speaks
// that member's dialect. Nothing above the gateway knows etcd versions.
//
// | server     | prefix    | lease revoke / time-to-live | auth token header      |
// |------------|-----------|-----------------------------|------------------------|
// | 3.0 – 3.2  | /v3alpha  | /kv/lease/…                 | Grpc-Metadata-Token    |
// | 3.3        | /v3beta   | /kv/lease/…                 | Authorization          |
// | 3.4, 3.5+  | /v3       | /lease/…                    | Authorization          |
//
// etcd 3.1.4's gateway may have no time-to-live at all (404): `leaseTimeToLive` then throws
// `.unsupported` and callers say what they show instead.

/// A server version as `GET /version` reports it (`"3.1.4"`, `"3.5.0-alpha.0"`).
public struct EtcdVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int = 0) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// Parses `MAJOR.MINOR[.PATCH][-suffix]`; nil for anything else.
    public init?(_ text: String) {
        let core = text.split(separator: "-", maxSplits: 1).first.map(String.init) ?? ""
        let parts = core.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count >= 2, parts.count <= 3, parts.allSatisfy({ $0 != nil }) else { return nil }
        self.init(parts[0]!, parts[1]!, parts.count == 3 ? parts[2]! : 0)
    }

    public static func < (a: EtcdVersion, b: EtcdVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    public var description: String { "\(major).\(minor).\(patch)" }
}

/// One endpoint's etcd, as its `GET /version` described it.
public struct EndpointVersion: Sendable, Hashable {
    public var endpoint: String
    /// The member's own version (`etcdserver`).
    public var server: EtcdVersion
    /// The version the whole cluster runs at (`etcdcluster`): the lowest of its members.
    public var cluster: String

    public init(endpoint: String, server: EtcdVersion, cluster: String) {
        self.endpoint = endpoint
        self.server = server
        self.cluster = cluster
    }
}

/// The gateway calls the client makes; the dialect maps each to its path.
enum GatewayRoute: Sendable {
    case range, put, deleteRange, txn, compaction
    case leaseGrant, leaseRevoke, leaseKeepAlive, leaseTimeToLive
    case status, alarm, snapshot, defragment, memberList, userList, authenticate

    var suffix: String {
        switch self {
        case .range: "/kv/range"
        case .put: "/kv/put"
        case .deleteRange: "/kv/deleterange"
        case .txn: "/kv/txn"
        case .compaction: "/kv/compaction"
        case .leaseGrant: "/lease/grant"
        case .leaseRevoke: "/lease/revoke"
        case .leaseKeepAlive: "/lease/keepalive"
        case .leaseTimeToLive: "/lease/timetolive"
        case .status: "/maintenance/status"
        case .alarm: "/maintenance/alarm"
        case .snapshot: "/maintenance/snapshot"
        case .defragment: "/maintenance/defragment"
        case .memberList: "/cluster/member/list"
        case .userList: "/auth/user/list"
        case .authenticate: "/auth/authenticate"
        }
    }
}

struct GatewayDialect: Sendable, Hashable {
    let version: EndpointVersion

    /// The oldest server whose gateway this client speaks.
    static let oldestSupported = EtcdVersion(3, 0)

    var prefix: String {
        switch version.server {
        case ..<EtcdVersion(3, 3): "/v3alpha"
        case ..<EtcdVersion(3, 4): "/v3beta"
        default: "/v3"
        }
    }

    func path(_ route: GatewayRoute) -> String {
        // Before 3.4 the gateway served these two under the KV service's path.
        let underKV = (route == .leaseRevoke || route == .leaseTimeToLive) && version.server < EtcdVersion(3, 4)
        return prefix + (underKV ? "/kv" : "") + route.suffix
    }

    /// 3.1 and 3.2 ignore `Authorization` (and then answer "user name is empty").
    func authorizationHeader(token: String) -> String {
        version.server < EtcdVersion(3, 3) ? "Grpc-Metadata-Token: \(token)" : "Authorization: \(token)"
    }
}

/// A request field older gateways do not know. Their JSON decoding ignores unknown fields,
/// so sending one would be silently misunderstood (a put without `ignore_lease` detaches
/// the key from its lease): the client refuses instead, naming the feature.
struct Feature: Sendable {
    let what: String
    let since: EtcdVersion

    static let ignoreLease = Feature(what: "rewrite a leased key keeping its lease (ignore_lease)", since: EtcdVersion(3, 2))
    static let compareLease = Feature(what: "compare a key's lease in a txn", since: EtcdVersion(3, 3))

    /// The newest feature a txn uses, if any.
    static func needed(by txn: TxnRequest) -> Feature? {
        let compares = txn.compare.contains { if case .lease = $0.target { true } else { false } }
        if compares { return compareLease }
        let ignoresLease = (txn.success + txn.failure).contains { if case .put(let put) = $0 { put.ignoreLease } else { false } }
        return ignoresLease ? ignoreLease : nil
    }
}

/// `GET /version`'s answer.
struct WireVersion: Decodable {
    var etcdserver: String?
    var etcdcluster: String?
}
