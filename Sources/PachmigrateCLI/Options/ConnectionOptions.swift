import ArgumentParser
import EtcdGateway
import Logging
import MigrationEngine
import PachydermMigrations

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where etcd is and how to talk to it. Every option also reads the environment, the
/// way etcdctl and Kubernetes set it; a flag wins over the environment.
struct ConnectionOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "etcd client URLs, comma-separated (http:// or https://).",
            discussion:
                "Default: $ETCD_ENDPOINTS, $ETCDCTL_ENDPOINTS, http://$ETCD_PORT_2379_TCP_ADDR:$ETCD_PORT_2379_TCP_PORT (Kubernetes "
                + "service env; port 2379 if unset), "
                + "else http://127.0.0.1:2379.",
            valueName: "urls"))
    var endpoints: String?

    @Option(name: .long, help: ArgumentHelp("CA bundle to verify etcd's certificate ($ETCDCTL_CACERT).", valueName: "file"))
    var cacert: String?

    @Option(name: .long, help: ArgumentHelp("Client certificate for TLS ($ETCDCTL_CERT).", valueName: "file"))
    var cert: String?

    @Option(name: .long, help: ArgumentHelp("Client key for TLS ($ETCDCTL_KEY).", valueName: "file"))
    var key: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "etcd user, when auth is enabled: name, or name:password as etcdctl takes it ($ETCDCTL_USER). "
                + "A password here shows in `ps`: prefer $ETCDCTL_USER or --password-file.",
            valueName: "name[:password]"))
    var user: String?

    @Option(
        name: .long,
        help: ArgumentHelp("File holding the etcd password (else $ETCDCTL_PASSWORD, else the part of --user after its ':').", valueName: "file"))
    var passwordFile: String?

    @Flag(
        name: .long,
        help: ArgumentHelp(
            "Accept any certificate etcd presents ($ETCDCTL_INSECURE_SKIP_TLS_VERIFY=true). "
                + "Anyone between here and etcd can then read and change what is written: prefer --cacert."))
    var insecureSkipTlsVerify = false

    @Option(
        name: .long,
        help: ArgumentHelp("How long one etcd request may take before it is given up (10s, 1m; a bare number is seconds).", valueName: "duration"))
    var requestTimeout = DurationArgument(.seconds(10))

    @Option(name: .long, help: ArgumentHelp("Pachyderm's PFS root in etcd ($PFS_ETCD_PREFIX).", valueName: "prefix"))
    var pfsPrefix: String?

    @Option(name: .long, help: ArgumentHelp("Pachyderm's PPS root in etcd ($PPS_ETCD_PREFIX).", valueName: "prefix"))
    var ppsPrefix: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The etcd key prefix under which pachmigrate keeps its own lock, journal and history "
                + "($PACHMIGRATE_STATE_PREFIX; default pachmigrate/). Not a Kubernetes namespace.",
            valueName: "prefix"))
    var statePrefix: String?

    /// The flag's old name, which Kubernetes operators read as a namespace: refused with
    /// what it was, rather than taken silently.
    @Option(name: .customLong("namespace"), help: .hidden)
    var renamedNamespace: String?

    private var env: [String: String] { ProcessInfo.processInfo.environment }

    var resolvedEndpoints: [String] {
        let raw =
            endpoints ?? env["ETCD_ENDPOINTS"] ?? env["ETCDCTL_ENDPOINTS"]
            ?? env["ETCD_PORT_2379_TCP_ADDR"].map { "http://\($0):\(env["ETCD_PORT_2379_TCP_PORT"] ?? "2379")" }
            ?? "http://127.0.0.1:2379"
        return raw.split(separator: ",").map(\.trimmed).filter { !$0.isEmpty }
            .map { $0.contains("://") ? $0 : "http://\($0)" }
    }

    /// Where the endpoints came from when not from --endpoints, for an error that could not
    /// reach them: an operator who gave none may not know which were tried.
    var endpointsNote: String? {
        guard endpoints == nil else { return nil }
        let tried = resolvedEndpoints.joined(separator: ",")
        for variable in ["ETCD_ENDPOINTS", "ETCDCTL_ENDPOINTS"] where env[variable] != nil {
            return "no --endpoints given: tried $\(variable), \(tried)"
        }
        if env["ETCD_PORT_2379_TCP_ADDR"] != nil {
            return "no --endpoints given: tried \(tried), from the Kubernetes service variables $ETCD_PORT_2379_TCP_*"
        }
        return "no --endpoints given: tried the default \(tried)"
    }

    var layout: PachydermLayout {
        PachydermLayout(
            pfsPrefix: pfsPrefix ?? env["PFS_ETCD_PREFIX"] ?? "pachyderm_pfs",
            ppsPrefix: ppsPrefix ?? env["PPS_ETCD_PREFIX"] ?? "pachyderm_pps")
    }

    var namespace: Namespace { Namespace(root: statePrefix ?? env["PACHMIGRATE_STATE_PREFIX"] ?? Namespace().root) }

    func validate() throws {
        if renamedNamespace != nil || env["PACHMIGRATE_NAMESPACE"] != nil {
            throw ValidationError(
                "--namespace ($PACHMIGRATE_NAMESPACE) is now --state-prefix ($PACHMIGRATE_STATE_PREFIX): the etcd key prefix of "
                    + "pachmigrate's own lock, journal and history (default pachmigrate/), not a Kubernetes namespace. "
                    + "Leave it out unless the cluster was migrated with another prefix; to reach etcd in a Kubernetes namespace, "
                    + "give --endpoints http://etcd.NAMESPACE.svc:2379")
        }
        if requestTimeout.duration <= .zero { throw ValidationError("--request-timeout must be longer than 0s") }
        for url in resolvedEndpoints where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
            throw ValidationError("endpoint \(url) must start with http:// or https://")
        }
        if resolvedEndpoints.isEmpty { throw ValidationError("no etcd endpoint given: use --endpoints or $ETCD_ENDPOINTS") }
    }

    func makeClient(logger: Logger) throws -> EtcdClient {
        var configuration = EtcdClient.Configuration(endpoints: resolvedEndpoints)
        configuration.requestTimeout = requestTimeout.duration
        let ca = cacert ?? env["ETCDCTL_CACERT"]
        let certFile = cert ?? env["ETCDCTL_CERT"]
        let keyFile = key ?? env["ETCDCTL_KEY"]
        let insecure = skipsTLSVerification
        if ca != nil || certFile != nil || keyFile != nil || insecure {
            configuration.tls = EtcdClient.TLS(caFile: ca, certFile: certFile, keyFile: keyFile, insecureSkipVerify: insecure)
        }
        if insecure {
            logger.warning(
                """
                TLS VERIFICATION IS OFF (--insecure-skip-tls-verify): etcd's certificate is not checked, so whoever answers at \
                \(resolvedEndpoints.joined(separator: ",")) gets the credentials and every record, and can change what is written. \
                Give --cacert the CA that signed etcd's certificate instead
                """)
        }
        configuration.credentials = try credentials()
        let client = try EtcdClient(configuration: configuration, logger: logger)
        warnIfStateIsUnderTheDefaultPrefix(client, logger: logger)
        return client
    }

    /// A prefix of one's own that holds no pachmigrate state, on a cluster whose default
    /// prefix holds some, is almost always a mistaken flag: every command would report
    /// "never migrated" (or wait forever). Warns; best effort, two count-only reads.
    private func warnIfStateIsUnderTheDefaultPrefix(_ client: EtcdClient, logger: Logger) {
        let chosen = namespace.root
        let standard = Namespace().root
        guard chosen != standard,
            let here = try? client.range(.prefix(Array(chosen.utf8), countOnly: true)).count, here == 0,
            let there = try? client.range(.prefix(Array(standard.utf8), countOnly: true)).count, there > 0
        else { return }
        logger.warning(
            """
            no pachmigrate state under the state prefix \(chosen), but \(there) key(s) under the default \(standard): \
            leave --state-prefix ($PACHMIGRATE_STATE_PREFIX) out unless this cluster was migrated with \(chosen)
            """)
    }

    /// etcdctl's `--insecure-skip-tls-verify`, or its environment variable as Go's
    /// strconv.ParseBool reads it.
    var skipsTLSVerification: Bool {
        insecureSkipTlsVerify || ["1", "t", "true"].contains(env["ETCDCTL_INSECURE_SKIP_TLS_VERIFY"]?.lowercased() ?? "")
    }

    /// The user and password, as etcdctl reads them: `--user`/$ETCDCTL_USER is the name alone
    /// when a password is given apart (a file, $ETCDCTL_PASSWORD), else `name:password` split
    /// at its first colon. Nil without a user.
    func credentials() throws -> EtcdClient.Credentials? {
        guard let given = user ?? env["ETCDCTL_USER"] else { return nil }
        if passwordFile != nil || env["ETCDCTL_PASSWORD"] != nil {
            return EtcdClient.Credentials(user: given, password: try readPassword())
        }
        guard let colon = given.firstIndex(of: ":") else {
            throw CLIError(
                .usage, "--user is set but no password: use --user NAME:PASSWORD ($ETCDCTL_USER), --password-file FILE or $ETCDCTL_PASSWORD")
        }
        let name = String(given[..<colon])
        // The whole value is not repeated: its second half is the password.
        if name.isEmpty { throw CLIError(.usage, "--user ($ETCDCTL_USER) has a password but no user name before its ':'") }
        return EtcdClient.Credentials(user: name, password: String(given[given.index(after: colon)...]))
    }

    private func readPassword() throws -> String {
        if let passwordFile {
            guard let data = FileManager.default.contents(atPath: passwordFile) else {
                throw CLIError(.usage, "cannot read the password file \(passwordFile)")
            }
            // A trailing newline is the editor's, not the password's.
            var text = String(decoding: data, as: UTF8.self)
            while text.last == "\n" || text.last == "\r\n" || text.last == "\r" { text.removeLast() }
            return text
        }
        return env["ETCDCTL_PASSWORD"] ?? ""
    }
}

extension StringProtocol {
    /// Without leading and trailing white space.
    var trimmed: String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s.removeFirst() }
        while s.last?.isWhitespace == true { s.removeLast() }
        return String(s)
    }
}
