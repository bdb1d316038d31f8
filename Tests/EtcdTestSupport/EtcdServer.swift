// Real etcd processes for tests: one per test, on loopback ports nobody else uses, with a
// throwaway data directory that `stop()` deletes.

import EtcdGateway
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Where the etcd and etcdctl binaries are: `ETCD_BIN` / `ETCDCTL_BIN` or /usr/bin. The whole
/// real-etcd suite runs against whichever version they are (`Scripts/test --etcd 3.1.4`).
public enum EtcdBinaries {
    public static var etcd: String { ProcessInfo.processInfo.environment["ETCD_BIN"] ?? "/usr/bin/etcd" }
    public static var etcdctl: String { ProcessInfo.processInfo.environment["ETCDCTL_BIN"] ?? "/usr/bin/etcdctl" }

    /// The version `etcd --version` reports (read once).
    public static let version: EtcdVersion = {
        let output = (try? runCommand(etcd, ["--version"])) ?? ""
        // "etcd Version: 3.1.4" (every release since 3.0)
        let line = output.split(separator: "\n").first { $0.hasPrefix("etcd Version:") } ?? ""
        guard let version = EtcdVersion(line.split(separator: " ").last.map(String.init) ?? "") else {
            fatalError("Cannot tell the version of \(etcd): \(output)")
        }
        return version
    }()

    /// Quieter logs where the flag exists (3.4 added `--log-level`; older releases log at info).
    static var logArguments: [String] { version >= EtcdVersion(3, 4) ? ["--log-level", "warn"] : [] }
}

/// A port that was free a moment ago. etcd must get a real port: with port 0 its gateway
/// dials port 0 and every /v3 call fails with 503.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSupportError("socket() failed: \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestSupportError("bind() failed: \(errno)") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestSupportError("getsockname() failed: \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Runs a command to completion and returns its combined output; throws on a non-zero exit.
@discardableResult
public func runCommand(_ executable: String, _ arguments: [String], directory: String? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    // etcdctl before 3.4 speaks the v2 API unless told otherwise.
    process.environment = ProcessInfo.processInfo.environment.merging(["ETCDCTL_API": "3"]) { _, new in new }
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let capture = try CapturedOutput()
    process.standardOutput = capture.handle
    process.standardError = capture.handle
    process.standardInput = FileHandle.nullDevice
    try spawnChild(process)
    capture.closeOurCopy()
    if !waitForExit(process, seconds: 120) {
        kill(process.processIdentifier, SIGKILL)
        throw TestSupportError("\(executable) \(arguments.joined(separator: " ")) did not end within 120 s: \(capture.text())")
    }
    let output = capture.text()
    guard process.terminationStatus == 0 else {
        throw TestSupportError("\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(output)")
    }
    return output
}

/// A child's output, captured in a temp file. Not a pipe: a pipe's reader waits for EOF,
/// and an etcd that another test thread spawns at the same moment inherits the pipe's
/// write end and holds it open until it exits (seen: a test hung for good).
final class CapturedOutput {
    let path: String
    let handle: FileHandle

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/pachmigrate-output.XXXXXX").utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw TestSupportError("mkstemp failed: \(errno)") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    func text() -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Closes this process's descriptor once the child has its own. Kept open, each capture
    /// held one until Foundation let go of the `Process`: hundreds at once in a full run, and
    /// Foundation's `Process.run` on Linux (swift-corelibs-foundation before PR #5472) reads
    /// past glibc's buffer for `/proc/self/fd` when that holds about 1,360 entries, and
    /// crashed the test process.
    func closeOurCopy() { try? handle.close() }

    deinit { unlink(path) }
}

func makeTemporaryDirectory(_ prefix: String) throws -> String {
    var template = Array((NSTemporaryDirectory() + "/\(prefix).XXXXXX").utf8CString)
    guard let made = mkdtemp(&template) else { throw TestSupportError("mkdtemp failed: \(errno)") }
    return String(cString: made)
}

public let testLogger: Logger = {
    var logger = Logger(label: "etcd-test")
    logger.logLevel = ProcessInfo.processInfo.environment["ETCD_TEST_LOG"] != nil ? .trace : .critical
    return logger
}()

