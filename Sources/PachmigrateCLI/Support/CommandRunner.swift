import ArgumentParser
import Logging

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A command's result: JSON for `--output json`, text for people.
protocol CommandReport: Encodable {
    /// Non-zero when the result itself is a refusal (e.g. `plan` on a cluster not at rest).
    var exitStatus: ExitStatus { get }
    func renderText() -> String
}

extension CommandReport {
    var exitStatus: ExitStatus { .ok }
}

/// What every command gets: a logger, the output settings and the progress display.
struct CommandContext {
    let logger: Logger
    let output: OutputOptions
    let progress: ProgressDisplay
}

/// The JSON envelope every command prints with `--output json` (README "JSON output").
private struct Envelope<Result: Encodable>: Encodable {
    struct ErrorBody: Encodable {
        var code: String
        var message: String
        var keys: [String]
    }
    var command: String
    var ok: Bool
    var exitCode: Int32
    var result: Result?
    var error: ErrorBody?
}

private struct NoResult: Encodable {}

func printJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    if let data = try? encoder.encode(value) {
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Runs a command body, prints its report or its error in the chosen format, and exits
/// with the documented status.
func runCommand(_ name: String, _ output: OutputOptions, _ body: (CommandContext) throws -> any CommandReport) throws {
    let logger = makeLogger(output)
    let context = CommandContext(logger: logger, output: output, progress: ProgressDisplay(enabled: !output.quiet, logger: logger))
    let report: any CommandReport
    do {
        report = try body(context)
    } catch let exit as ExitCode {
        throw exit
    } catch {
        context.progress.finish()
        let (status, kind, message, keys) = describe(error)
        switch output.output {
        case .json:
            printJSON(
                Envelope<NoResult>(
                    command: name, ok: false, exitCode: status.rawValue, result: nil,
                    error: .init(code: kind, message: message, keys: keys)))
        case .text:
            var text = "pachmigrate \(name): error: \(message)"
            for key in keys.prefix(200) { text += "\n  - \(key)" }
            if keys.count > 200 { text += "\n  … and \(keys.count - 200) more (use --output json for all)" }
            writeStderr(text)
        }
        throw ExitCode(status.rawValue)
    }
    context.progress.finish()
    switch output.output {
    case .json:
        printJSON(AnyReportEnvelope(command: name, report: report))
    case .text:
        let text = report.renderText()
        if !text.isEmpty { print(text) }
    }
    if report.exitStatus != .ok { throw ExitCode(report.exitStatus.rawValue) }
}

/// Type-erases the report for the envelope.
private struct AnyReportEnvelope: Encodable {
    let command: String
    let report: any CommandReport

    func encode(to encoder: any Encoder) throws {
        enum Keys: String, CodingKey { case command, ok, exitCode, result }
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(command, forKey: .command)
        try container.encode(report.exitStatus == .ok, forKey: .ok)
        try container.encode(report.exitStatus.rawValue, forKey: .exitCode)
        try container.encode(report, forKey: .result)
    }
}

/// Parses durations like `30s`, `5m`, `1h`, `90` (seconds).
struct DurationArgument: ExpressibleByArgument, Sendable {
    var duration: Duration

    init(_ duration: Duration) { self.duration = duration }

    init?(argument: String) {
        var text = Substring(argument)
        var unit: Int64 = 1
        var millis = false
        if text.hasSuffix("ms") {
            millis = true
            text = text.dropLast(2)
        } else if let last = text.last, "smh".contains(last) {
            unit = last == "s" ? 1 : last == "m" ? 60 : 3600
            text = text.dropLast()
        }
        guard let value = Int64(text), value >= 0 else { return nil }
        duration = millis ? .milliseconds(value) : .seconds(value * unit)
    }

    var seconds: Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// Parses sizes like `2GiB`, `512MiB`, `8GB`, `1073741824` (bytes), for `--etcd-quota`.
struct ByteSize: ExpressibleByArgument, Sendable {
    var bytes: Int64

    init(bytes: Int64) { self.bytes = bytes }

    init?(argument: String) {
        let units: [(String, Int64)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
            ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1),
        ]
        let text = argument.filter { $0 != " " }
        let (number, unit) = units.first { text.hasSuffix($0.0) }.map { (String(text.dropLast($0.0.count)), $0.1) } ?? (text, 1)
        guard let value = Double(number), value > 0, value * Double(unit) < 9e18 else { return nil }
        bytes = Int64(value * Double(unit))
    }

    /// `2.0 GiB`, `25.3 MiB`: for people.
    static func describe(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var index = 0
        while value >= 1024, index < units.count - 1 {
            value /= 1024
            index += 1
        }
        return index == 0 ? "\(bytes) B" : "\((value * 10).rounded() / 10) \(units[index])"
    }
}
