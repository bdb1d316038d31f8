import ArgumentParser

import PlatformShim

public struct Pachmigrate: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "pachmigrate",
        abstract: "Upgrade a Pachyderm cluster's metadata in etcd from one release to the next.",
        discussion: """
            A typical upgrade from 1.4.x to 1.5.0, with pachd stopped:
              pachmigrate plan    --endpoints http://etcd:2379
              pachmigrate migrate --endpoints http://etcd:2379 --from 1.4.8 --to 1.5.0 --backup pre-1.5.jsonl
              pachmigrate verify  --endpoints http://etcd:2379

            \(ExitStatus.helpText)
            """,
        version: toolVersion,
        subcommands: [
            PlanCommand.self, MigrateCommand.self, ConvertCommand.self, StatusCommand.self, LockCommand.self,
            WaitCommand.self, BackupCommand.self, RestoreCommand.self, VerifyCommand.self, VersionCommand.self,
        ])

    public init() {}

    /// Reached only with no subcommand at all (the root has no options of its own). A bare
    /// `pachmigrate` in a script or a container without arguments is a mistake, not a
    /// success: show the help and exit 2 like any other usage error.
    public func run() throws {
        writeStderr(Self.helpMessage())
        throw ExitCode(ExitStatus.usage.rawValue)
    }

    /// Runs the command line with pachmigrate's exit codes: usage errors exit 2 (not
    /// ArgumentParser's 64), everything else as the command decided.
    public static func runMain() -> Never {
        TerminationSignals.start()
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
            writeStderr(fullMessage(for: error) + "\n" + "Run `pachmigrate help` (or add --help) for usage.")
            Platform.exit(code == .validationFailure ? ExitStatus.usage.rawValue : ExitStatus.failure.rawValue)
        }
    }
}
