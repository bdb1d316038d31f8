// The etcd v3 JSON-gateway client: KV, txn, leases, maintenance and auth over libcurl.
// Every call blocks the calling thread; run it on a thread of your own, not on Swift
// concurrency's cooperative pool.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CCurlShims
import Glibc
import Logging
import Synchronization

import PlatformShim

public final class EtcdClient: KeyValueService, Sendable {
    public struct TLS: Sendable, Hashable {
        /// PEM CA bundle that signed the server certificates.
        public var caFile: String?
        /// PEM client certificate, for servers started with `--client-cert-auth`.
        public var certFile: String?
        /// PEM private key of `certFile`.
        public var keyFile: String?
        /// Accept any server certificate, for any host name (etcdctl's `--insecure-skip-tls-verify`):
        /// the connection is still encrypted, but to whoever answers.
        public var insecureSkipVerify: Bool

        public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, insecureSkipVerify: Bool = false) {
            self.caFile = caFile
            self.certFile = certFile
            self.keyFile = keyFile
            self.insecureSkipVerify = insecureSkipVerify
        }
    }

    /// Printed (in a log line, a dump of the configuration) without its password.
    public struct Credentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
        public var user: String
        public var password: String

        public init(user: String, password: String) {
            self.user = user
            self.password = password
        }

        public var description: String { "user \(user) (password not shown)" }
        public var debugDescription: String { description }
    }

    public struct Configuration: Sendable {
        /// `http://host:port` or `https://host:port`, tried in order; the one that answers is kept.
        public var endpoints: [String]
        public var requestTimeout: Duration
        public var connectTimeout: Duration
        public var tls: TLS?
        public var credentials: Credentials?
        /// etcd's `--max-request-bytes` (protobuf size); the client allows 1.34× this in JSON.
        public var maxRequestBytes: Int
        /// etcd's `--max-txn-ops`: the most entries in each of compare, success and failure.
        public var maxTxnOps: Int

        public init(
            endpoints: [String], requestTimeout: Duration = .seconds(10), connectTimeout: Duration = .seconds(3),
            tls: TLS? = nil, credentials: Credentials? = nil, maxRequestBytes: Int = 1_572_864, maxTxnOps: Int = 128
        ) {
            self.endpoints = endpoints
            self.requestTimeout = requestTimeout
            self.connectTimeout = connectTimeout
            self.tls = tls
            self.credentials = credentials
            self.maxRequestBytes = maxRequestBytes
            self.maxTxnOps = maxTxnOps
        }
    }

    /// The txn limits this client is configured with (`maxTxnOps`, `maxRequestBytes`).
    public var txnLimits: TxnLimits {
        TxnLimits(maxOps: configuration.maxTxnOps, maxRequestBytes: configuration.maxRequestBytes)
    }

    /// JSON is about 1.33× the protobuf size etcd limits (base64 bytes, quoted integers).
    static let jsonOverheadFactor = 1.34

    public let configuration: Configuration
    let logger: Logger
    private let endpoints: [String]
    private let pool: CurlHandlePool
    /// Index into `endpoints` of the endpoint that last answered.
    private let preferredEndpoint = Mutex<Int>(0)
    /// Each endpoint's dialect, learnt from its `GET /version` before the first request to it;
    /// nil until then, and again after a request to it failed (it may come back upgraded).
    private let dialects: Mutex<[GatewayDialect?]>
    private let authToken = Mutex<String?>(nil)
    /// A client for each member, by member ID, once `members()` has resolved them.
    private let memberClients = Mutex<[UInt64: (member: EtcdMember, client: EtcdClient)]?>(nil)

    public init(configuration: Configuration, logger: Logger) throws(EtcdError) {
        guard !configuration.endpoints.isEmpty else {
            throw EtcdError(.invalidConfiguration, "No etcd endpoints given; pass at least one, e.g. http://127.0.0.1:2379.")
        }
        var normalized: [String] = []
        for endpoint in configuration.endpoints {
            let trimmed = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
            guard trimmed.hasPrefix("http://") || trimmed.hasPrefix("https://"),
                trimmed.split(separator: "/", omittingEmptySubsequences: true).count >= 2
            else {
                throw EtcdError(
                    .invalidConfiguration,
                    "Endpoint '\(endpoint)' is not a URL; write it as http://host:port or https://host:port.")
            }
            normalized.append(trimmed)
        }
        if let tls = configuration.tls {
            for (name, path) in [("CA file", tls.caFile), ("client certificate", tls.certFile), ("client key", tls.keyFile)] {
                if let path, access(path, R_OK) != 0 {
                    throw EtcdError(
                        .invalidConfiguration,
                        "The TLS \(name) '\(path)' cannot be read (\(String(cString: strerror(errno)))); check the path and its permissions.")
                }
            }
            if (tls.certFile == nil) != (tls.keyFile == nil) {
                throw EtcdError(.invalidConfiguration, "A TLS client certificate needs its key and vice versa; give both files or neither.")
            }
        }
        guard configuration.maxTxnOps > 0, configuration.maxRequestBytes > 0 else {
            throw EtcdError(.invalidConfiguration, "maxTxnOps and maxRequestBytes must be positive.")
        }
        if curlGlobalInitResult != CURLE_OK {
            throw EtcdError(.invalidConfiguration, "libcurl failed to initialise (curl_global_init returned \(curlGlobalInitResult.rawValue)).")
        }
        self.configuration = configuration
        self.logger = logger
        self.endpoints = normalized
        self.dialects = Mutex(Array(repeating: nil, count: normalized.count))
        let tlsFiles = configuration.tls.map {
            TLSFiles(caFile: $0.caFile, certFile: $0.certFile, keyFile: $0.keyFile, insecureSkipVerify: $0.insecureSkipVerify)
        }
        self.pool = CurlHandlePool(
            maxIdle: 16, connectTimeoutMilliseconds: Self.milliseconds(configuration.connectTimeout), tls: tlsFiles)
    }

    /// The endpoint requests currently go to first.
    public var currentEndpoint: String { endpoints[preferredEndpoint.withLock { $0 }] }

    // MARK: KV

    public func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse {
        let wire: WireRangeResponse = try call(
            .range, WireRangeRequest(request), subject: Self.describeKey(request.key, rangeEnd: request.rangeEnd))
        return wire.model
    }

    @discardableResult
    public func put(_ request: PutRequest) throws(EtcdError) -> PutResponse {
        let wire: WirePutResponse = try call(
            .put, WirePutRequest(request), subject: Self.describeKey(request.key),
            needs: request.ignoreLease ? Feature.ignoreLease : nil)
        return wire.model
    }

    @discardableResult
    public func deleteRange(_ request: DeleteRangeRequest) throws(EtcdError) -> DeleteRangeResponse {
        let wire: WireDeleteRangeResponse = try call(
            .deleteRange, WireDeleteRangeRequest(request),
            subject: Self.describeKey(request.key, rangeEnd: request.rangeEnd))
        return wire.model
    }

    public func txn(_ request: TxnRequest) throws(EtcdError) -> TxnResponse {
        for (name, count) in [("compare", request.compare.count), ("success", request.success.count), ("failure", request.failure.count)]
        where count > configuration.maxTxnOps {
            throw EtcdError(
                .limitExceeded,
                "The txn has \(count) \(name) entries, over the limit of \(configuration.maxTxnOps) per list (etcd's --max-txn-ops). "
                    + "Split it into several txns, or if the server runs with a larger --max-txn-ops, raise Configuration.maxTxnOps to match."
            )
        }
        let keys = (request.compare.map(\.key) + request.success.map(Self.opKey) + request.failure.map(Self.opKey))
        let subject = keys.first.map { "txn touching \(Self.describeKey($0))" + (keys.count > 1 ? " and \(keys.count - 1) more" : "") } ?? "txn"
        let wire: WireTxnResponse = try call(.txn, WireTxnRequest(request), subject: subject, needs: Feature.needed(by: request))
        var responses: [ResponseOp] = []
        for op in wire.responses ?? [] {
            if let r = op.response_range {
                responses.append(.range(r.model))
            } else if let p = op.response_put {
                responses.append(.put(p.model))
            } else if let d = op.response_delete_range {
                responses.append(.deleteRange(d.model))
            } else {
                throw EtcdError(.decode, "etcd answered a txn with a response of an unknown kind; is the server an etcd 3.x?")
            }
        }
        return TxnResponse(header: wire.header.model, succeeded: wire.succeeded ?? false, responses: responses)
    }

    // MARK: Leases

    public func leaseGrant(ttl: Int64) throws(EtcdError) -> LeaseGrantResponse {
        let wire: WireLeaseGrantResponse = try call(.leaseGrant, WireLeaseGrantRequest(TTL: WireInt64(ttl)), subject: "lease grant")
        if let error = wire.error, !error.isEmpty {
            throw EtcdError(.server, "etcd refused to grant a lease: \(error)")
        }
        guard let id = wire.ID?.value, id != 0 else {
            throw EtcdError(.decode, "etcd granted a lease without an ID.")
        }
        return LeaseGrantResponse(header: wire.header.model, id: id, ttl: wire.TTL?.value ?? 0)
    }

    public func leaseRevoke(id: Int64) throws(EtcdError) {
        let _: WireIgnored = try call(.leaseRevoke, WireLeaseIDRequest(ID: WireInt64(id)), subject: Self.describeLease(id))
    }

    public func leaseKeepAliveOnce(id: Int64) throws(EtcdError) -> Int64? {
        try leaseKeepAliveOnce(id: id, timeout: configuration.requestTimeout)
    }

    public func leaseKeepAliveOnce(id: Int64, timeout: Duration) throws(EtcdError) -> Int64? {
        // The keep-alive is a stream: one result line (or an error line) per request sent.
        let line: WireStreamLine<WireLeaseKeepAliveResponse> = try call(
            .leaseKeepAlive, WireLeaseIDRequest(ID: WireInt64(id)), subject: Self.describeLease(id), timeout: timeout)
        if let error = line.error {
            throw Self.streamError(error, subject: Self.describeLease(id), endpoint: currentEndpoint)
        }
        guard let ttl = line.result?.TTL?.value, ttl > 0 else { return nil }
        return ttl
    }

    /// Throws `.unsupported` where the gateway has no time-to-live (etcd 3.1.4's may not).
    public func leaseTimeToLive(id: Int64, keys: Bool) throws(EtcdError) -> LeaseTimeToLiveResponse {
        let wire: WireLeaseTimeToLiveResponse
        do {
            wire = try call(
                .leaseTimeToLive, WireLeaseTimeToLiveRequest(ID: WireInt64(id), keys: keys ? true : nil),
                subject: Self.describeLease(id))
        } catch  where error.code == .httpStatus && error.httpStatus == 404 {
            throw EtcdError(
                .unsupported, "etcd's gateway at \(error.endpoint ?? currentEndpoint) has no lease time-to-live (404).",
                endpoint: error.endpoint, httpStatus: 404)
        } catch  where error.code == .leaseNotFound {
            // 3.1–3.3 answer an unknown lease with an error, 3.4 with TTL -1: speak as 3.4 does.
            return LeaseTimeToLiveResponse(header: ResponseHeader(), id: id, ttl: -1, grantedTTL: 0, keys: [])
        }
        return LeaseTimeToLiveResponse(
            header: wire.header.model, id: wire.ID?.value ?? id, ttl: wire.TTL?.value ?? 0,
            grantedTTL: wire.grantedTTL?.value ?? 0, keys: (wire.keys ?? []).map(\.bytes))
    }

    /// Keeps `leaseID` alive from a dedicated thread until `stop()`; see `LeaseKeeper`.
    public func startKeepAlive(
        leaseID: Int64, ttl: Int64, onLost: @escaping @Sendable (EtcdError) -> Void
    ) -> LeaseKeeper {
        LeaseKeeper.start(store: self, leaseID: leaseID, ttl: ttl, logger: logger, onLost: onLost)
    }

    // MARK: Maintenance

    public func status() throws(EtcdError) -> StatusResponse {
        let wire: WireStatusResponse = try call(.status, WireEmpty(), subject: "status")
        return StatusResponse(
            header: wire.header.model, version: wire.version ?? "", dbSize: wire.dbSize?.value ?? 0,
            dbSizeInUse: wire.dbSizeInUse?.value, leader: wire.leader?.value ?? 0, raftIndex: wire.raftIndex?.value ?? 0,
            raftTerm: wire.raftTerm?.value ?? 0)
    }

    /// Discards history before `revision`. `physical` waits until the backend has freed it
    /// (so the space can be reused; what `--compact` needs). Non-root users may compact.
    public func compact(revision: Int64, physical: Bool) throws(EtcdError) {
        let _: WireIgnored = try call(
            .compaction, WireCompactionRequest(revision: WireInt64(revision), physical: physical ? true : nil),
            subject: "compaction to revision \(revision)")
    }

    /// The cluster's active alarms (empty when none).
    public func alarms() throws(EtcdError) -> [EtcdAlarm] {
        let wire: WireAlarmResponse = try call(.alarm, WireAlarmRequest(action: "GET"), subject: "alarm list")
        return (wire.alarms ?? []).map {
            EtcdAlarm(memberID: $0.memberID?.value ?? 0, kind: EtcdAlarm.Kind(rawValue: $0.alarm ?? "") ?? .unknown)
        }
    }

    /// Disarms `alarm` on its member (root only).
    public func disarm(_ alarm: EtcdAlarm) throws(EtcdError) {
        let _: WireAlarmResponse = try call(
            .alarm, WireAlarmRequest(action: "DEACTIVATE", memberID: WireUInt64(alarm.memberID), alarm: alarm.kind.rawValue),
            subject: "disarming the \(alarm.kind.rawValue) alarm")
    }

    /// Every member of the cluster, as it advertises itself.
    public func memberList() throws(EtcdError) -> [EtcdMember] {
        let wire: WireMemberListResponse = try call(.memberList, WireEmpty(), subject: "member list")
        return (wire.members ?? []).map {
            EtcdMember(id: $0.id?.value ?? 0, name: $0.name ?? "", clientURLs: $0.clientURLs ?? [])
        }
    }

    /// Each member's own status: the space quota is each member's, and so is its backend.
    /// A member that does not answer (down, or cut off) is left out, as it takes no writes
    /// meanwhile; only when none answers, or one refuses (permission), does this throw.
    public func memberStatuses() throws(EtcdError) -> [MemberStatus] {
        var statuses: [MemberStatus] = []
        var lastFailure: EtcdError?
        for entry in try members() {
            do {
                let status = try entry.client.status()
                statuses.append(
                    MemberStatus(
                        memberID: entry.member.id, name: entry.member.name, endpoint: entry.client.currentEndpoint,
                        dbSize: status.dbSize, dbSizeInUse: status.dbSizeInUse, isLeader: status.leader == entry.member.id,
                        revision: status.header.revision))
            } catch  where error.code == .unavailable || error.code == .timeout || error.code == .transport {
                logger.warning("a member does not answer; its backend size is not watched meanwhile", metadata: ["member": "\(entry.member.name)"])
                lastFailure = error
            }
        }
        if statuses.isEmpty, let lastFailure { throw lastFailure }
        return statuses
    }

    /// Defragments one member: etcd rewrites its backend file to the size in use, and the
    /// member answers nothing else meanwhile (seconds per GiB). Root only where auth is on.
    public func defragment(memberID: UInt64, timeout: Duration) throws(EtcdError) {
        guard let entry = try members().first(where: { $0.member.id == memberID }) else {
            throw EtcdError(.invalidConfiguration, "No member \(String(memberID, radix: 16)) in the cluster to defragment.")
        }
        let _: WireIgnored = try entry.client.call(
            .defragment, WireEmpty(), subject: "defragmenting member \(entry.member.name)", timeout: timeout)
    }

    /// Whether this user may defragment, asked without defragmenting: listing the users
    /// needs the same root role (and any user may while auth is off).
    public func defragmentPermitted() throws(EtcdError) -> Bool {
        do {
            let _: WireIgnored = try call(.userList, WireEmpty(), subject: "the user list (a permission probe)")
            return true
        } catch  where error.code == .permissionDenied {
            return false
        }
    }

    /// The members with a client for each: a configured endpoint that answers as the member
    /// where there is one (a port-forward, a Service), else the member's advertised URLs.
    /// A one-member cluster is reached as configured.
    private func members() throws(EtcdError) -> [(member: EtcdMember, client: EtcdClient)] {
        if let resolved = memberClients.withLock({ $0 }) { return resolved.values.sorted { $0.member.name < $1.member.name } }
        let members = try memberList()
        var byID: [UInt64: (member: EtcdMember, client: EtcdClient)] = [:]
        if members.count == 1 {
            byID[members[0].id] = (members[0], self)
        } else {
            for endpoint in endpoints {
                let client = try subClient([endpoint])
                if let id = try? client.status().header.memberID, let member = members.first(where: { $0.id == id }) {
                    byID[id] = (member, client)
                }
            }
            for member in members where byID[member.id] == nil {
                guard !member.clientURLs.isEmpty else {
                    throw EtcdError(
                        .unavailable, "Member \(member.name) advertises no client URL; pass its endpoint with --endpoints.")
                }
                byID[member.id] = (member, try subClient(member.clientURLs))
            }
        }
        memberClients.withLock { $0 = byID }
        return byID.values.sorted { $0.member.name < $1.member.name }
    }

    private func subClient(_ endpoints: [String]) throws(EtcdError) -> EtcdClient {
        var configuration = self.configuration
        configuration.endpoints = endpoints
        return try EtcdClient(configuration: configuration, logger: logger)
    }

    /// One configured endpoint and its etcd version, or why it could not be learnt.
    public struct EndpointAnswer: Sendable {
        public var endpoint: String
        public var version: Result<EndpointVersion, EtcdError>
    }

    /// Every endpoint's etcd version (asked afresh), or why it could not be learnt. The order
    /// is that of the configuration.
    public func endpointVersions() -> [EndpointAnswer] {
        endpoints.indices.map { index in
            dialects.withLock { $0[index] = nil }
            return EndpointAnswer(endpoint: endpoints[index], version: dialect(forEndpointAt: index).map(\.version).mapError { $0.error })
        }
    }

    /// Streams a snapshot of the backend database to `path` (created or truncated) and returns
    /// its size in bytes. The file is what `etcdctl snapshot save` writes. `cancelled` is asked
    /// as each piece of the stream arrives: when it says yes, the transfer ends there and the
    /// unfinished file is deleted (`.cancelled`), so a signal need not wait for a large database.
    @discardableResult
    public func snapshot(toFile path: String, cancelled: @escaping () -> Bool = { false }) throws(EtcdError) -> Int64 {
        guard let file = fopen(path, "wb") else {
            throw EtcdError(.invalidConfiguration, "Cannot create the snapshot file '\(path)': \(String(cString: strerror(errno))).")
        }
        if configuration.credentials != nil {
            // etcd 3.4 stalls a snapshot stream sent with a stale token instead of answering
            // 401, so start it with a fresh one.
            do throws(EtcdError) {
                _ = try currentToken(refresh: true)
            } catch {
                fclose(file)
                unlink(path)
                throw error
            }
        }
        let writer = SnapshotWriter(file: file, cancelled: cancelled)
        let sink = ResponseSink { bytes in writer.consume(bytes) }
        let outcome: Result<(HTTPResult, String), EtcdError> = authorizedPost(
            .snapshot, body: Array("{}".utf8), timeout: .zero, subject: "snapshot", sink: { sink })
        let closeFailed = fclose(file) != 0
        do throws(EtcdError) {
            let (http, endpoint) = try outcome.get()
            if let failure = writer.failure {
                throw EtcdError(failure.code, failure.message, endpoint: endpoint, httpStatus: failure.httpStatus, grpcCode: failure.grpcCode)
            }
            writer.finish()
            if let failure = writer.failure {
                throw EtcdError(failure.code, failure.message, endpoint: endpoint)
            }
            if http.status != 200 {
                throw Self.mapHTTPError(status: http.status, body: writer.rawPrefix, subject: "snapshot", endpoint: endpoint)
            }
            if closeFailed {
                throw EtcdError(.transport, "Writing the snapshot file '\(path)' failed when closing it; check free disk space.")
            }
            guard writer.sawLastChunk else {
                throw EtcdError(
                    .transport, "The snapshot stream ended before its last chunk; the file '\(path)' is incomplete. Try again.", endpoint: endpoint)
            }
            logger.debug("snapshot saved", metadata: ["path": "\(path)", "bytes": "\(writer.bytesWritten)"])
            return writer.bytesWritten
        } catch {
            unlink(path)
            throw error
        }
    }

    // MARK: Request plumbing

    /// `10 s`, `2.5 s`, `500 ms`: for messages, where Duration's own `10.0 seconds` reads oddly.
    public static func describe(_ duration: Duration) -> String {
        let milliseconds = Self.milliseconds(duration)
        if milliseconds < 1000 { return "\(milliseconds) ms" }
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(Double(milliseconds) / 1000) s"
    }

    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }

    static func opKey(_ op: RequestOp) -> [UInt8] {
        switch op {
        case .range(let r): r.key
        case .put(let p): p.key
        case .deleteRange(let d): d.key
        }
    }

    static func describeKey(_ key: [UInt8], rangeEnd: [UInt8] = []) -> String {
        let text = key.printable
        if rangeEnd.isEmpty { return "key \"\(text)\"" }
        if rangeEnd == prefixRangeEnd(key) { return "prefix \"\(text)\"" }
        return "range [\"\(text)\", \"\(rangeEnd.printable)\")"
    }

    static func describeLease(_ id: Int64) -> String {
        "lease \(String(UInt64(bitPattern: id), radix: 16)) (\(id))"
    }

    private func encode(_ value: some Encodable) throws(EtcdError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(value))
        } catch {
            throw EtcdError(.invalidConfiguration, "Could not encode the request as JSON: \(error)")
        }
    }

    /// Encodes, checks the size limit, POSTs with authentication, maps errors, decodes.
    private func call<Response: Decodable>(
        _ route: GatewayRoute, _ request: some Encodable, subject: String, timeout: Duration? = nil, needs feature: Feature? = nil
    ) throws(EtcdError) -> Response {
        let body = try encode(request)
        let limit = Int(Double(configuration.maxRequestBytes) * Self.jsonOverheadFactor)
        if body.count > limit {
            throw EtcdError(
                .limitExceeded,
                "The request for \(subject) is \(body.count) bytes of JSON, over the client limit of \(limit) bytes "
                    + "(maxRequestBytes \(configuration.maxRequestBytes) × \(Self.jsonOverheadFactor) for JSON overhead; "
                    + "etcd's --max-request-bytes). Write fewer or smaller values per request, "
                    + "or if the server runs with a larger --max-request-bytes, raise Configuration.maxRequestBytes to match."
            )
        }
        let (http, endpoint) = try authorizedPost(
            route, body: body, timeout: timeout ?? configuration.requestTimeout, subject: subject, needs: feature,
            sink: { ResponseSink() }
        ).get()
        guard http.status == 200 else {
            throw Self.mapHTTPError(status: http.status, body: http.body, subject: subject, endpoint: endpoint)
        }
        do {
            return try JSONDecoder().decode(Response.self, from: Data(http.body))
        } catch {
            let excerpt = String(decoding: http.body.prefix(200), as: UTF8.self)
            throw EtcdError(
                .decode, "Could not decode etcd's answer to \(subject) (\(error)); the answer began: \(excerpt)", endpoint: endpoint,
                httpStatus: http.status)
        }
    }

    /// POSTs with the current token; on 401 (token expired or server restarted) authenticates
    /// once more and retries.
    private func authorizedPost(
        _ route: GatewayRoute, body: [UInt8], timeout: Duration, subject: String, needs feature: Feature? = nil,
        sink makeSink: () -> ResponseSink
    ) -> Result<(HTTPResult, String), EtcdError> {
        do throws(EtcdError) {
            var token = try currentToken(refresh: false)
            var attempt = 0
            while true {
                let (http, endpoint) = try post(route, body: body, token: token, timeout: timeout, needs: feature, sink: makeSink())
                if http.status == 401, configuration.credentials != nil, attempt == 0 {
                    logger.info("etcd rejected the auth token; authenticating again", metadata: ["endpoint": "\(endpoint)"])
                    attempt += 1
                    token = try currentToken(refresh: true)
                    continue
                }
                if http.status == 401 {
                    let base = Self.mapHTTPError(status: http.status, body: http.body, subject: subject, endpoint: endpoint)
                    throw EtcdError(
                        .authentication,
                        configuration.credentials == nil
                            ? "etcd requires authentication for \(subject) (\(base.message)); configure a user and password."
                            : "etcd rejected the auth token for \(subject) even after authenticating again (\(base.message)).",
                        endpoint: endpoint, httpStatus: 401, grpcCode: base.grpcCode)
                }
                return .success((http, endpoint))
            }
        } catch {
            return .failure(error)
        }
    }

    private func currentToken(refresh: Bool) throws(EtcdError) -> String? {
        guard let credentials = configuration.credentials else { return nil }
        if !refresh, let token = authToken.withLock({ $0 }) { return token }
        let body = try encode(WireAuthenticateRequest(name: credentials.user, password: credentials.password))
        let (http, endpoint) = try post(.authenticate, body: body, token: nil, timeout: configuration.requestTimeout, sink: ResponseSink())
        guard http.status == 200 else {
            let base = Self.mapHTTPError(status: http.status, body: http.body, subject: "authentication", endpoint: endpoint)
            if base.code == .unavailable || base.code == .httpStatus {
                throw base
            }
            // Never echo the password.
            throw EtcdError(
                .authentication,
                "etcd refused to authenticate user '\(credentials.user)': \(base.message). Check the user name and password.",
                endpoint: endpoint, httpStatus: http.status, grpcCode: base.grpcCode)
        }
        let decoded: WireAuthenticateResponse
        do {
            decoded = try JSONDecoder().decode(WireAuthenticateResponse.self, from: Data(http.body))
        } catch {
            throw EtcdError(.decode, "Could not decode etcd's answer to authenticate: \(error)", endpoint: endpoint)
        }
        guard let token = decoded.token, !token.isEmpty else {
            throw EtcdError(
                .authentication, "etcd authenticated user '\(credentials.user)' but returned no token; is auth enabled on the server?",
                endpoint: endpoint)
        }
        authToken.withLock { $0 = token }
        return token
    }

    /// Sends to the preferred endpoint in its dialect; when the request could not be
    /// delivered (connection refused or reset, connect timeout, TLS failure, not an etcd)
    /// tries the others in turn and remembers the first that answers.
    private func post(
        _ route: GatewayRoute, body: [UInt8], token: String?, timeout: Duration, needs feature: Feature? = nil,
        sink makeSink: @autoclosure () -> ResponseSink
    ) throws(EtcdError) -> (HTTPResult, String) {
        let first = preferredEndpoint.withLock { $0 }
        var failures: [EndpointFailure] = []
        for offset in 0..<endpoints.count {
            let index = (first + offset) % endpoints.count
            let endpoint = endpoints[index]
            var dialect: GatewayDialect
            // Asking the version must not outlast the caller's own deadline (the lease keeper's).
            let askTimeout = timeout == .zero ? configuration.requestTimeout : min(timeout, configuration.requestTimeout)
            switch self.dialect(forEndpointAt: index, timeout: askTimeout) {
            case .success(let known): dialect = known
            case .failure(let failure):
                failures.append(failure)
                continue
            }
            // Older gateways ignore fields they do not know: refuse rather than be misunderstood.
            if let feature, dialect.version.server < feature.since {
                throw EtcdError(
                    .unsupported,
                    "etcd \(dialect.version.server) at \(endpoint) cannot \(feature.what) (etcd \(feature.since.major).\(feature.since.minor)+).",
                    endpoint: endpoint)
            }
            var redetected = false
            while true {
                let headers = token.map { [dialect.authorizationHeader(token: $0)] } ?? []
                let path = dialect.path(route)
                switch transfer(endpoint + path, body: body, headers: headers, timeout: timeout, sink: makeSink()) {
                case .success(let http):
                    // A plain-text 404 for a path this dialect has: the member behind the URL
                    // may have been replaced by another etcd version. Ask again, once.
                    if http.status == 404, !redetected, http.body.first != UInt8(ascii: "{") {
                        redetected = true
                        dialects.withLock { $0[index] = nil }
                        if case .success(let fresh) = self.dialect(forEndpointAt: index, timeout: askTimeout), fresh != dialect {
                            dialect = fresh
                            continue
                        }
                    }
                    if index != first {
                        preferredEndpoint.withLock { $0 = index }
                        logger.info("switched etcd endpoint", metadata: ["endpoint": "\(endpoint)"])
                    }
                    return (http, endpoint)
                case .failure(let failure):
                    if failure.curlCode == CURLE_WRITE_ERROR {
                        // Our own consumer aborted the stream; it recorded why.
                        return (HTTPResult(status: 200, body: []), endpoint)
                    }
                    dialects.withLock { $0[index] = nil }
                    let resetAfterSending = [CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING].contains(failure.curlCode)
                    if !failure.requestNotSent && !resetAfterSending {
                        if failure.curlCode == CURLE_OPERATION_TIMEDOUT {
                            throw EtcdError(
                                .timeout,
                                "etcd at \(endpoint) accepted the request to \(path) but did not answer within \(Self.describe(timeout)) "
                                    + "(the request timeout); "
                                    + "if it was a write, its outcome is unknown: read the keys again before retrying.",
                                endpoint: endpoint)
                        }
                        throw EtcdError(.transport, "The request to \(endpoint)\(path) failed: \(failure.detail).", endpoint: endpoint)
                    }
                    logger.warning("etcd endpoint failed", metadata: ["endpoint": "\(endpoint)", "error": "\(failure.detail)"])
                    failures.append(
                        EndpointFailure(error: EtcdError(.transport, explain(failure, endpoint: endpoint, timeout: timeout), endpoint: endpoint)))
                }
                break
            }
        }
        let last = failures.last?.error
        if let last, failures.allSatisfy({ $0.error.code == .incompatibleServer }) {
            throw EtcdError(.incompatibleServer, failures.map(\.error.message).joined(separator: "; "), endpoint: last.endpoint)
        }
        let reasons = failures.map(\.error.message).joined(separator: "; ")
        // A reason may end in a question of its own ("is etcd stuck?"): no full stop after it.
        let sentenceEnd = reasons.last.map { ".?!".contains($0) } == true ? " " : ". "
        throw EtcdError(
            .transport,
            "Could not reach etcd: \(reasons)\(sentenceEnd)Check that etcd runs and the endpoints, ports and TLS settings are right.",
            endpoint: last?.endpoint)
    }

    /// Why one endpoint could not take a request.
    private struct EndpointFailure: Error {
        var error: EtcdError
    }

    private func transfer(
        _ url: String, body: [UInt8]?, headers: [String], timeout: Duration, sink: ResponseSink
    ) -> Result<HTTPResult, TransferFailure> {
        let outcome = pool.withHandle { handle in
            handle.perform(
                url: url, body: body, headers: headers, timeoutMilliseconds: Self.milliseconds(timeout),
                stallSeconds: max(1, Self.milliseconds(configuration.requestTimeout) / 1000), sink: sink)
        }
        return outcome ?? .failure(TransferFailure(curlCode: CURLE_OUT_OF_MEMORY, detail: "libcurl could not create a handle", requestNotSent: true))
    }

    /// The endpoint's dialect, asking its `GET /version` when not known yet.
    private func dialect(forEndpointAt index: Int, timeout: Duration? = nil) -> Result<GatewayDialect, EndpointFailure> {
        if let known = dialects.withLock({ $0[index] }) { return .success(known) }
        let endpoint = endpoints[index]
        let http: HTTPResult
        let timeout = timeout ?? configuration.requestTimeout
        switch transfer(endpoint + "/version", body: nil, headers: [], timeout: timeout, sink: ResponseSink()) {
        case .success(let answer): http = answer
        case .failure(let failure):
            return .failure(EndpointFailure(error: EtcdError(.transport, explain(failure, endpoint: endpoint, timeout: timeout), endpoint: endpoint)))
        }
        func incompatible(_ why: String) -> Result<GatewayDialect, EndpointFailure> {
            .failure(EndpointFailure(error: EtcdError(.incompatibleServer, "\(endpoint) \(why)", endpoint: endpoint, httpStatus: http.status)))
        }
        let excerpt = String(String(decoding: http.body.prefix(120), as: UTF8.self).filter { !$0.isNewline })
        guard http.status == 200, let answer = try? JSONDecoder().decode(WireVersion.self, from: Data(http.body)),
            let serverText = answer.etcdserver
        else {
            // Go's HTTPS servers say so in plain HTTP (etcd 3.1, 3.2; newer ones close the connection).
            if excerpt.contains("HTTP request to an HTTPS server") {
                return incompatible("serves TLS (it answered GET /version: \(excerpt)): use https:// (with --cacert)")
            }
            return incompatible(
                "is not an etcd client URL: it answered GET /version with HTTP \(http.status)\(excerpt.isEmpty ? "" : " (\(excerpt))"); "
                    + "give etcd's client URL (port 2379 by default, not the peer port 2380)"
            )
        }
        guard let server = EtcdVersion(serverText) else {
            return incompatible("answered GET /version with an etcd version this client cannot read: \(excerpt)")
        }
        guard server >= GatewayDialect.oldestSupported else {
            return incompatible("runs etcd \(serverText), which has no v3 API; pachmigrate needs etcd 3.0 or newer")
        }
        let dialect = GatewayDialect(version: EndpointVersion(endpoint: endpoint, server: server, cluster: answer.etcdcluster ?? "unknown"))
        logger.debug("etcd endpoint dialect", metadata: ["endpoint": "\(endpoint)", "server": "\(server)", "prefix": "\(dialect.prefix)"])
        dialects.withLock { $0[index] = dialect }
        return .success(dialect)
    }

    /// `timeout`: the one the failed transfer had, which a timeout message names (zero: none,
    /// a stall of the request timeout ended it instead).
    private func explain(_ failure: TransferFailure, endpoint: String, timeout: Duration) -> String {
        switch failure.curlCode {
        case CURLE_PEER_FAILED_VERIFICATION:
            return
                "\(endpoint): the server certificate could not be verified against the CA file '\(configuration.tls?.caFile ?? "(system CAs)")' "
                + "(\(failure.detail)); check that the CA file is the one that signed the server's certificate"
        case CURLE_SSL_CACERT_BADFILE:
            return "\(endpoint): the CA file '\(configuration.tls?.caFile ?? "")' could not be loaded (\(failure.detail))"
        case CURLE_SSL_CERTPROBLEM:
            return "\(endpoint): the client certificate or key could not be used (\(failure.detail))"
        case _ where failure.detail.contains("alert certificate required"):
            return "\(endpoint): etcd requires a client certificate (\(failure.detail)); give one with its key"
        case _
        where failure.detail.contains("alert bad certificate") || failure.detail.contains("alert certificate")
            || failure.detail.contains("alert unknown ca"):
            // TLS 1.3 servers (Go's included) send one alert for every reason they reject a
            // client certificate, so name the likely ones.
            return
                "\(endpoint): etcd rejected the client certificate '\(configuration.tls?.certFile ?? "(none)")' (\(failure.detail)); "
                + "check that it has not expired (openssl x509 -noout -dates -in FILE) and is signed by a CA etcd trusts (its --trusted-ca-file)"
        case CURLE_OPERATION_TIMEDOUT where failure.connected:
            // libcurl's own words ("timed out after 10001 milliseconds") only repeat this, less plainly.
            let waited = Self.describe(timeout == .zero ? configuration.requestTimeout : timeout)
            return "\(endpoint) accepted the connection but sent no answer within \(waited) (the request timeout): "
                + "is it etcd's client port, and is etcd stuck?"
        case CURLE_OPERATION_TIMEDOUT:
            return "\(endpoint): no connection within \(Self.describe(configuration.connectTimeout)) (the connect timeout)"
        case CURLE_COULDNT_RESOLVE_HOST:
            // The endpoint an in-cluster Job uses, given from a laptop.
            return "\(endpoint): the name does not resolve from here (\(failure.detail)); a Kubernetes Service name resolves only "
                + "inside the cluster: from outside, run `kubectl port-forward svc/etcd 2379:2379` and use http://127.0.0.1:2379"
        case CURLE_GOT_NOTHING where endpoint.hasPrefix("http://"):
            return "\(endpoint) closed the connection without an answer (\(failure.detail)): if etcd serves TLS there, use https:// (with --cacert)"
        case CURLE_SSL_CONNECT_ERROR where endpoint.hasPrefix("https://"):
            return "\(endpoint): the TLS handshake failed (\(failure.detail)): if etcd serves plain HTTP there, use http://"
        default:
            return "\(endpoint): \(failure.detail)"
        }
    }

    static func mapHTTPError(status: Int, body: [UInt8], subject: String, endpoint: String) -> EtcdError {
        guard let decoded = try? JSONDecoder().decode(WireUnaryError.self, from: Data(body)),
            let grpc = decoded.code
        else {
            let text = String(String(decoding: body.prefix(200), as: UTF8.self).filter { !$0.isNewline })
            // etcd's peer port answers GET /version as the client port does, and 404 to the v3 API.
            let question =
                status == 404
                ? "is the endpoint etcd's peer port (2380 by default)? Give etcd's client URL (port 2379 by default)"
                : "is the endpoint an etcd client URL?"
            return EtcdError(
                .httpStatus, "etcd's gateway answered \(subject) with HTTP \(status)\(text.isEmpty ? "" : ": \(text)"); \(question)",
                endpoint: endpoint, httpStatus: status)
        }
        let message = decoded.message ?? decoded.error ?? "(no message)"
        return mapGRPCError(grpc: grpc, httpStatus: status, message: message, subject: subject, endpoint: endpoint)
    }

    static func streamError(_ error: WireStreamError, subject: String, endpoint: String) -> EtcdError {
        mapGRPCError(
            grpc: error.grpc_code ?? 2, httpStatus: error.http_code ?? 500, message: error.message ?? "(no message)",
            subject: subject, endpoint: endpoint)
    }

    static func mapGRPCError(grpc: Int, httpStatus: Int, message: String, subject: String, endpoint: String) -> EtcdError {
        let code: EtcdError.Code
        var text: String
        switch grpc {
        // 3.4 says it with code 3, 3.1 with code 2.
        case _ where message.contains("user name is empty"):
            code = .authentication
            text = "etcd requires authentication for \(subject) (\(message)); configure a user and password."
        case 3 where message.contains("too many operations") || message.contains("request is too large"):
            code = .limitExceeded
            text = "etcd rejected \(subject): \(message). Split the work into smaller requests (etcd's --max-txn-ops / --max-request-bytes)."
        case 8 where message.contains("space exceeded"):
            code = .noSpace
            text =
                "etcd refused \(subject): \(message). Its backend reached its space quota and raised the NOSPACE alarm: "
                + "every write fails until it is compacted, defragmented and the alarm disarmed."
        case 8:
            code = .limitExceeded
            text = "etcd rejected \(subject) as too large: \(message). Use smaller requests."
        case 11:
            code = .compacted
            text = "etcd cannot serve \(subject): \(message). The revision was compacted; read again at a newer revision."
        case 5:
            code = .leaseNotFound
            text = "The \(subject) does not exist (expired or revoked): \(message)."
        case 7,
            // Streams (snapshot) lose the code: "auth: permission denied" arrives as code 2.
            2 where message.contains("permission denied"):
            code = .permissionDenied
            text = "etcd denied permission for \(subject): \(message). Grant the user's role access to it."
        case 16:
            code = .authentication
            text = "etcd rejected the credentials for \(subject): \(message)."
        case 1:
            // The gateway's own connection to etcd was cancelled: etcd is shutting down
            // ("grpc: the client connection is closing"). As transient as code 14.
            code = .unavailable
            text =
                "etcd is going away (shutting down or restarting) while serving \(subject): \(message). "
                + "If this was a write its outcome is unknown: read again before retrying."
        case 14:
            code = .unavailable
            text = "etcd is unavailable for \(subject): \(message). If this was a write its outcome is unknown: read again before retrying."
        default:
            code = .server
            text = "etcd failed \(subject): \(message) (gRPC code \(grpc))."
        }
        return EtcdError(code, text, endpoint: endpoint, httpStatus: httpStatus, grpcCode: grpc)
    }
}