/// Certificates made with openssl at test time.
public struct TestCertificates: Sendable {
    public var directory: String
    public var caFile: String
    public var serverCertFile: String
    public var serverKeyFile: String
    public var clientCertFile: String
    public var clientKeyFile: String
    /// A CA that signed nothing here, for wrong-CA tests.
    public var unrelatedCAFile: String

    public static func make(in directory: String) throws -> TestCertificates {
        let openssl = "/usr/bin/openssl"
        func key(_ name: String) throws {
            try runCommand(openssl, ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name], directory: directory)
        }
        func selfSignedCA(_ name: String, _ cn: String) throws {
            try key("\(name).key")
            try runCommand(
                openssl,
                [
                    "req", "-x509", "-new", "-key", "\(name).key", "-out", "\(name).pem", "-days", "2", "-subj", "/CN=\(cn)",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                ],
                directory: directory)
        }
        func leaf(_ name: String, _ cn: String, _ extensions: String) throws {
            try key("\(name).key")
            try runCommand(openssl, ["req", "-new", "-key", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(cn)"], directory: directory)
            try extensions.write(toFile: "\(directory)/\(name).ext", atomically: true, encoding: .utf8)
            try runCommand(
                openssl,
                [
                    "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext",
                ],
                directory: directory)
        }
        try selfSignedCA("ca", "pachmigrate test CA")
        try selfSignedCA("other-ca", "unrelated test CA")
        try leaf("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
        try leaf("client", "pachmigrate", "extendedKeyUsage=clientAuth\n")
        return TestCertificates(
            directory: directory, caFile: "\(directory)/ca.pem", serverCertFile: "\(directory)/server.pem",
            serverKeyFile: "\(directory)/server.key", clientCertFile: "\(directory)/client.pem",
            clientKeyFile: "\(directory)/client.key", unrelatedCAFile: "\(directory)/other-ca.pem")
    }
}

/// Starts `process`, one start at a time across the test process: every child a test starts
/// goes through here. Foundation on Linux learns that a child ended when a socket only that
/// child holds is closed, and it keeps that socket from other children by closing, in each
/// new child, the descriptors open when it made its list. A child started on another thread
/// between that list and its spawn inherits the socket: an etcd started beside a short
/// pachmigrate run kept it open, and the run looked alive, even after SIGKILL, until that
/// etcd stopped (CI: a usage error's exit status read -1).
public func spawnChild(_ process: Process) throws {
    try spawns.withLock { _ in try process.run() }
}

private let spawns = Mutex<Void>(())

/// Polls until `process` has exited; false if it still runs after `seconds`.
public func waitForExit(_ process: Process, seconds: TimeInterval) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    return !process.isRunning
}

/// One etcd member process.
final class EtcdProcess: @unchecked Sendable {
    let name: String
    let arguments: [String]
    let logFile: String
    private let state = Mutex<Process?>(nil)
    /// Flags added on the next launch (a restart with another configuration).
    let extraArguments = Mutex<[String]>([])

    init(name: String, arguments: [String], logFile: String) {
        self.name = name
        self.arguments = arguments
        self.logFile = logFile
    }

    func launch() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: EtcdBinaries.etcd)
        process.arguments = arguments + extraArguments.withLock { $0 }
        if !FileManager.default.fileExists(atPath: logFile) {
            _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try spawnChild(process)
        try? log.close()
        state.withLock { $0 = process }
    }

    var isRunning: Bool { state.withLock { $0?.isRunning ?? false } }
    var pid: Int32? { state.withLock { $0.map { $0.processIdentifier } } }

    func log() -> String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    func signal(_ signal: Int32) {
        if let pid, isRunning { kill(pid, signal) }
    }

    /// Sends `signal` and waits for the process to exit (SIGKILL after 5 s). Every wait is
    /// bounded: Foundation's `waitUntilExit` is never called, so a missed child exit cannot
    /// hang the suite (CI once sat 85 minutes in a test run that never ended).
    func terminate(_ first: Int32 = SIGTERM) {
        guard let process = state.withLock({ $0 }) else { return }
        if process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, first)
            if !waitForExit(process, seconds: 5) {
                kill(process.processIdentifier, SIGKILL)
                _ = waitForExit(process, seconds: 10)
            }
        }
        state.withLock { $0 = nil }
    }
}

