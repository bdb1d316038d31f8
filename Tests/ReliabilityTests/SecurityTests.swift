import EtcdGateway
import EtcdModel
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
            let sample = try LimitedUserSample(authPrefix: "somethingelse/")
            defer { sample.stop() }
            let result = try pachmigrate(["migrate", "--backup", "\(sample.dir)/b.jsonl", "--output", "json"] + sample.flags)
            #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
            let error = result.json["error"] as? [String: Any]
            #expect(error?["code"] as? String == "etcd-permissionDenied", "\(result.stdout)")
            #expect((error?["message"] as? String)?.contains("denied permission") == true, "\(result.stdout)")
            #expect(try pachydermState(sample.root) == sample.before)
            #expect(try sample.root.range(.prefix(bytes("pachmigrate/"))).kvs.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: "\(sample.dir)/b.jsonl"))
        }
    }

    /// The roles the README gives ("Least privilege"), as etcdctl commands: each command
    /// works with exactly its role, and with one permission less is refused before anything
    /// is written.
    @Test func documentedRolesAreEnoughAndOneLessIsRefusedBeforeAnyWrite() async throws {
        try await onOwnThread {
            // The limited user starts with no permission on anything the tool touches.
            let sample = try LimitedUserSample(authPrefix: "unrelated/")
            defer { sample.stop() }
            // Each call authenticates root (bcrypt): seconds on a loaded machine.
            let ctl = ["--endpoints=\(sample.server.endpoint)", "--user=root:root-secret", "--dial-timeout=30s", "--command-timeout=60s"]
            func role(_ name: String, _ grants: [(String, String)]) throws {
                try runCommand(EtcdBinaries.etcdctl, ctl + ["role", "add", name])
                for (permission, prefix) in grants {
                    try runCommand(EtcdBinaries.etcdctl, ctl + ["role", "grant-permission", name, permission, "--prefix=true", prefix])
                }
            }
            func use(_ role: String, instead previous: String?) throws {
                if let previous { try runCommand(EtcdBinaries.etcdctl, ctl + ["user", "revoke-role", "pachmigrate", previous]) }
                try runCommand(EtcdBinaries.etcdctl, ctl + ["user", "grant-role", "pachmigrate", role])
            }
            let prefixes = ["pachyderm_pfs/", "pachyderm_pps/", "pachmigrate/"]
            try role("pachmigrate-read", prefixes.map { ("read", $0) })
            try role("pachmigrate-write", prefixes.map { ("readwrite", $0) })
            // One permission less than pachmigrate-write each.
            try role("no-write-on-namespace", [("readwrite", "pachyderm_pfs/"), ("readwrite", "pachyderm_pps/"), ("read", "pachmigrate/")])
            try role("no-write-on-pps", [("readwrite", "pachyderm_pfs/"), ("read", "pachyderm_pps/"), ("readwrite", "pachmigrate/")])

            try use("pachmigrate-read", instead: nil)
            let plan = try pachmigrate(["plan"] + sample.flags)
            #expect(plan.status == 0, "\(plan.stdout)\(plan.stderr)")
            var previous = "pachmigrate-read"
            for lacking in ["pachmigrate-read", "no-write-on-namespace", "no-write-on-pps"] {
                if lacking != previous { try use(lacking, instead: previous) }
                previous = lacking
                let refused = try pachmigrate(["migrate", "--no-backup"] + sample.flags)
                #expect(refused.status == 1, "\(lacking): \(refused.stderr)")
                #expect(refused.stderr.contains("permission"), "\(lacking): \(refused.stderr)")
                #expect(try pachydermState(sample.root) == sample.before, "\(lacking) wrote")
            }
            try use("pachmigrate-write", instead: previous)
            let migrate = try pachmigrate(["migrate", "--no-backup", "--compact"] + sample.flags)
            #expect(migrate.status == 0, "\(migrate.stderr)")
            let verify = try pachmigrate(["verify"] + sample.flags)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
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
                [
                    "migrate", "--user", "pachmigrate", "--backup", "\(dir)/b.jsonl", "--concurrency", "1",
                    "--log-level", "trace", "--log-format", "json", "--output", "json",
                ] + sample.endpoint,
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
                [
                    "x509", "-req", "-in", "expired.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", "expired.pem", "-days", "-1", "-extfile", "client.ext",
                ],
                directory: dir)

            func migrate(ca: String, cert: String, key: String) throws -> RunResult {
                try pachmigrate(
                    [
                        "migrate", "--no-backup", "--endpoints", server.endpoint, "--cacert", ca, "--cert", cert, "--key", key,
                        "--request-timeout", "5",
                    ])
            }
            // http:// for this TLS etcd: etcd 3.1 and 3.2 answer in plain HTTP that it is HTTPS,
            // newer ones close the connection; both errors say to use https://.
            let plain = try pachmigrate([
                "migrate", "--no-backup", "--endpoints", server.endpoint.replacingOccurrences(of: "https://", with: "http://"),
            ])
            #expect(plain.status == 1, "\(plain.stderr)")
            #expect(plain.stderr.contains("use https:// (with --cacert)"), "\(plain.stderr)")

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

    /// etcdctl's --insecure-skip-tls-verify (and its variable) reaches an etcd whose CA was
    /// not given, and says loudly that nothing was verified; without it the certificate is refused.
    @Test func insecureSkipTLSVerifyConnectsAndWarns() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start(tls: true)
            defer { server.stop() }
            let certificates = try #require(server.certificates)
            let flags = [
                "lock", "show", "--endpoints", server.endpoint, "--cert", certificates.clientCertFile, "--key", certificates.clientKeyFile,
                "--request-timeout", "5s",
            ]
            let verified = try pachmigrate(flags)
            #expect(verified.status == 1, "\(verified.stderr)")
            #expect(verified.stderr.contains("could not be verified"), "\(verified.stderr)")
            let insecure = try pachmigrate(flags + ["--insecure-skip-tls-verify"])
            #expect(insecure.status == 0, "\(insecure.stderr)")
            #expect(insecure.stderr.contains("TLS VERIFICATION IS OFF"), "\(insecure.stderr)")
            let fromEnvironment = try pachmigrate(flags, environment: ["ETCDCTL_INSECURE_SKIP_TLS_VERIFY": "true"])
            #expect(fromEnvironment.status == 0, "\(fromEnvironment.stderr)")
            #expect(fromEnvironment.stderr.contains("TLS VERIFICATION IS OFF"))
        }
    }
}

/// The at-rest sample on an etcd with auth, and its limited user `pachmigrate`, whose role
/// covers only `authPrefix`: the password in a file, the flags to pass.
struct LimitedUserSample {
    let server: EtcdServer
    let root: EtcdClient
    let before: [KeyValue]
    let dir: String
    let flags: [String]

    init(authPrefix: String) throws {
        server = try EtcdServer.start(auth: true, authPrefix: authPrefix)
        root = try server.makeClient(credentials: server.rootCredentials)
        try root.seed(dump: SampleData.before("at-rest"))
        before = try pachydermState(root)
        dir = try temporaryDirectory()
        let password = try #require(server.credentials?.password)
        try "\(password)\n".write(toFile: "\(dir)/pw", atomically: true, encoding: .utf8)
        flags = ["--user", "pachmigrate", "--password-file", "\(dir)/pw", "--endpoints", server.endpoint]
    }

    func stop() {
        server.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}