/// Decodes the snapshot stream's lines as they arrive and appends each blob to the file.
private final class SnapshotWriter {
    struct Failure {
        var code: EtcdError.Code
        var message: String
        var httpStatus: Int?
        var grpcCode: Int?
    }

    let file: UnsafeMutablePointer<FILE>
    private let cancelled: () -> Bool
    private var pending: [UInt8] = []
    private(set) var bytesWritten: Int64 = 0
    private(set) var sawLastChunk = false
    private(set) var failure: Failure?
    /// The first bytes of the answer, to explain a non-JSON error page.
    private(set) var rawPrefix: [UInt8] = []
    private let decoder = JSONDecoder()

    init(file: UnsafeMutablePointer<FILE>, cancelled: @escaping () -> Bool) {
        self.file = file
        self.cancelled = cancelled
    }

    func consume(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if cancelled() {
            failure = Failure(code: .cancelled, message: "The snapshot was stopped on request before its end; the unfinished file is deleted.")
            return false
        }
        if rawPrefix.count < 512 { rawPrefix.append(contentsOf: bytes.prefix(512 - rawPrefix.count)) }
        pending.append(contentsOf: bytes)
        var lineStart = pending.startIndex
        while let newline = pending[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
            if !handleLine(pending[lineStart..<newline]) { return false }
            lineStart = newline + 1
        }
        pending.removeSubrange(..<lineStart)
        return true
    }

