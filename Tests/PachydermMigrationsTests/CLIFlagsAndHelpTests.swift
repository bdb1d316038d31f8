import ArgumentParser
import EtcdGateway
import Foundation
import Testing

@testable import PachmigrateCLI

/// The spellings etcdctl and kubectl users type by reflex parse to the same values, and
/// every command's help teaches in a person's terms (issue 21).
@Suite("CLI flags and help")
struct CLIFlagsAndHelpTests {
    @Test(arguments: [["-w", "json"], ["--write-out", "json"], ["-o", "json"], ["--output", "json"], ["--output=json"], ["--write-out=json"]])
    func outputSpellings(arguments: [String]) throws {
        #expect(try OutputOptions.parse(arguments).output == .json)
    }

    @Test func etcdctlsSimpleIsText() throws {
        #expect(try OutputOptions.parse(["-w", "simple"]).output == .text)
        #expect(throws: (any Error).self) { try OutputOptions.parse(["-w", "yaml"]) }
    }

    @Test(arguments: [
        ("10", Duration.seconds(10)), ("10s", .seconds(10)), ("500ms", .milliseconds(500)), ("2m", .seconds(120)),
        ("1h", .seconds(3600)), ("1m30s", .seconds(90)), ("1.5s", .milliseconds(1500)), ("0.5", .milliseconds(500)), ("2M", .seconds(120)),
    ])
    func durations(text: String, expected: Duration) throws {
        #expect(DurationArgument(argument: text)?.duration == expected)
    }

    @Test(arguments: ["", "s", "10x", "-1s", "ten", "1s-", "inf", "nan", "10 s"])
    func notDurations(text: String) {
        #expect(DurationArgument(argument: text) == nil)
    }

    /// Every time flag takes the same spellings; bare numbers stay seconds.
    @Test func everyTimeFlagTakesDurations() throws {
        #expect(try ConnectionOptions.parse(["--request-timeout", "10s"]).requestTimeout.duration == .seconds(10))
        #expect(try ConnectionOptions.parse(["--request-timeout", "10"]).requestTimeout.duration == .seconds(10))
        #expect(try ConnectionOptions.parse(["--request-timeout", "1500ms"]).requestTimeout.duration == .milliseconds(1500))
        #expect(try MigrateCommand.parse(["--lock-ttl", "1m"]).lockTTL.wholeSecondsRoundedUp == 60)
        #expect(try MigrateCommand.parse(["--lock-ttl", "45"]).lockTTL.wholeSecondsRoundedUp == 45)
        #expect(try MigrateCommand.parse(["--lock-ttl", "5.2s"]).lockTTL.wholeSecondsRoundedUp == 6)
        #expect(throws: (any Error).self) { try MigrateCommand.parse(["--lock-ttl", "4s"]) }
        #expect(try MigrateCommand.parse(["--wait-lock", "2m"]).waitLock?.duration == .seconds(120))
        #expect(try WaitCommand.parse(["--version", "1.5.0", "--timeout", "1h", "--interval", "500ms"]).interval.duration == .milliseconds(500))
        #expect(try LockBreakCommand.parse(["--stale-after", "90s"]).staleAfter?.duration == .seconds(90))
        #expect(throws: (any Error).self) { try ConnectionOptions.parse(["--request-timeout", "0s"]) }
    }

    @Test(arguments: [
        ("8G", Int64(8_000_000_000)), ("8GB", 8_000_000_000), ("8gb", 8_000_000_000), ("8g", 8_000_000_000),
        ("8Gi", 8 << 30), ("8GiB", 8 << 30), ("8gib", 8 << 30), ("2147483648", 2 << 30), ("512Mi", 512 << 20), ("1.5GiB", 3 << 29),
    ])
    func sizes(text: String, bytes: Int64) throws {
        #expect(try SpaceOptions.parse(["--etcd-quota", text]).etcdQuota?.bytes == bytes)
    }

    @Test(arguments: ["", "8X", "8GiBs", "-8G", "G", "8 Gibibytes"])
    func notSizes(text: String) {
        #expect(ByteSize(argument: text) == nil)
    }

    /// etcdctl's `--user name:password` (and $ETCDCTL_USER), split at the first colon; the
    /// password may hold colons of its own.
    @Test func userWithPassword() throws {
        guard ProcessInfo.processInfo.environment["ETCDCTL_PASSWORD"] == nil else { return }
        let credentials = try ConnectionOptions.parse(["--user", "root:se:cret"]).credentials()
        #expect(credentials == EtcdClient.Credentials(user: "root", password: "se:cret"))
        #expect(!"\(try #require(credentials))".contains("se:cret"))
        #expect(throws: CLIError.self) { try ConnectionOptions.parse(["--user", "root"]).credentials() }
        #expect(throws: CLIError.self) { try ConnectionOptions.parse(["--user", ":secret"]).credentials() }
        #expect(try ConnectionOptions.parse([]).credentials() == nil || ProcessInfo.processInfo.environment["ETCDCTL_USER"] != nil)
    }

    @Test func insecureSkipTLSVerify() throws {
        #expect(try ConnectionOptions.parse(["--insecure-skip-tls-verify"]).skipsTLSVerification)
    }

    @Test(arguments: [
        (["migrat", "--dry-run"], [], "migrat", "migrate"), (["lock", "shwo"], ["lock"], "shwo", "show"),
        (["stauts"], [], "stauts", "status"), (["rstore", "x"], [], "rstore", "restore"),
    ])
    func unknownCommandsAreNamedWithTheClosest(arguments: [String], path: [String], unknown: String, closest: String) {
        let words = Pachmigrate.commandWords(arguments)
        #expect(words.path == path && words.unknown == unknown)
        #expect(Pachmigrate.closest(to: unknown, among: words.subcommands) == closest)
    }

