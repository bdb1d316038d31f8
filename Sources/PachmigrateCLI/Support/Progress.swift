import Logging
import MigrationEngine
import Synchronization

import PlatformShim

/// Shows long work: a bar with rate and ETA on a terminal, a log line every few seconds
/// otherwise (Kubernetes logs; JSON lines with `--log-format json`). Always on stderr, so
/// stdout stays the result.
final class ProgressDisplay: Sendable {
    private struct State {
        var step: MigrationStep?
        var stepStart = ContinuousClock.now
        var lastDraw = ContinuousClock.now - .seconds(60)
        var drewBar = false
    }
    private let state = Mutex(State())
    private let isTerminal: Bool
    private let enabled: Bool
    private let lineInterval: Duration = .seconds(5)
    private let logger: Logger

    init(enabled: Bool, logger: Logger) {
        self.enabled = enabled
        self.isTerminal = isatty(2) == 1
        self.logger = logger
    }

    func update(_ event: ProgressEvent) {
        guard enabled else { return }
        state.withLock { s in
            let now = ContinuousClock.now
            if s.step != event.step {
                if s.drewBar { writeStderr("") }
                s = State()
                s.step = event.step
                s.stepStart = now
            }
            let finished = event.total > 0 && event.done >= event.total
            let interval: Duration = isTerminal ? .milliseconds(100) : lineInterval
            // Nothing to say before the first unit of work (a "done=0 rate=0/s" line helps nobody).
            guard event.done > 0, finished || now - s.lastDraw >= interval else { return }
            s.lastDraw = now
            let elapsed = Double((now - s.stepStart).components.seconds) + Double((now - s.stepStart).components.attoseconds) / 1e18
            let rate = elapsed > 0 ? Double(event.done) / elapsed : 0
            var eta: Double?
            if event.total > 0 && rate > 0 && !finished { eta = Double(event.total - event.done) / rate }
            guard isTerminal else {
                var metadata: Logger.Metadata = ["step": "\(event.step.rawValue)", "done": "\(event.done)", "rate": "\(Int(rate))/s"]
                if event.total > 0 { metadata["total"] = "\(event.total)" }
                if let eta { metadata["eta"] = "\(formatSeconds(eta))" }
                logger.notice("progress", metadata: metadata)
                return
            }
            var text = "\(event.step.rawValue): \(event.done)"
            if event.total > 0 {
                let fraction = min(1, Double(event.done) / Double(event.total))
                text += "/\(event.total) (\(Int(fraction * 100))%)"
                let width = 30
                let filled = Int(fraction * Double(width))
                text = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] " + text
                if let eta { text += ", ETA \(formatSeconds(eta))" }
            }
            text += ", \(Int(rate))/s"
            var line = "\r\u{1B}[2K" + text
            if finished { line += "\n" }
            line.utf8CString.withUnsafeBufferPointer { _ = write(2, $0.baseAddress, $0.count - 1) }
            s.drewBar = !finished
        }
    }

    /// Logs a notice on a line of its own (a bar left mid-line is ended first, so the notice
    /// is not glued to it): what a signal does to the run.
    func interrupt(_ notice: String) {
        state.withLock { s in
            if s.drewBar { writeStderr("") }
            s.drewBar = false
            s.lastDraw = ContinuousClock.now
        }
        logger.notice("\(notice)")
    }

    /// Ends a bar left mid-line (before an error message, say).
    func finish() {
        state.withLock { s in
            if s.drewBar { writeStderr("") }
            s.drewBar = false
        }
    }
}

func formatSeconds(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m\(s % 60)s" }
    return "\(s / 3600)h\((s % 3600) / 60)m"
}
