// JSON shapes of the etcd v3 gateway. The gateway omits zero values and spells 64-bit
// integers as strings, so every field decodes as optional and integers accept both forms.
// Field names are the gateway's own (snake_case, `ID`, `TTL`): the synthesized Codable uses them as keys.
// swift-format-ignore-file: AlwaysUseLowerCamelCase

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EtcdModel

/// An int64 that etcd writes as a JSON string (and accepts as string or number).
struct WireInt64: Codable, Sendable {
    var value: Int64
    init(_ value: Int64) { self.value = value }
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let string = try? container.decode(String.self), let parsed = Int64(string) {
            value = parsed
        } else {
            value = try container.decode(Int64.self)
        }
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}

struct WireUInt64: Codable, Sendable {
    var value: UInt64
    init(_ value: UInt64) { self.value = value }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let string = try? container.decode(String.self), let parsed = UInt64(string) {
            value = parsed
        } else {
            value = try container.decode(UInt64.self)
        }
    }
}

/// Standard padded base64, the gateway's encoding of `bytes` fields.
struct WireBytes: Codable, Sendable {
    var bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        guard let bytes = Base64.decode(Array(try container.decode(String.self).utf8)) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "invalid base64")
        }
        self.bytes = bytes
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Base64.encode(bytes))
    }
}

/// Encodes only non-zero values, like the gateway itself, which keeps requests small.
private func nonEmpty(_ bytes: [UInt8]) -> WireBytes? { bytes.isEmpty ? nil : WireBytes(bytes) }
private func nonZero(_ value: Int64) -> WireInt64? { value == 0 ? nil : WireInt64(value) }
private func trueOrNil(_ flag: Bool) -> Bool? { flag ? true : nil }

// MARK: Requests

struct WireRangeRequest: Encodable {
    var key: WireBytes?
    var range_end: WireBytes?
    var limit: WireInt64?
    var revision: WireInt64?
    var sort_order: String?
    var sort_target: String?
    var keys_only: Bool?
    var count_only: Bool?

    init(_ request: RangeRequest) {
        key = nonEmpty(request.key)
        range_end = nonEmpty(request.rangeEnd)
        limit = nonZero(request.limit)
        revision = nonZero(request.revision)
        sort_order = request.sortOrder == .none ? nil : request.sortOrder.rawValue
        sort_target = request.sortTarget == .key ? nil : request.sortTarget.rawValue
        keys_only = trueOrNil(request.keysOnly)
        count_only = trueOrNil(request.countOnly)
    }
}

struct WirePutRequest: Encodable {
    var key: WireBytes?
    var value: WireBytes?
    var lease: WireInt64?
    var prev_kv: Bool?
    var ignore_lease: Bool?

    init(_ request: PutRequest) {
        key = nonEmpty(request.key)
        value = nonEmpty(request.value)
        lease = nonZero(request.lease)
        prev_kv = trueOrNil(request.prevKV)
        ignore_lease = trueOrNil(request.ignoreLease)
    }
}

struct WireDeleteRangeRequest: Encodable {
    var key: WireBytes?
    var range_end: WireBytes?
    var prev_kv: Bool?

    init(_ request: DeleteRangeRequest) {
        key = nonEmpty(request.key)
        range_end = nonEmpty(request.rangeEnd)
        prev_kv = trueOrNil(request.prevKV)
    }
}

struct WireCompare: Encodable {
    var key: WireBytes?
    var range_end: WireBytes?
    var result: String
    var target: String
    // Zero operands are written explicitly: omitting them is equivalent, but being
    // explicit keeps the request readable in logs.
    var version: WireInt64?
    var create_revision: WireInt64?
    var mod_revision: WireInt64?
    var value: WireBytes?
    var lease: WireInt64?

    init(_ compare: Compare) {
        key = nonEmpty(compare.key)
        range_end = nonEmpty(compare.rangeEnd)
        result = compare.result.rawValue
        switch compare.target {
        case .version(let v):
            target = "VERSION"
            version = WireInt64(v)
        case .createRevision(let v):
            target = "CREATE"
            create_revision = WireInt64(v)
        case .modRevision(let v):
            target = "MOD"
            mod_revision = WireInt64(v)
        case .value(let v):
            target = "VALUE"
            value = WireBytes(v)
        case .lease(let v):
            target = "LEASE"
            lease = WireInt64(v)
        }
    }
}

struct WireRequestOp: Encodable {
    var request_range: WireRangeRequest?
    var request_put: WirePutRequest?
    var request_delete_range: WireDeleteRangeRequest?

    init(_ op: RequestOp) {
        switch op {
        case .range(let r): request_range = WireRangeRequest(r)
        case .put(let p): request_put = WirePutRequest(p)
        case .deleteRange(let d): request_delete_range = WireDeleteRangeRequest(d)
        }
    }
}

struct WireTxnRequest: Encodable {
    var compare: [WireCompare]
    var success: [WireRequestOp]
    var failure: [WireRequestOp]

    init(_ request: TxnRequest) {
        compare = request.compare.map(WireCompare.init)
        success = request.success.map(WireRequestOp.init)
        failure = request.failure.map(WireRequestOp.init)
    }
}