/// Waits until etcd answers `POST /v3/maintenance/status` (not /health: see the port-0 trap).
func waitUntilReady(_ endpoints: [String], processes: [EtcdProcess], tls: EtcdClient.TLS?, timeout: TimeInterval = 20) throws {
    let deadline = Date().addingTimeInterval(timeout)
    for endpoint in endpoints {
        let client = try EtcdClient(
            configuration: .init(endpoints: [endpoint], requestTimeout: .seconds(2), connectTimeout: .milliseconds(500), tls: tls),
            logger: testLogger)
        while true {
            if let dead = processes.first(where: { !$0.isRunning }) {
                throw TestSupportError("etcd \(dead.name) exited during start-up: \(dead.log().suffix(2000))")
            }
            do {
                _ = try client.status()
                break
            } catch  where error.code == .authentication || error.code == .permissionDenied {
                break  // answered through the gateway; before 3.4, status needs a user once auth is on
            } catch {}
            if Date() > deadline {
                throw TestSupportError("etcd at \(endpoint) not ready after \(timeout) s: \(processes.map { $0.log().suffix(1000) })")
            }
            usleep(50_000)
        }
    }
}

func isPortClash(_ error: Error) -> Bool {
    "\(error)".contains("address already in use")
}

public final class EtcdServer: @unchecked Sendable {
    public let endpoint: String
    public var endpoints: [String] { [endpoint] }
    public let dataDir: String
    public let workDir: String
    /// Root password and the limited user, when started with `auth: true`.
    public let rootCredentials: EtcdClient.Credentials?
    public let credentials: EtcdClient.Credentials?
    public let certificates: TestCertificates?
    private let process: EtcdProcess
    private let stopped = Atomic<Bool>(false)

    /// Client TLS settings that work with this server (CA, client cert and key).
    public var clientTLS: EtcdClient.TLS? {
        certificates.map { EtcdClient.TLS(caFile: $0.caFile, certFile: $0.clientCertFile, keyFile: $0.clientKeyFile) }
    }

    private init(
        endpoint: String, dataDir: String, workDir: String, process: EtcdProcess,
        rootCredentials: EtcdClient.Credentials?, credentials: EtcdClient.Credentials?, certificates: TestCertificates?
    ) {
        self.endpoint = endpoint
        self.dataDir = dataDir
        self.workDir = workDir
        self.process = process
        self.rootCredentials = rootCredentials
        self.credentials = credentials
        self.certificates = certificates
    }

    /// Starts a single-member etcd. With `auth`, creates `root` and user `pachmigrate` whose
    /// role has readwrite on `authPrefix` ("" = every key), then enables auth. With
    /// `fromSnapshot`, its data dir is first made by `etcdctl snapshot restore`, as an
    /// operator recovering from a snapshot would.
    public static func start(
        auth: Bool = false, tls: Bool = false, authPrefix: String = "", extraArgs: [String] = [],
        fromSnapshot snapshot: String? = nil
    ) throws -> EtcdServer {
        let workDir = try makeTemporaryDirectory("etcd-test")
        do {
            let certificates = tls ? try TestCertificates.make(in: workDir) : nil
            let scheme = tls ? "https" : "http"
            var lastError: Error = TestSupportError("no attempt")
            for _ in 0..<5 {
                let clientPort = try freeLoopbackPort()
                let peerPort = try freeLoopbackPort()
                let endpoint = "\(scheme)://127.0.0.1:\(clientPort)"
                let peer = "http://127.0.0.1:\(peerPort)"
                let dataDir = workDir + "/data"
                var arguments =
                    [
                        "--name", "n1", "--data-dir", dataDir,
                        "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
                        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", "n1=\(peer)",
                    ] + EtcdBinaries.logArguments
                if let certificates {
                    arguments += [
                        "--cert-file", certificates.serverCertFile, "--key-file", certificates.serverKeyFile,
                        "--trusted-ca-file", certificates.caFile, "--client-cert-auth",
                    ]
                }
                arguments += extraArgs
                let process = EtcdProcess(name: "n1", arguments: arguments, logFile: workDir + "/etcd.log")
                do {
                    if let snapshot {
                        try runCommand(
                            EtcdBinaries.etcdctl,
                            [
                                "snapshot", "restore", snapshot, "--name", "n1", "--data-dir", dataDir,
                                "--initial-cluster", "n1=\(peer)", "--initial-advertise-peer-urls", peer,
                            ])
                    }
                    try process.launch()
                    let clientTLS = certificates.map { EtcdClient.TLS(caFile: $0.caFile, certFile: $0.clientCertFile, keyFile: $0.clientKeyFile) }
                    try waitUntilReady([endpoint], processes: [process], tls: clientTLS)
                    var root: EtcdClient.Credentials?
                    var user: EtcdClient.Credentials?
                    if auth {
                        root = .init(user: "root", password: "root-secret")
                        user = .init(user: "pachmigrate", password: "pachmigrate-secret")
                        try enableAuth(endpoint: endpoint, root: root!, user: user!, prefix: authPrefix)
                    }
                    return EtcdServer(
                        endpoint: endpoint, dataDir: dataDir, workDir: workDir, process: process,
                        rootCredentials: root, credentials: user, certificates: certificates)
                } catch {
                    process.terminate(SIGKILL)
                    try? FileManager.default.removeItem(atPath: dataDir)
                    lastError = error
                    if !isPortClash(error) { throw error }
                }
            }
            throw lastError
        } catch {
            try? FileManager.default.removeItem(atPath: workDir)
            throw error
        }
    }

