import EtcdGateway
import EtcdTestSupport
import Foundation
import Testing

@Suite("Endpoints, failover, auth and TLS")
struct ConnectionTests {
    @Test(arguments: [
        [String](),
        ["127.0.0.1:2379"],
        ["ftp://127.0.0.1:2379"],
        ["http://"],
    ])
    func badEndpointsAreRejected(endpoints: [String]) {
        let error = #expect(throws: EtcdError.self) {
            _ = try EtcdClient(configuration: .init(endpoints: endpoints), logger: testLogger)
        }
        #expect(error?.code == .invalidConfiguration)
    }

    @Test func unreadableTLSFileIsRejected() {
        let error = #expect(throws: EtcdError.self) {
            _ = try EtcdClient(
                configuration: .init(endpoints: ["https://127.0.0.1:2379"], tls: .init(caFile: "/nonexistent/ca.pem")),
                logger: testLogger)
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("/nonexistent/ca.pem") == true)
    }

    @Test func unreachableEndpointIsATransportErrorNamingIt() async throws {
        try await onOwnThread {
            let endpoint = "http://127.0.0.1:\(try freeLoopbackPort())"
            let client = try EtcdClient(configuration: .init(endpoints: [endpoint], connectTimeout: .seconds(1)), logger: testLogger)
            let error = #expect(throws: EtcdError.self) { try client.range(RangeRequest(key: bytes("k"))) }
            #expect(error?.code == .transport)
            #expect(error?.endpoint == endpoint)
            #expect(error?.message.contains(endpoint) == true)
            // libcurl's reason is said once, not repeated inside itself.
            let reason = "Couldn't connect to server"
            #expect(error?.message.components(separatedBy: reason).count ?? 0 <= 2, "\(error?.message ?? "")")
        }
    }

    /// https:// given for an etcd that serves plain HTTP (a default `pachctl deploy`): the
    /// error says to use http://.
    @Test func httpsToAPlainEtcdSaysToUseHTTP() async throws {
        try await onOwnThread {
            let server = try EtcdServer.shared()
            let endpoint = server.endpoint.replacingOccurrences(of: "http://", with: "https://")
            let client = try EtcdClient(configuration: .init(endpoints: [endpoint]), logger: testLogger)
            let error = #expect(throws: EtcdError.self) { try client.range(RangeRequest(key: bytes("k"))) }
            #expect(error?.message.contains("the TLS handshake failed") == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("if etcd serves plain HTTP there, use http://") == true, "\(error?.message ?? "")")
        }
    }

    /// The Job's endpoint (the Service `etcd`) given from a laptop, where it does not resolve.
    @Test func aNameThatDoesNotResolveSaysToPortForward() async throws {
        try await onOwnThread {
            let client = try EtcdClient(
                configuration: .init(endpoints: ["http://etcd.pachmigrate-test.invalid:2379"], connectTimeout: .seconds(5)), logger: testLogger)
            let error = #expect(throws: EtcdError.self) { try client.range(RangeRequest(key: bytes("k"))) }
            #expect(error?.code == .transport)
            #expect(error?.message.contains("the name does not resolve from here") == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("kubectl port-forward svc/etcd 2379:2379") == true, "\(error?.message ?? "")")
        }
    }

    @Test func deadFirstEndpointFailsOverToTheNext() async throws {
        try await onOwnThread {
            let server = try EtcdServer.shared()
            let dead = "http://127.0.0.1:\(try freeLoopbackPort())"
            let client = try EtcdClient(
                configuration: .init(endpoints: [dead, server.endpoint], connectTimeout: .seconds(1)), logger: testLogger)
            try client.put(PutRequest(key: bytes(uniquePrefix("failover") + "k"), value: bytes("v")))
            #expect(client.currentEndpoint == server.endpoint)
        }
    }

    @Test func pausedServerTimesOut() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient(requestTimeout: .seconds(1))
            try client.put(PutRequest(key: bytes("/t/k"), value: bytes("v")))
            server.pause()
            defer { server.resume() }
            let started = Date()
            let error = #expect(throws: EtcdError.self) { try client.put(PutRequest(key: bytes("/t/k"), value: bytes("w"))) }
            #expect(error?.code == .timeout)
            #expect(error?.message.contains("outcome is unknown") == true)
            #expect(Date().timeIntervalSince(started) < 4)
        }
    }

    @Test func failoverWhenTheMemberInUseIsKilled() async throws {
        try await onOwnThread {
            let cluster = try EtcdCluster.start(members: 3)
            defer { cluster.stop() }
            let client = try cluster.makeClient(requestTimeout: .seconds(3))
            try client.put(PutRequest(key: bytes("/f/before"), value: bytes("1")))
            #expect(client.currentEndpoint == cluster.endpoints[0])

            cluster.kill(member: 0)
            // The surviving two keep quorum; if the killed member led, a write proposed before
            // the new leader is elected is dropped (timeout or "unavailable"). The put is
            // idempotent, so retry exactly those outcomes briefly.
            var written = false
            let deadline = Date().addingTimeInterval(15)
            while !written && Date() < deadline {
                do {
                    try client.put(PutRequest(key: bytes("/f/after"), value: bytes("2")))
                    written = true
                } catch let error as EtcdError where error.code == .unavailable || error.code == .timeout {
                    usleep(200_000)
                }
            }
            #expect(written)
            #expect(client.currentEndpoint != cluster.endpoints[0])
            #expect(cluster.endpoints.contains(client.currentEndpoint))
            let keys = try client.range(.prefix(bytes("/f/"))).kvs.map { text($0.key) }
            #expect(keys == ["/f/after", "/f/before"])
        }
    }

    @Test func wrongPasswordIsAnAuthenticationError() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start(auth: true)
            defer { server.stop() }
            let client = try server.makeClient(credentials: .init(user: "pachmigrate", password: "wrong-password-123"))
            let error = #expect(throws: EtcdError.self) { try client.range(RangeRequest(key: bytes("/a"))) }
            #expect(error?.code == .authentication)
            #expect(error?.message.contains("pachmigrate") == true)
            #expect(error?.message.contains("wrong-password-123") == false)
            #expect(error?.description.contains("wrong-password-123") == false)

            // Without credentials etcd refuses too.
            let anonymous = try EtcdClient(configuration: .init(endpoints: server.endpoints), logger: testLogger)
            let anonymousError = #expect(throws: EtcdError.self) { try anonymous.put(PutRequest(key: bytes("/a"), value: bytes("v"))) }
            #expect(anonymousError?.code == .authentication)
        }
    }

    @Test func authenticatedUserWorksAndReauthenticatesAfterRestart() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start(auth: true)
            defer { server.stop() }
            let client = try server.makeClient()
            try client.put(PutRequest(key: bytes("/auth/a"), value: bytes("1")))
            #expect(try client.range(RangeRequest(key: bytes("/auth/a"))).kvs.map { text($0.value) } == ["1"])

            // Simple tokens live in the server's memory: a restart invalidates ours (401).
            try server.restart()
            try client.put(PutRequest(key: bytes("/auth/b"), value: bytes("2")))
            #expect(try client.range(.prefix(bytes("/auth/"), countOnly: true)).count == 2)
        }
    }

    @Test func permissionDeniedNamesTheKey() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start(auth: true, authPrefix: "/allowed/")
            defer { server.stop() }
            let client = try server.makeClient()
            try client.put(PutRequest(key: bytes("/allowed/x"), value: bytes("ok")))
            let error = #expect(throws: EtcdError.self) { try client.put(PutRequest(key: bytes("/forbidden/x"), value: bytes("no"))) }
            #expect(error?.code == .permissionDenied)
            #expect(error?.grpcCode == 7)
            #expect(error?.message.contains("/forbidden/x") == true)
        }
    }

    @Test func tlsWithClientCertificates() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start(tls: true)
            defer { server.stop() }
            #expect(server.endpoint.hasPrefix("https://"))
            let client = try server.makeClient()
            try client.put(PutRequest(key: bytes("/tls/k"), value: bytes("secure")))
            #expect(try client.range(RangeRequest(key: bytes("/tls/k"))).kvs.map { text($0.value) } == ["secure"])
            #expect(try client.status().version.hasPrefix("3."))

            // The server demands a client certificate.
            let certificates = try #require(server.certificates)
            let noCert = try server.makeClient(tls: .init(caFile: certificates.caFile))
            let refused = #expect(throws: EtcdError.self) { try noCert.status() }
            #expect(refused?.code == .transport)
        }
    }

    @Test func wrongCAIsAClearTransportError() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start(tls: true)
            defer { server.stop() }
            let certificates = try #require(server.certificates)
            let client = try server.makeClient(
                tls: .init(caFile: certificates.unrelatedCAFile, certFile: certificates.clientCertFile, keyFile: certificates.clientKeyFile))
            let error = #expect(throws: EtcdError.self) { try client.status() }
            #expect(error?.code == .transport)
            #expect(error?.message.contains("could not be verified against the CA file") == true)
            #expect(error?.message.contains(certificates.unrelatedCAFile) == true)
        }
    }
}
