@testable import EtcdGateway
import EtcdTestSupport
import Foundation
import Testing

@Suite("Gateway dialects: etcd 3.0 through 3.5+")
struct DialectTests {
    // What each release's gateway serves, as measured on real servers of every version: this
    // table is the record of it (no file outside the repository is read).
    @Test(arguments: [
        ("3.0.17", "/v3alpha/kv/range", "/v3alpha/kv/lease/revoke", "/v3alpha/kv/lease/timetolive", "Grpc-Metadata-Token: t"),
        ("3.1.4", "/v3alpha/kv/range", "/v3alpha/kv/lease/revoke", "/v3alpha/kv/lease/timetolive", "Grpc-Metadata-Token: t"),
        ("3.2.7", "/v3alpha/kv/range", "/v3alpha/kv/lease/revoke", "/v3alpha/kv/lease/timetolive", "Grpc-Metadata-Token: t"),
        ("3.3.27", "/v3beta/kv/range", "/v3beta/kv/lease/revoke", "/v3beta/kv/lease/timetolive", "Authorization: t"),
        ("3.4.23", "/v3/kv/range", "/v3/lease/revoke", "/v3/lease/timetolive", "Authorization: t"),
        ("3.5.17", "/v3/kv/range", "/v3/lease/revoke", "/v3/lease/timetolive", "Authorization: t"),
        ("3.6.0-rc.1", "/v3/kv/range", "/v3/lease/revoke", "/v3/lease/timetolive", "Authorization: t"),
    ])
    func pathsAndHeadersPerVersion(version: String, range: String, revoke: String, timeToLive: String, auth: String) throws {
        let server = try #require(EtcdVersion(version))
        let dialect = GatewayDialect(version: EndpointVersion(endpoint: "http://e:1", server: server, cluster: version))
        #expect(dialect.path(.range) == range)
        #expect(dialect.path(.leaseRevoke) == revoke)
        #expect(dialect.path(.leaseTimeToLive) == timeToLive)
        #expect(dialect.path(.leaseGrant) == dialect.prefix + "/lease/grant")
        #expect(dialect.authorizationHeader(token: "t") == auth)
    }

    @Test(arguments: [("3.1.4", "3.1.4"), ("3.5.0-alpha.0", "3.5.0"), ("3.4", "3.4.0"), ("2.3.8", "2.3.8")])
    func versionsParse(text: String, expected: String) {
        #expect(EtcdVersion(text)?.description == expected)
    }

    @Test(arguments: ["", "3", "v3.1.4", "3.x.1", "3.1.4.5", "not a version"])
    func nonVersionsDoNotParse(text: String) {
        #expect(EtcdVersion(text) == nil)
    }

    @Test func realServerVersionIsReportedPerEndpoint() async throws {
        try await onOwnThread {
            let server = try EtcdServer.shared()
            let client = try server.makeClient()
            let reported = client.endpointVersions()
            #expect(reported.map(\.endpoint) == [server.endpoint])
            let version = try reported[0].version.get()
            #expect(version.endpoint == server.endpoint)
            #expect(version.server == EtcdBinaries.version)
            #expect(!version.cluster.isEmpty)
        }
    }

