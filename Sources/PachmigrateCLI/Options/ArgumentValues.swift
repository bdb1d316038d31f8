import ArgumentParser

/// A time flag's value, spelt as etcdctl and kubectl spell durations: `500ms`, `10s`, `2m`,
/// `1h`, `1m30s`, `1.5h`; a bare number is seconds (what the flags took before units).
struct DurationArgument: ExpressibleByArgument, Sendable, Hashable {
    var duration: Duration

    init(_ duration: Duration) { self.duration = duration }

    init?(argument: String) {
        let text = argument.trimmed.lowercased()
        if let seconds = Double(text) {
            guard seconds.isFinite, seconds >= 0 else { return nil }
            duration = .milliseconds(Int64((seconds * 1000).rounded()))
            return
        }
        var total = Duration.zero
        var rest = Substring(text)
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            let milliseconds: Double
            switch unit {
            case "ms": milliseconds = 1
            case "s": milliseconds = 1000
            case "m": milliseconds = 60_000
            case "h": milliseconds = 3_600_000
            default: return nil
            }
            guard let value = Double(number), value.isFinite, value * milliseconds < 9e15 else { return nil }
            total += .milliseconds(Int64((value * milliseconds).rounded()))
        }
        duration = total
    }

    var seconds: Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Whole seconds, rounded up: for what etcd counts in seconds (a lease's TTL).
    var wholeSecondsRoundedUp: Int64 {
        duration.components.seconds + (duration.components.attoseconds > 0 ? 1 : 0)
    }

    /// The way a person writes it back (`2s`, `500ms`, `1m30s`), for help and messages.
    var defaultValueDescription: String { Self.describe(duration) }

    static func describe(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds % 1000 != 0 {
            return milliseconds < 1000 ? "\(milliseconds)ms" : "\(Double(milliseconds) / 1000)s"
        }
        var seconds = milliseconds / 1000
        var text = ""
        if seconds >= 3600 {
            text += "\(seconds / 3600)h"
            seconds %= 3600
        }
        if seconds >= 60 {
            text += "\(seconds / 60)m"
            seconds %= 60
        }
        if seconds > 0 || text.isEmpty { text += "\(seconds)s" }
        return text
    }
}

/// A size, spelt as etcd (`--quota-backend-bytes`: plain bytes) and Kubernetes (`8Gi`, `8G`)
/// spell them, or as people do (`8GiB`, `8GB`, `8gb`): K/M/G/T are powers of 1000, Ki/Mi/
/// Gi/Ti and KiB/… powers of 1024; a trailing B and the case of the letters change nothing.
struct ByteSize: ExpressibleByArgument, Sendable, Hashable {
    var bytes: Int64

    init(bytes: Int64) { self.bytes = bytes }

    init?(argument: String) {
        let text = argument.filter { $0 != " " && $0 != "_" }
        let number = text.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        let multiplier: Double
        switch text.dropFirst(number.count).lowercased() {
        case "", "b": multiplier = 1
        case "k", "kb": multiplier = 1e3
        case "m", "mb": multiplier = 1e6
        case "g", "gb": multiplier = 1e9
        case "t", "tb": multiplier = 1e12
        case "ki", "kib": multiplier = 0x1p10
        case "mi", "mib": multiplier = 0x1p20
        case "gi", "gib": multiplier = 0x1p30
        case "ti", "tib": multiplier = 0x1p40
        default: return nil
        }
        guard let value = Double(number), value > 0, value * multiplier < 9e18 else { return nil }
        bytes = Int64((value * multiplier).rounded())
    }

    /// Exactly, in the largest unit that divides it (`2GiB`, `8GB`, `1000B`), for help text:
    /// what a person would type to get this value.
    var defaultValueDescription: String {
        let units: [(String, Int64)] = [
            ("TiB", 1 << 40), ("TB", 1_000_000_000_000), ("GiB", 1 << 30), ("GB", 1_000_000_000), ("MiB", 1 << 20),
            ("MB", 1_000_000), ("KiB", 1 << 10), ("KB", 1_000),
        ]
        guard let unit = units.first(where: { bytes % $0.1 == 0 }) else { return "\(bytes)B" }
        return "\(bytes / unit.1)\(unit.0)"
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