    private static func enableAuth(endpoint: String, root: EtcdClient.Credentials, user: EtcdClient.Credentials, prefix: String) throws {
        let ctl = EtcdBinaries.etcdctl
        let ep = "--endpoints=\(endpoint)"
        try runCommand(ctl, [ep, "user", "add", "\(root.user):\(root.password)", "--interactive=false"])
        try runCommand(ctl, [ep, "user", "grant-role", root.user, "root"])
        try runCommand(ctl, [ep, "user", "add", "\(user.user):\(user.password)", "--interactive=false"])
        try runCommand(ctl, [ep, "role", "add", "pachmigrate-role"])
        if prefix.isEmpty {
            // 3.1's etcdctl has no --from-key, and 3.2's auth store grants nothing for key ""
            // with --from-key (seen: permission denied on every key); argv cannot name key
            // "\0". Every ASCII key will do for the tests.
            let everyKey = EtcdBinaries.version < EtcdVersion(3, 3) ? ["\u{01}", "\u{7f}"] : ["--from-key", ""]
            try runCommand(ctl, [ep, "role", "grant-permission", "pachmigrate-role", "readwrite"] + everyKey)
        } else {
            try runCommand(ctl, [ep, "role", "grant-permission", "pachmigrate-role", "readwrite", "--prefix=true", prefix])
        }
        try runCommand(ctl, [ep, "user", "grant-role", user.user, "pachmigrate-role"])
        try runCommand(ctl, [ep, "auth", "enable"])
    }

    public var isRunning: Bool { process.isRunning }

    /// SIGKILL, like a crash; the data dir stays for `restart()`.
    public func kill() { process.terminate(SIGKILL) }
    /// SIGTERM and wait, keeping the data dir.
    public func shutdown() { process.terminate(SIGTERM) }
    /// Stops etcd (SIGSTOP) and returns once every one of its threads is stopped: the signal
    /// is delivered to each thread as it is next scheduled, and on a loaded machine a thread
    /// still running could answer a request sent right after `kill` returned.
    public func pause() {
        process.signal(SIGSTOP)
        guard let pid = process.pid else { return }
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline && !Self.everyThreadStopped(pid) { usleep(1_000) }
    }
    public func resume() { process.signal(SIGCONT) }

    /// True when every thread of `pid` is in state T (stopped), per /proc.
    private static func everyThreadStopped(_ pid: Int32) -> Bool {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"), !tasks.isEmpty else { return false }
        return tasks.allSatisfy { tid in
            // The state follows the ")" that ends the command name: "pid (comm) S ...".
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first == "T"
        }
    }

