import ArgumentParser

public struct Pachmigrate: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "pachmigrate",
        abstract: "Upgrade a Pachyderm cluster's metadata in etcd from one release to the next.",
        subcommands: [ConvertCommand.self]
    )
    public init() {}
}
