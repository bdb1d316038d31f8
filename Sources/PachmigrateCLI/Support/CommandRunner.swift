import ArgumentParser
import EtcdGateway
import MigrationEngine
import Logging
import PlatformShim

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

/// The envelope of a command that failed, on stdout: `--output json` prints one JSON
/// document whatever happened, a usage error included.
func printErrorEnvelope(command: String, status: ExitStatus, code: String, message: String, keys: [String] = []) {
    printJSON(
        Envelope<NoResult>(
            command: command, ok: false, exitCode: status.rawValue, result: nil, error: .init(code: code, message: message, keys: keys)))
}

func printJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    if let data = try? encoder.encode(value) {
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Runs a command body, prints its report or its error in the chosen format, and exits
/// with the documented status. Under `--log-format json` every line is JSON: an error is an
/// `error` event with its code, a text report a `result` event on stdout, and a `done`
/// event closes the run with its exit code and elapsed time.
///
/// `connection`: the command's etcd options, so that an etcd it could not reach is named
/// with where its address came from when no --endpoints was given.
func runCommand(
    _ name: String, _ output: OutputOptions, connection: ConnectionOptions? = nil, _ body: (CommandContext) throws -> any CommandReport
) throws {
    let started = ContinuousClock.now
    let logger = makeLogger(output)
    let context = CommandContext(logger: logger, output: output, progress: ProgressDisplay(enabled: !output.quiet, logger: logger))
    func done(_ status: ExitStatus) {
        guard output.logFormat == .json else { return }
        logger.notice(
            "\(name) done",
            metadata: [
                "event": "done", "command": "\(name)", "exitCode": .number(status.rawValue), "ok": .stringConvertible(status == .ok),
                "elapsedSeconds": .number(seconds(ContinuousClock.now - started)),
            ])
    }
    let report: any CommandReport
    do {
        report = try body(context)
    } catch let exit as ExitCode {
        throw exit
    } catch {
        context.progress.finish()
        let (status, kind, described, keys) = describe(error)
        var message = described
        if let note = connection?.endpointsNote, isUnreachable(error) { message += " (\(note))" }
        switch (output.output, output.logFormat) {
        case (.json, _):
            printErrorEnvelope(command: name, status: status, code: kind, message: message, keys: keys)
        case (.text, .json):
            logger.error(
                "\(message)",
                metadata: [
                    "event": "error", "command": "\(name)", "code": "\(kind)", "exitCode": .number(status.rawValue),
                    "keys": .array(keys.map { .string($0) }),
                ])
        case (.text, .text):
            var text = "pachmigrate \(name): error: \(message)"
            for key in keys.prefix(200) { text += "\n  - \(key)" }
            if keys.count > 200 { text += "\n  … and \(keys.count - 200) more (use --output json for all)" }
            writeStderr(text)
        }
        done(status)
        throw ExitCode(status.rawValue)
    }
    context.progress.complete()
    switch (output.output, output.logFormat) {
    case (.json, _):
        printJSON(AnyReportEnvelope(command: name, report: report))
    case (.text, .json):
        // The report on stdout as one JSON line, its text beside its fields: a person reading
        // `kubectl logs` reads the text, a machine the fields, and no line is plain text.
        var metadata: Logger.Metadata = [
            "event": "result", "command": "\(name)", "exitCode": .number(report.exitStatus.rawValue), "text": "\(report.renderText())",
        ]
        if let result = try? JSONValue(encoding: AnyEncodable(report)) { metadata["result"] = .json(result) }
        print(JSONLogHandler.line(level: .notice, label: logger.label, message: "\(name) result", source: "PachmigrateCLI", metadata: metadata))
    case (.text, .text):
        let text = report.renderText()
        if !text.isEmpty { print(text) }
    }
    // Before the `done` event on stderr: a log collector reading both sees the result first.
    Posix.flushStandardStreams()
    done(report.exitStatus)
    if report.exitStatus != .ok { throw ExitCode(report.exitStatus.rawValue) }
}

/// Whether etcd could not be reached or did not answer: where the endpoints came from matters then.
func isUnreachable(_ error: any Error) -> Bool {
    let etcdError = (error as? EtcdError) ?? (error as? MigrationError)?.underlying
    return etcdError.map { [.transport, .timeout].contains($0.code) } ?? false
}

/// Any report, as the Encodable its own encoding makes it.
private struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
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