struct WireLeaseGrantRequest: Encodable {
    var TTL: WireInt64
    var ID: WireInt64?
}

struct WireLeaseIDRequest: Encodable {
    var ID: WireInt64
}

struct WireLeaseTimeToLiveRequest: Encodable {
    var ID: WireInt64
    var keys: Bool?
}

struct WireAuthenticateRequest: Encodable {
    var name: String
    var password: String
}

struct WireEmpty: Encodable {}

struct WireCompactionRequest: Encodable {
    var revision: WireInt64
    var physical: Bool?
}

struct WireAlarmRequest: Encodable {
    /// GET, ACTIVATE or DEACTIVATE.
    var action: String
    var memberID: WireUInt64?
    /// NONE, NOSPACE or CORRUPT.
    var alarm: String?
}

// MARK: Responses

struct WireHeader: Decodable {
    var cluster_id: WireUInt64?
    var member_id: WireUInt64?
    var revision: WireInt64?
    var raft_term: WireUInt64?

    var model: ResponseHeader {
        ResponseHeader(
            clusterID: cluster_id?.value ?? 0, memberID: member_id?.value ?? 0,
            revision: revision?.value ?? 0, raftTerm: raft_term?.value ?? 0)
    }
}

extension Optional where Wrapped == WireHeader {
    var model: ResponseHeader { self?.model ?? ResponseHeader() }
}

struct WireKeyValue: Decodable {
    var key: WireBytes?
    var value: WireBytes?
    var create_revision: WireInt64?
    var mod_revision: WireInt64?
    var version: WireInt64?
    var lease: WireInt64?

    var model: KeyValue {
        KeyValue(
            key: key?.bytes ?? [], value: value?.bytes ?? [],
            createRevision: create_revision?.value ?? 0, modRevision: mod_revision?.value ?? 0,
            version: version?.value ?? 0, lease: lease?.value ?? 0)
    }
}

struct WireRangeResponse: Decodable {
    var header: WireHeader?
    var kvs: [WireKeyValue]?
    var more: Bool?
    var count: WireInt64?

    var model: RangeResponse {
        RangeResponse(
            header: header.model, kvs: (kvs ?? []).map(\.model), more: more ?? false,
            count: count?.value ?? 0)
    }
}

struct WirePutResponse: Decodable {
    var header: WireHeader?
    var prev_kv: WireKeyValue?

    var model: PutResponse { PutResponse(header: header.model, prevKV: prev_kv?.model) }
}

struct WireDeleteRangeResponse: Decodable {
    var header: WireHeader?
    var deleted: WireInt64?
    var prev_kvs: [WireKeyValue]?

    var model: DeleteRangeResponse {
        DeleteRangeResponse(
            header: header.model, deleted: deleted?.value ?? 0, prevKVs: (prev_kvs ?? []).map(\.model))
    }
}

struct WireResponseOp: Decodable {
    var response_range: WireRangeResponse?
    var response_put: WirePutResponse?
    var response_delete_range: WireDeleteRangeResponse?
}

struct WireTxnResponse: Decodable {
    var header: WireHeader?
    var succeeded: Bool?
    var responses: [WireResponseOp]?
}

struct WireLeaseGrantResponse: Decodable {
    var header: WireHeader?
    var ID: WireInt64?
    var TTL: WireInt64?
    var error: String?
}

struct WireLeaseKeepAliveResponse: Decodable {
    var header: WireHeader?
    var ID: WireInt64?
    var TTL: WireInt64?
}

struct WireLeaseTimeToLiveResponse: Decodable {
    var header: WireHeader?
    var ID: WireInt64?
    var TTL: WireInt64?
    var grantedTTL: WireInt64?
    var keys: [WireBytes]?
}

struct WireStatusResponse: Decodable {
    var header: WireHeader?
    var version: String?
    var dbSize: WireInt64?
    /// etcd 3.4+ only.
    var dbSizeInUse: WireInt64?
    var leader: WireUInt64?
    var raftIndex: WireUInt64?
    var raftTerm: WireUInt64?
}

struct WireAlarmResponse: Decodable {
    struct Member: Decodable {
        var memberID: WireUInt64?
        var alarm: String?
    }
    var header: WireHeader?
    var alarms: [Member]?
}

struct WireAuthenticateResponse: Decodable {
    var header: WireHeader?
    var token: String?
}

struct WireIgnored: Decodable {}

/// The body of a unary error: `{"error": msg, "message": msg, "code": grpcCode}`.
struct WireUnaryError: Decodable {
    var error: String?
    var message: String?
    var code: Int?
}

/// An error inside a stream: `{"error":{"grpc_code":…,"http_code":…,"message":…}}`.
struct WireStreamError: Decodable {
    var grpc_code: Int?
    var http_code: Int?
    var message: String?
}

/// One line of a streamed answer (keep-alive, snapshot).
struct WireStreamLine<Result: Decodable>: Decodable {
    var result: Result?
    var error: WireStreamError?
}

struct WireSnapshotChunk: Decodable {
    var remaining_bytes: WireInt64?
    var blob: WireBytes?
}
