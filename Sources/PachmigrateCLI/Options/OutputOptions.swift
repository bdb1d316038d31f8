import ArgumentParser
import Logging

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json

    /// etcdctl's `-w` calls its plain format `simple`: its users type that too.
    init?(argument: String) {
        switch argument.lowercased() {
        case "text", "simple": self = .text
        case "json": self = .json
        default: return nil
        }
    }
}

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

// swift-format-ignore: AvoidRetroactiveConformances
// Deliberate: ArgumentParser parses `--log-level` straight into swift-log's level.
extension Logger.Level: @retroactive ExpressibleByArgument {}

/// How results and logs are shown. Results go to stdout; logs and progress to stderr.
struct OutputOptions: ParsableArguments {
    /// `-w/--write-out` is etcdctl's spelling, `-o/--output` kubectl's: both are typed by reflex.
    @Option(
        name: [.customShort("w"), .customLong("write-out"), .customShort("o"), .long],
        help: ArgumentHelp(
            "Result format: text for people, json for scripts (one JSON document on stdout, errors included).",
            valueName: "text|json"))
    var output: OutputFormat = .text

    @Option(name: .long, help: ArgumentHelp("Log format on stderr: text, or json lines for log collectors.", valueName: "text|json"))
    var logFormat: LogFormat = .text

    @Option(name: .long, help: ArgumentHelp("Least severe log level shown on stderr.", valueName: "level"))
    var logLevel: Logger.Level = .notice

    @Flag(name: .long, help: "No progress bar or progress lines.")
    var quiet = false
}