    @Test(arguments: [["migrate", "--dry-run"], ["lock", "show", "-w", "json"], ["convert", "in", "out"], ["help", "migrate"], ["--version"]])
    func knownCommandsAreLeftToTheParser(arguments: [String]) {
        #expect(Pachmigrate.commandWords(arguments).unknown == nil)
    }

    @Test func jsonIsAskedForInEverySpelling() {
        for arguments in [["x", "-o", "json"], ["-w", "json"], ["--output=json"], ["--write-out", "JSON"]] {
            #expect(Pachmigrate.asksForJSON(arguments), "\(arguments)")
        }
        #expect(!Pachmigrate.asksForJSON(["--output", "text", "json"]))
    }

    static let commands: [(String, any ParsableCommand.Type, [PachmigrateCLI.ExitStatus]?)] = [
        ("pachmigrate", Pachmigrate.self, nil), ("plan", PlanCommand.self, PlanCommand.exitStatuses),
        ("migrate", MigrateCommand.self, MigrateCommand.exitStatuses), ("convert", ConvertCommand.self, ConvertCommand.exitStatuses),
        ("status", StatusCommand.self, StatusCommand.exitStatuses), ("lock", LockCommand.self, nil),
        ("lock show", LockShowCommand.self, LockShowCommand.exitStatuses), ("lock break", LockBreakCommand.self, LockBreakCommand.exitStatuses),
        ("wait", WaitCommand.self, WaitCommand.exitStatuses), ("backup", BackupCommand.self, BackupCommand.exitStatuses),
        ("restore", RestoreCommand.self, RestoreCommand.exitStatuses), ("verify", VerifyCommand.self, VerifyCommand.exitStatuses),
        ("version", VersionCommand.self, nil),
    ]

    /// Every command's --help: no Swift type names, each flag once (one `--version` meaning
    /// per command), an example, the exit-code table only in the root's and each command's
    /// own codes in its.
    @Test func everyCommandsHelpTeaches() throws {
        for (name, command, statuses) in Self.commands {
            let help = Pachmigrate.helpMessage(for: command, columns: 100)
            for leak in ["ByteSize(", "DurationArgument(", "Duration(", "Optional(", "Level."] {
                #expect(!help.contains(leak), "\(name): \(leak)")
            }
            // The names each option line starts with (`-w, --write-out, -o, --output <text|json>`).
            var flags: [String] = []
            for line in help.split(separator: "\n") where line.hasPrefix("  -") {
                let head = line.trimmed.split(separator: " ").prefix { $0.hasPrefix("-") }
                flags += head.map { String($0.filter { $0 != "," }) }
            }
            #expect(Set(flags).count == flags.count, "\(name): \(flags)")
            #expect(help.contains("Example"), "\(name)")
            // Each example fits an 80-column terminal, so that it is not wrapped mid-command.
            for line in Pachmigrate.helpMessage(for: command, columns: 1000).split(separator: "\n") where line.hasPrefix("  pachmigrate ") {
                #expect(line.count <= 80, "\(name): \(line)")
            }
            #expect(help.contains("Exit codes:") == (command == Pachmigrate.self), "\(name)")
            if let statuses {
                // As one line: the help wraps it wherever the terminal ends.
                let flat = help.split { $0.isWhitespace }.joined(separator: " ")
                #expect(flat.contains("Exit status: "), "\(name)")
                for status in PachmigrateCLI.ExitStatus.allCases where status != .ok {
                    let named = flat.contains(" \(status.rawValue) \(status.shortMeaning)")
                    #expect(named == statuses.contains(status), "\(name): \(status.rawValue)")
                }
            }
        }
    }

    /// A signal before a command takes signals itself ends it with 130, 143 or 129
    /// (`Pachmigrate.stoppedBeforeTheCommandTookSignals`), so each command's help names all
    /// three; `convert` and `lock break` end with 1 there instead, saying what may be left.
    @Test func everyCommandAStopEndsWith130143Or129SaysSo() {
        for (name, _, statuses) in Self.commands where !["convert", "lock break"].contains(name) {
            guard let statuses else { continue }
            #expect(
                statuses.contains(.stoppedBySIGINT) && statuses.contains(.stoppedBySIGTERM) && statuses.contains(.stoppedBySIGHUP),
                "\(name)")
        }
    }

    /// `wait --version` and `verify --version` are the release, from the root as from the command.
    @Test func versionOfWaitAndVerifyIsTheRelease() throws {
        #expect((try Pachmigrate.parseAsRoot(["wait", "--version", "1.5.0"]) as? WaitCommand)?.version == "1.5.0")
        #expect((try Pachmigrate.parseAsRoot(["verify", "--version", "1.5.0"]) as? VerifyCommand)?.version == "1.5.0")
    }

    @Test func defaultsAreShownAsAPersonWritesThem() {
        let help = Pachmigrate.helpMessage(for: MigrateCommand.self, columns: 200)
        for shown in ["etcd's default, 2GiB,", "(default: 30s)", "(default: 10s)"] { #expect(help.contains(shown), "\(shown)") }
        #expect(Pachmigrate.helpMessage(for: WaitCommand.self, columns: 200).contains("(default: 2s)"))
        #expect(ByteSize(bytes: 8_000_000_000).defaultValueDescription == "8GB")
        #expect(ByteSize(bytes: 1000 + 1).defaultValueDescription == "1001B")
        #expect(DurationArgument(.seconds(90)).defaultValueDescription == "1m30s")
    }
}
