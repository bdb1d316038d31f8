import EtcdGateway
import EtcdTestSupport
import Foundation
import Testing

/// Who gets in, and what never leaks. The wrong password at debug level and the lock
/// break recorded with who broke it are in PachmigrateCLITests/CommandTests
/// (`wrongPasswordFailsClearlyAndNeverShowsIt`, `lockHeldLockShowAndLockBreak`); backup
/// files 0600 in `backupRestoreAndSnapshot` (and for migrate's backup in RoughClusterTests).
@Suite("Security: auth, TLS, secrets")
struct SecurityTests {
    @Test func userWithoutPermissionOnThePrefixesIsRefusedBeforeAnyWrite() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start(auth: true, authPrefix: "somethingelse/")
            defer { server.stop() }
            let root = try server.makeClient(credentials: server.rootCredentials)
            try root.seed(dump: SampleData.before("at-rest"))
            let before = try pachydermState(root)
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let password = try #require(server.credentials?.password)
            try "\(password)\n".write(toFile: "\(dir)/pw", atomically: true, encoding: .utf8)

            let result = try pachmigrate(
                ["migrate", "--user", "pachmigrate", "--password-file", "\(dir)/pw", "--backup", "\(dir)/b.jsonl",
                 "--endpoints", server.endpoint, "--output", "json"])
            #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
            let error = result.json["error"] as? [String: Any]
            #expect(error?["code"] as? String == "etcd-permissionDenied", "\(result.stdout)")
            #expect((error?["message"] as? String)?.contains("denied permission") == true, "\(result.stdout)")
            #expect(try pachydermState(root) == before)
            #expect(try root.range(.prefix(bytes("pachmigrate/"))).kvs.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: "\(dir)/b.jsonl"))
        }
    }

    /// The password can only come from a file or $ETCDCTL_PASSWORD (there is no flag, so it
    /// is never in argv), and appears nowhere: not in trace-level JSON logs, the JSON
    /// output, the lock record while the run holds it, the journal, or the backup.
    @Test func passwordNeverInArgvLogsOutputLockJournalOrBackup() async throws {
        try await onOwnThread {
            let sample = try SampleServer(auth: true)
            defer { sample.server.stop() }
            let password = try #require(sample.server.credentials?.password)
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }

            let asFlag = try pachmigrate(["status", "--user", "pachmigrate", "--password", password] + sample.endpoint)
            #expect(asFlag.status == 2)

            let run = try PachmigrateProcess(
                ["migrate", "--user", "pachmigrate", "--backup", "\(dir)/b.jsonl", "--concurrency", "1",
                 "--log-level", "trace", "--log-format", "json", "--output", "json"] + sample.endpoint,
                environment: ["ETCDCTL_PASSWORD": password])
            #expect(waitUntilWriting(sample.client, run))
            let lock = try sample.client.range(RangeRequest(key: bytes("pachmigrate/lock"))).kvs.first
            #expect(lock != nil)
            let lockRecord = text(lock?.value ?? [])
            #expect(!lockRecord.contains(password))
            let result = run.wait()
            #expect(result.status == 0, "\(result.stderr.suffix(2000))")
            #expect(result.stderr.contains("\"level\":\"debug\""), "no debug-level JSON logs")
            #expect(!(result.stdout + result.stderr).contains(password))
            #expect(try !sample.client.dumpState(prefix: "pachmigrate/").contains { text($0.value).contains(password) })
            let backup = try String(contentsOfFile: "\(dir)/b.jsonl", encoding: .utf8)
            #expect(!backup.contains(password))
            #expect(!backup.contains(Data(password.utf8).base64EncodedString()))
            try sample.expectMigratedLikeAnUninterruptedRun()
        }
    }

    /// TLS with client certificates end to end; a wrong CA, an expired client certificate
    /// and a certificate with another key's private key each fail with exit 1 saying what
    /// is wrong, before anything is written.
    @Test func tlsWithClientCertificatesAndItsFailures() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start(tls: true)
            defer { server.stop() }
            let certificates = try #require(server.certificates)
            let client = try server.makeClient()
            try client.seed(dump: SampleData.before("at-rest"))
            let expectation = MigrationExpectation(
                client: client, before: try pachydermState(client), counts: SampleServer.atRestCounts)
            let dir = certificates.directory
            // Signed by the right CA, valid until yesterday.
            try runCommand(
                "/usr/bin/openssl", ["req", "-new", "-key", "client.key", "-out", "expired.csr", "-subj", "/CN=pachmigrate"],
                directory: dir)
            try runCommand(
                "/usr/bin/openssl",
                ["x509", "-req", "-in", "expired.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", "expired.pem", "-days", "-1", "-extfile", "client.ext"],
                directory: dir)

            func migrate(ca: String, cert: String, key: String) throws -> RunResult {
                try pachmigrate(
                    ["migrate", "--no-backup", "--endpoints", server.endpoint, "--cacert", ca, "--cert", cert, "--key", key,
                     "--request-timeout", "5"])
            }
            let wrongCA = try migrate(ca: certificates.unrelatedCAFile, cert: certificates.clientCertFile, key: certificates.clientKeyFile)
            #expect(wrongCA.status == 1, "\(wrongCA.stderr)")
            #expect(wrongCA.stderr.contains("could not be verified against the CA file"), "\(wrongCA.stderr)")

            let expired = try migrate(ca: certificates.caFile, cert: "\(dir)/expired.pem", key: certificates.clientKeyFile)
            #expect(expired.status == 1, "\(expired.stderr)")
            #expect(expired.stderr.contains("etcd rejected the client certificate '\(dir)/expired.pem'"), "\(expired.stderr)")
            #expect(expired.stderr.contains("has not expired"), "\(expired.stderr)")

            let mismatched = try migrate(ca: certificates.caFile, cert: certificates.clientCertFile, key: certificates.serverKeyFile)
            #expect(mismatched.status == 1, "\(mismatched.stderr)")
            #expect(mismatched.stderr.contains("client certificate or key could not be used"), "\(mismatched.stderr)")

            #expect(try pachydermState(client) == expectation.before)
            #expect(try client.range(.prefix(bytes("pachmigrate/"))).kvs.isEmpty)

            let good = try migrate(ca: certificates.caFile, cert: certificates.clientCertFile, key: certificates.clientKeyFile)
            #expect(good.status == 0, "\(good.stderr)")
            try expectation.expectMigratedLikeAnUninterruptedRun()
        }
    }
}
