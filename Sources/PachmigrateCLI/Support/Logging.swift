import Logging
import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

import PlatformShim

/// Whether a progress bar was left mid-line on the terminal: the next line written to
/// stderr starts a line of its own first, so that no log line (a warning, a notice of the
/// engine's) is glued to the bar.
let progressBarMidLine = Atomic<Bool>(false)

/// Ends a bar left mid-line, once.
func endBarLine() {
    if progressBarMidLine.exchange(false, ordering: .sequentiallyConsistent) { writeStderr("") }
}

/// Writes a line to stderr in one write(2), so lines of several threads do not interleave.
func writeStderr(_ line: String) {
    var line = line
    if !line.hasSuffix("\n") { line += "\n" }
    Posix.writeStandardError(line)
}

/// A log field's value as JSON, so that counts, rates and durations reach a log pipeline as
/// numbers (`"done":1000`, not `"done":"1000"`) and a report as an object. In a text log
/// line it prints as its plain value.
enum JSONValue: Codable, Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }

    /// Any Encodable value (a command's report) as JSON, by way of its own encoding.
    init(encoding value: some Encodable) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
    }

    /// A metadata value as the JSON it stands for: a number logged as `.stringConvertible`
    /// stays a number; `.string` stays a string (it is never parsed back).
    init(_ value: Logger.MetadataValue) {
        switch value {
        case .string(let text): self = .string(text)
        case .array(let values): self = .array(values.map { JSONValue($0) })
        case .dictionary(let values): self = .object(values.mapValues { JSONValue($0) })
        case .stringConvertible(let value):
            switch value {
            case let json as JSONValue: self = json
            case let flag as Bool: self = .bool(flag)
            case let number as Int: self = .int(Int64(number))
            case let number as Int64: self = .int(number)
            case let number as Int32: self = .int(Int64(number))
            case let number as Double: self = number.isFinite ? .double(number) : .string("\(number)")
            default: self = .string(value.description)
            }
        }
    }

    var description: String {
        switch self {
        case .string(let value): return value
        case .int(let value): return "\(value)"
        case .double(let value): return "\(value)"
        case .bool(let value): return "\(value)"
        case .null: return "null"
        case .array, .object:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "?"
        }
    }
}

extension Logger.MetadataValue {
    /// A number for the log: JSON lines carry it as a number.
    static func number(_ value: some BinaryInteger) -> Self { .stringConvertible(JSONValue.int(Int64(value))) }
    /// Seconds and the like, rounded to milliseconds.
    static func number(_ value: Double) -> Self { .stringConvertible(JSONValue.double((value * 1000).rounded() / 1000)) }
    static func json(_ value: JSONValue) -> Self { .stringConvertible(value) }
}

/// One JSON object per log line, for log collectors (`--log-format json`).
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        endBarLine()
        writeStderr(
            Self.line(
                level: event.level, label: label, message: "\(event.message)", source: event.source,
                metadata: metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 })))
    }

    /// The line itself; also what `runCommand` prints on stdout for a report under `--log-format json`.
    static func line(level: Logger.Level, label: String, message: String, source: String, metadata: Logger.Metadata) -> String {
        var object: [String: JSONValue] = [
            "time": .string(Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))),
            "level": .string(level.rawValue), "logger": .string(label), "message": .string(message), "source": .string(source),
        ]
        for (key, value) in metadata { object[key] = JSONValue(value) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(object)).map { String(decoding: $0, as: UTF8.self) } ?? #"{"message":"unencodable log line"}"#
    }
}

/// Plain text log lines on stderr.
struct TextLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        endBarLine()
        // `event` names a milestone for log pipelines; the message already says it to a person.
        let merged = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }).filter { $0.key != "event" }
        let meta = merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        writeStderr("pachmigrate: \(event.level.rawValue): \(event.message)\(meta)")
    }
}

private let loggingBootstrapped = Mutex(false)

/// The one place a Logger is made; libraries receive it.
func makeLogger(_ options: OutputOptions) -> Logger {
    loggingBootstrapped.withLock { done in
        guard !done else { return }
        done = true
        let format = options.logFormat
        LoggingSystem.bootstrap { label in
            format == .json ? JSONLogHandler(label: label) as any LogHandler : TextLogHandler(label: label)
        }
    }
    var logger = Logger(label: "pachmigrate")
    logger.logLevel = options.logLevel
    return logger
}
