/// A member of the etcd cluster, as it advertises itself.
public struct EtcdMember: Sendable, Hashable {
    public var id: UInt64
    public var name: String
    public var clientURLs: [String]

    public init(id: UInt64, name: String, clientURLs: [String]) {
        self.id = id
        self.name = name
        self.clientURLs = clientURLs
    }
}

/// One member's backend as it reports it: each member keeps its own file and etcd holds each
/// to the space quota, so a run watches them all.
public struct MemberStatus: Sendable, Hashable, Encodable {
    public var memberID: UInt64
    public var name: String
    /// Where this client reaches it.
    public var endpoint: String
    public var dbSize: Int64
    /// etcd 3.4+.
    public var dbSizeInUse: Int64?
    public var isLeader: Bool
    public var revision: Int64

    public init(
        memberID: UInt64, name: String, endpoint: String, dbSize: Int64, dbSizeInUse: Int64?, isLeader: Bool, revision: Int64
    ) {
        self.memberID = memberID
        self.name = name
        self.endpoint = endpoint
        self.dbSize = dbSize
        self.dbSizeInUse = dbSizeInUse
        self.isLeader = isLeader
        self.revision = revision
    }
}

struct WireMemberListResponse: Decodable {
    struct Member: Decodable {
        var id: WireUInt64?
        var name: String?
        var clientURLs: [String]?

        enum CodingKeys: String, CodingKey {
            case id = "ID"
            case name, clientURLs
        }
    }
    var members: [Member]?
}