    /// Starts etcd again on the same data dir and ports (stopping it first if it runs),
    /// with `extraArgs` added to its flags (e.g. a space quota).
    public func restart(extraArgs: [String]? = nil) throws {
        process.terminate(SIGTERM)
        if let extraArgs { process.extraArguments.withLock { $0 = extraArgs } }
        try process.launch()
        try waitUntilReady([endpoint], processes: [process], tls: clientTLS)
    }

    /// Stops etcd and deletes its data and certificates.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        process.terminate(SIGTERM)
        try? FileManager.default.removeItem(atPath: workDir)
    }

    deinit { stop() }

    /// A client for this server: the limited user's credentials and the working TLS files
    /// unless overridden.
    public func makeClient(
        credentials: EtcdClient.Credentials? = nil, tls: EtcdClient.TLS? = nil,
        requestTimeout: Duration = .seconds(10), maxRequestBytes: Int = 1_572_864, maxTxnOps: Int = 128
    ) throws -> EtcdClient {
        try EtcdClient(
            configuration: .init(
                endpoints: endpoints, requestTimeout: requestTimeout, connectTimeout: .seconds(2),
                tls: tls ?? clientTLS, credentials: credentials ?? self.credentials,
                maxRequestBytes: maxRequestBytes, maxTxnOps: maxTxnOps),
            logger: testLogger)
    }
}

public final class EtcdCluster: @unchecked Sendable {
    public let endpoints: [String]
    public let workDir: String
    private let members: [EtcdProcess]
    private let stopped = Atomic<Bool>(false)

    private init(endpoints: [String], workDir: String, members: [EtcdProcess]) {
        self.endpoints = endpoints
        self.workDir = workDir
        self.members = members
    }

    /// `extraArgs`: given to every member (e.g. `--quota-backend-bytes`).
    public static func start(members count: Int = 3, extraArgs: [String] = []) throws -> EtcdCluster {
        let workDir = try makeTemporaryDirectory("etcd-cluster")
        var lastError: Error = TestSupportError("no attempt")
        for _ in 0..<5 {
            var clientURLs: [String] = []
            var peerURLs: [String] = []
            for _ in 0..<count {
                clientURLs.append("http://127.0.0.1:\(try freeLoopbackPort())")
                peerURLs.append("http://127.0.0.1:\(try freeLoopbackPort())")
            }
            let initialCluster = (0..<count).map { "m\($0)=\(peerURLs[$0])" }.joined(separator: ",")
            let token = "pm-test-\(UInt32.random(in: 0...UInt32.max))"
            let processes = (0..<count).map { index in
                EtcdProcess(
                    name: "m\(index)",
                    arguments: [
                        "--name", "m\(index)", "--data-dir", "\(workDir)/m\(index)",
                        "--listen-client-urls", clientURLs[index], "--advertise-client-urls", clientURLs[index],
                        "--listen-peer-urls", peerURLs[index], "--initial-advertise-peer-urls", peerURLs[index],
                        "--initial-cluster", initialCluster, "--initial-cluster-state", "new",
                        "--initial-cluster-token", token,
                    ] + EtcdBinaries.logArguments + extraArgs,
                    logFile: "\(workDir)/m\(index).log")
            }
            do {
                for process in processes { try process.launch() }
                try waitUntilReady(clientURLs, processes: processes, tls: nil, timeout: 30)
                return EtcdCluster(endpoints: clientURLs, workDir: workDir, members: processes)
            } catch {
                for process in processes { process.terminate(SIGKILL) }
                for index in 0..<count { try? FileManager.default.removeItem(atPath: "\(workDir)/m\(index)") }
                lastError = error
                if !isPortClash(error) { break }
            }
        }
        try? FileManager.default.removeItem(atPath: workDir)
        throw lastError
    }

    /// SIGKILLs one member.
    public func kill(member index: Int) { members[index].terminate(SIGKILL) }

    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for member in members { member.terminate(SIGTERM) }
        try? FileManager.default.removeItem(atPath: workDir)
    }

    deinit { stop() }

    public func makeClient(requestTimeout: Duration = .seconds(10)) throws -> EtcdClient {
        try EtcdClient(
            configuration: .init(endpoints: endpoints, requestTimeout: requestTimeout, connectTimeout: .seconds(1)),
            logger: testLogger)
    }
}