    func finish() {
        if !pending.isEmpty, failure == nil {
            _ = handleLine(pending[...])
            pending.removeAll()
        }
    }

    private func handleLine(_ line: ArraySlice<UInt8>) -> Bool {
        if line.allSatisfy({ $0 == 32 || $0 == 13 }) { return true }
        let parsed: WireStreamLine<WireSnapshotChunk>
        do {
            parsed = try decoder.decode(WireStreamLine<WireSnapshotChunk>.self, from: Data(line))
        } catch {
            // Not a stream line: probably a plain-text error page; the status check explains it.
            return true
        }
        if let error = parsed.error {
            let mapped = EtcdClient.streamError(error, subject: "snapshot", endpoint: "")
            let hint = mapped.code == .permissionDenied ? " Snapshots need a user with the root role." : ""
            failure = Failure(
                code: mapped.code,
                message: "etcd failed the snapshot: \(error.message ?? "(no message)") (gRPC code \(error.grpc_code ?? 2)).\(hint)",
                httpStatus: error.http_code, grpcCode: error.grpc_code)
            return false
        }
        guard let chunk = parsed.result else { return true }
        let blob = chunk.blob?.bytes ?? []
        if !blob.isEmpty {
            let written = blob.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            guard written == blob.count else {
                failure = Failure(code: .transport, message: "Writing the snapshot file failed: \(String(cString: strerror(errno))).")
                return false
            }
            bytesWritten += Int64(blob.count)
        }
        if (chunk.remaining_bytes?.value ?? 0) == 0 { sawLastChunk = true }
        return true
    }
}
