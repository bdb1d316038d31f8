import ArgumentParser
import Logging

import PlatformShim

#if canImport(Glibc)
import Glibc
#endif

/// The release; also the default image tag (`pachmigrate:<toolVersion>`, README "Container
/// image") and the Dockerfile's VERSION, which a test holds to it.
public let toolVersion = "0.1.0"

public struct Pachmigrate: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "pachmigrate",
        abstract: "Upgrade a Pachyderm cluster's metadata in etcd from one release to the next.",
        discussion: """
            Examples (a typical upgrade from 1.4.x to 1.5.0, with pachd stopped):
              pachmigrate plan    --endpoints http://etcd:2379
              pachmigrate migrate --endpoints http://etcd:2379 --backup pre-1.5.jsonl
              pachmigrate verify  --endpoints http://etcd:2379

            Flags and environment read as etcdctl and kubectl read them: -w/--write-out or \
            -o/--output json, $ETCDCTL_ENDPOINTS, $ETCDCTL_USER=name:password, durations \
            (500ms, 10s, 2m, 1h) and sizes (8Gi, 8GiB, 8G, 8GB, bytes). \
            `pachmigrate --version` prints the version, as `pachmigrate version` does.

            \(ExitStatus.helpText)
            """,
        subcommands: [
            PlanCommand.self, MigrateCommand.self, ConvertCommand.self, StatusCommand.self, LockCommand.self,
            WaitCommand.self, BackupCommand.self, RestoreCommand.self, VerifyCommand.self, VersionCommand.self,
        ])

    public init() {}

    /// Reached only with no subcommand at all. A bare `pachmigrate` in a script or a
    /// container without arguments is a mistake, not a success: show the help and exit 2
    /// like any other usage error.
    public func run() throws {
        writeStderr(Self.helpMessage())
        throw ExitCode(ExitStatus.usage.rawValue)
    }

    /// Runs the command line with pachmigrate's exit codes: usage errors exit 2 (not
    /// ArgumentParser's 64), everything else as the command decided.
    public static func runMain() -> Never {
        TerminationSignals.start()
        let arguments = Array(CommandLine.arguments.dropFirst())
        // Not ArgumentParser's `version:`, which adds a `--version` to every subcommand beside
        // the `--version` of `wait` and `verify` (a release to wait for, to check against),
        // nor a root flag, which the parser would take from `wait --version 1.5.0`: one
        // meaning per command.
        if arguments == ["--version"] {
            print("pachmigrate \(toolVersion)")
            Platform.exit(0)
        }
        let words = commandWords(arguments)
        let json = asksForJSON(arguments)
        // Until the command takes SIGINT, SIGTERM and SIGHUP itself (migrate, backup and restore do,
        // before their first write), a signal ends the run at once, said in the chosen format.
        TerminationSignals.onSignal { signal in
            stoppedBeforeTheCommandTookSignals(signal, json: json, arguments: arguments, command: words.path)
        }
        if let unknown = words.unknown {
            let known = words.subcommands
            let suggestion = closest(to: unknown, among: known).map { "; did you mean '\($0)'?" } ?? "."
            let message =
                "'\(unknown)' is not a \((["pachmigrate"] + words.path).joined(separator: " ")) command\(suggestion) "
                + "Commands: \(known.joined(separator: ", "))."
            if json { printErrorEnvelope(command: envelopeName(words.path), status: .usage, code: "usage", message: message) }
            writeUsageError("pachmigrate: error: \(message)", arguments: arguments, command: words.path)
            Platform.exit(ExitStatus.usage.rawValue)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
            Platform.exit(0)
        } catch {
            if let code = error as? ExitCode { Platform.exit(code.rawValue) }
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Platform.exit(0)
            }
            let status: ExitStatus = code == .validationFailure ? .usage : .failure
            if json {
                printErrorEnvelope(
                    command: envelopeName(words.path), status: status, code: status == .usage ? "usage" : "error",
                    message: fullMessage(for: error))
            }
            writeUsageError(fullMessage(for: error), arguments: arguments, command: words.path, status: status)
            Platform.exit(status.rawValue)
        }
    }

    /// Ends a run stopped by `signal` that the command has not taken itself. migrate, backup
    /// and restore take signals before their first write, so a stop here (while they connect
    /// and resolve versions) wrote nothing; the other commands only read, but `convert`
    /// (its output file) and `lock break` (one delete).
    static func stoppedBeforeTheCommandTookSignals(_ signal: Int32, json: Bool, arguments: [String], command: [String]) -> Never {
        let name = signalName(signal)
        let (status, code, message): (ExitStatus, String, String) =
            switch command {
            case ["convert"]:
                (
                    .failure, "stopped",
                    "stopped on request (\(name)) before the conversion finished: OUT may be incomplete (it has no OUT.sha256 "
                        + "beside it). Run the same command again with --overwrite."
                )
            case ["lock", "break"]:
                (.failure, "stopped", "stopped on request (\(name)) while breaking the lock: see `pachmigrate lock show` for whether it was.")
            default:
                (
                    .stoppedBy(signal), "stoppedBeforeWriting",
                    "stopped on request (\(name)) before the first write; nothing was written. Run the same command again when you are ready."
                )
            }
        exit(status, code: code, message: message, json: json, arguments: arguments, command: command)
    }

    /// Ends the process from the signal watcher's thread, the error said in the format the
    /// command line chose, as a thrown error would be.
    static func exit(_ status: ExitStatus, code: String, message: String, json: Bool, arguments: [String], command: [String]) -> Never {
        if json { printErrorEnvelope(command: envelopeName(command), status: status, code: code, message: message) }
        writeError(
            "\((["pachmigrate"] + command).joined(separator: " ")): error: \(message)", arguments: arguments, command: command,
            status: status, code: code)
        Platform.exit(status.rawValue)
    }

    /// `exit` for the command line this process was started with.
    static func exit(_ status: ExitStatus, code: String, message: String) -> Never {
        let arguments = Array(CommandLine.arguments.dropFirst())
        exit(status, code: code, message: message, json: asksForJSON(arguments), arguments: arguments, command: commandWords(arguments).path)
    }

    /// The `command` of a usage error's envelope: the subcommand as a successful one names
    /// itself (`lock show`), or the tool when none was named.
    static func envelopeName(_ path: [String]) -> String { path.isEmpty ? "pachmigrate" : path.joined(separator: " ") }

    /// The subcommands the arguments name (`["lock", "show"]`), and the first word in a
    /// command's place that names none: ArgumentParser would take it for an argument and
    /// complain about the next flag instead ("Unknown option '--dry-run'" for `migrat --dry-run`).
    static func commandWords(_ arguments: [String]) -> (path: [String], unknown: String?, subcommands: [String]) {
        var command: any ParsableCommand.Type = Pachmigrate.self
        var path: [String] = []
        for word in arguments {
            let subcommands = command.configuration.subcommands
            let names = subcommands.compactMap { $0.configuration.commandName }
            guard !subcommands.isEmpty, !word.hasPrefix("-"), word != "help" else { break }
            guard let next = subcommands.first(where: { $0.configuration.commandName == word }) else {
                return (path, word, names)
            }
            command = next
            path.append(word)
        }
        return (path, nil, command.configuration.subcommands.compactMap { $0.configuration.commandName })
    }

    /// Whether the command line asks for `--output json` in any of its spellings; read from
    /// the words themselves, since a line that does not parse has no options to ask.
    static func asksForJSON(_ arguments: [String], flags: Set<String> = ["-o", "--output", "-w", "--write-out"]) -> Bool {
        for (index, word) in arguments.enumerated() {
            if word == "--" { break }
            if flags.contains(word), index + 1 < arguments.count, arguments[index + 1].lowercased() == "json" { return true }
            for flag in flags where word.lowercased() == "\(flag)=json" { return true }
        }
        return false
    }

    /// A usage error on stderr: plain text, or under `--log-format json` a JSON line like
    /// every other, with its code.
    static func writeUsageError(_ message: String, arguments: [String], command: [String], status: ExitStatus = .usage) {
        writeError(
            message, hint: "Run `pachmigrate help` (or add --help) for usage.", arguments: arguments, command: command, status: status,
            code: status == .usage ? "usage" : "error")
    }

    /// An error met before a command ran (or took signals itself) on stderr: plain text with
    /// its `hint`, or under `--log-format json` a JSON line like every other, with its code.
    static func writeError(
        _ message: String, hint: String? = nil, arguments: [String], command: [String], status: ExitStatus, code: String
    ) {
        guard asksForJSON(arguments, flags: ["--log-format"]) else {
            writeStderr(hint.map { "\(message)\n\($0)" } ?? message)
            return
        }
        writeStderr(
            JSONLogHandler.line(
                level: .error, label: "pachmigrate", message: message, source: "PachmigrateCLI",
                metadata: [
                    "event": "error", "command": "\((["pachmigrate"] + command).joined(separator: " "))",
                    "code": "\(code)",
                    "exitCode": .number(status.rawValue),
                ]))
    }

    /// The name nearest to a mistyped one (edit distance at most a third of it, at least 2),
    /// or one it begins.
    static func closest(to word: String, among names: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var row = Array(0...b.count)
            for i in 1...max(1, a.count) where !a.isEmpty {
                var previous = row[0]
                row[0] = i
                for j in 1...max(1, b.count) where !b.isEmpty {
                    let current = row[j]
                    row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                    previous = current
                }
            }
            return row[b.count]
        }
        let scored = names.map { ($0, distance(Array(word), Array($0))) }.sorted { $0.1 < $1.1 }
        if let best = scored.first, best.1 <= max(2, word.count / 3) { return best.0 }
        return names.first { $0.hasPrefix(word) || word.hasPrefix($0) }
    }
}