    @Test(arguments: [
        (ScriptedHTTPServer.Response(200, #"{"etcdserver":"2.3.8","etcdcluster":"2.3.0"}"#), "etcd 2.3.8, which has no v3 API"),
        (.init(404, "404 page not found\n"), "is not an etcd client URL: it answered GET /version with HTTP 404"),
        (.init(200, "<html>welcome to nginx</html>"), "welcome to nginx"),
    ])
    func endpointThatIsNoEtcd3IsNamed(answer: ScriptedHTTPServer.Response, expected: String) async throws {
        try await onOwnThread {
            let impostor = try ScriptedHTTPServer { _ in answer }
            defer { impostor.stop() }
            let client = try EtcdClient(configuration: .init(endpoints: [impostor.endpoint]), logger: testLogger)
            let error = #expect(throws: EtcdError.self) { try client.range(RangeRequest(key: bytes("k"))) }
            #expect(error?.code == .incompatibleServer)
            #expect(error?.message.contains(impostor.endpoint) == true)
            #expect(error?.message.contains(expected) == true)
            // Nothing but the version question was sent.
            #expect(impostor.requests.map(\.path) == ["/version"])
        }
    }

    /// etcd's peer port answers GET /version as the client port does, and 404 to the v3 API
    /// (seen on 3.1.4): the error names the peer port. Go's HTTPS server (etcd 3.1 and 3.2)
    /// answers a plain HTTP request with a 400 that says so: the error says to use https://.
    @Test(arguments: [
        (true, "is the endpoint etcd's peer port (2380 by default)? Give etcd's client URL (port 2379 by default)"),
        (false, "serves TLS"),
    ])
    func aWrongPortOrSchemeIsNamed(peerPort: Bool, expected: String) async throws {
        try await onOwnThread {
            let impostor = try ScriptedHTTPServer { request in
                switch (peerPort, request.path) {
                case (true, "/version"): .init(200, #"{"etcdserver":"3.1.4","etcdcluster":"3.1.0"}"#)
                case (true, _): .init(404, "404 page not found\n")
                case (false, _): .init(400, "Client sent an HTTP request to an HTTPS server.\n")
                }
            }
            defer { impostor.stop() }
            let client = try EtcdClient(configuration: .init(endpoints: [impostor.endpoint]), logger: testLogger)
            let error = #expect(throws: EtcdError.self) { try client.range(RangeRequest(key: bytes("k"))) }
            #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
        }
    }

    @Test func memberUpgradedBehindTheSameURLIsAskedAgain() async throws {
        try await onOwnThread {
            let member = try ScriptedHTTPServer(script: ScriptedHTTPServer.etcdScript(version: "3.1.4", prefix: "/v3alpha"))
            defer { member.stop() }
            let client = try EtcdClient(configuration: .init(endpoints: [member.endpoint]), logger: testLogger)
            #expect(try client.range(RangeRequest(key: bytes("k"))).header.revision == 7)
            member.answer(with: ScriptedHTTPServer.etcdScript(version: "3.5.17", prefix: "/v3"))
            #expect(try client.range(RangeRequest(key: bytes("k"))).header.revision == 7)
            #expect(member.requests.map(\.path) == ["/version", "/v3alpha/kv/range", "/v3alpha/kv/range", "/version", "/v3/kv/range"])
        }
    }

    @Test(arguments: [("3.1.4", "/v3alpha", "Grpc-Metadata-Token: tok-3.1.4"), ("3.4.23", "/v3", "Authorization: tok-3.4.23")])
    func tokenTravelsInTheHeaderTheVersionReads(version: String, prefix: String, header: String) async throws {
        try await onOwnThread {
            let member = try ScriptedHTTPServer(script: ScriptedHTTPServer.etcdScript(version: version, prefix: prefix))
            defer { member.stop() }
            let client = try EtcdClient(
                configuration: .init(endpoints: [member.endpoint], credentials: .init(user: "u", password: "p")), logger: testLogger)
            _ = try client.range(RangeRequest(key: bytes("k")))
            let range = try #require(member.requests.last)
            #expect(range.path == prefix + "/kv/range")
            #expect(range.headers.contains(header))
        }
    }

    /// Asking a member its version must not outlast the caller's own deadline: the lease
    /// keeper's keep-alives are short, and a version question at the client's full request
    /// timeout made it notice a dead etcd only after the lease could have expired.
    @Test func versionQuestionKeepsTheCallersDeadline() async throws {
        try await onOwnThread {
            let stalled = try ScriptedHTTPServer { request in
                if request.path == "/version" { usleep(5_000_000) }
                return .init(404, "404 page not found\n")
            }
            defer { stalled.stop() }
            let client = try EtcdClient(configuration: .init(endpoints: [stalled.endpoint], requestTimeout: .seconds(5)), logger: testLogger)
            let started = Date()
            #expect(throws: EtcdError.self) { _ = try client.leaseKeepAliveOnce(id: 1, timeout: .milliseconds(300)) }
            #expect(Date().timeIntervalSince(started) < 2, "the version question took the client's 5 s timeout")
        }
    }

    @Test func leaseTimeToLiveMissingFromTheGatewayIsUnsupported() async throws {
        try await onOwnThread {
            let member = try ScriptedHTTPServer(script: ScriptedHTTPServer.etcdScript(version: "3.1.4", prefix: "/v3alpha"))
            defer { member.stop() }
            let client = try EtcdClient(configuration: .init(endpoints: [member.endpoint]), logger: testLogger)
            let error = #expect(throws: EtcdError.self) { try client.leaseTimeToLive(id: 5, keys: false) }
            #expect(error?.code == .unsupported)
        }
    }
}
