import ArgumentParser

public struct Pachmigrate: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "pachmigrate",
        abstract: "Upgrade a Pachyderm cluster's metadata in etcd from one release to the next.",
        subcommands: [ConvertCommand.self]
    )
    public init() {}

    /// Usage errors exit 2 (this tool's documented convention, like most Unix tools)
    /// rather than ArgumentParser's 64; everything else as ArgumentParser decides.
    public static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                writeToStandardError(fullMessage(for: error) + "\n")
                exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }
}
