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
                "Default: $ETCD_ENDPOINTS, $ETCDCTL_ENDPOINTS, http://$ETCD_PORT_2379_TCP_ADDR:2379 (Kubernetes service env), "
                + "else http://127.0.0.1:2379.",
            valueName: "urls"))
    var endpoints: String?

    @Option(name: .long, help: ArgumentHelp("CA bundle to verify etcd's certificate ($ETCDCTL_CACERT).", valueName: "file"))
    var cacert: String?

    @Option(name: .long, help: ArgumentHelp("Client certificate for TLS ($ETCDCTL_CERT).", valueName: "file"))
    var cert: String?

    @Option(name: .long, help: ArgumentHelp("Client key for TLS ($ETCDCTL_KEY).", valueName: "file"))
    var key: String?

    @Option(name: .long, help: ArgumentHelp("etcd user, when auth is enabled ($ETCDCTL_USER).", valueName: "name"))
    var user: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "File holding the etcd password (else $ETCDCTL_PASSWORD). Never pass a password on the command line.",
            valueName: "file"))
    var passwordFile: String?

    @Option(name: .long, help: ArgumentHelp("Seconds before an etcd request is given up.", valueName: "seconds"))
    var requestTimeout: Int = 10

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
        if requestTimeout <= 0 { throw ValidationError("--request-timeout must be a positive number of seconds") }
        for url in resolvedEndpoints where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
            throw ValidationError("endpoint \(url) must start with http:// or https://")
        }
        if resolvedEndpoints.isEmpty { throw ValidationError("no etcd endpoint given: use --endpoints or $ETCD_ENDPOINTS") }
    }

    func makeClient(logger: Logger) throws -> EtcdClient {
        var configuration = EtcdClient.Configuration(endpoints: resolvedEndpoints)
        configuration.requestTimeout = .seconds(requestTimeout)
        let ca = cacert ?? env["ETCDCTL_CACERT"]
        let certFile = cert ?? env["ETCDCTL_CERT"]
        let keyFile = key ?? env["ETCDCTL_KEY"]
        if ca != nil || certFile != nil || keyFile != nil {
            configuration.tls = EtcdClient.TLS(caFile: ca, certFile: certFile, keyFile: keyFile)
        }
        if let name = user ?? env["ETCDCTL_USER"] {
            configuration.credentials = EtcdClient.Credentials(user: name, password: try readPassword())
        }
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
        if let password = env["ETCDCTL_PASSWORD"] { return password }
        throw CLIError(.usage, "--user is set but no password: use --password-file FILE or $ETCDCTL_PASSWORD")
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
