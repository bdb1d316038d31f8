import Logging
import MigrationEngine
import Synchronization

import PlatformShim

/// Shows long work: a bar with rate and ETA on a terminal, a log line every few seconds
/// otherwise (Kubernetes logs; JSON lines with `--log-format json`). Always on stderr, so
/// stdout stays the result. Milestones (a step started, a step done, each tenth of the
/// rewrite off a terminal) are notices of their own, so that a log pipeline can follow the
/// run without reading progress lines.
final class ProgressDisplay: Sendable {
    private struct State {
        var step: MigrationStep?
        var stepStart = ContinuousClock.now
        var lastDraw = ContinuousClock.now - .seconds(60)
        var last: ProgressEvent?
        /// Tenths of the rewrite already announced.
        var tenths = 0
    }
    private let state = Mutex(State())
    private let isTerminal: Bool
    private let enabled: Bool
    private let lineInterval: Duration = .seconds(5)
    private let logger: Logger

    init(enabled: Bool, logger: Logger, isTerminal: Bool = Posix.isTerminal(.standardError)) {
        self.enabled = enabled
        self.isTerminal = isTerminal
        self.logger = logger
    }

    /// The step the last event was in (nil before the first and once the work is complete).
    var step: MigrationStep? { state.withLock { $0.step } }

    func update(_ event: ProgressEvent) {
        state.withLock { s in
            let now = ContinuousClock.now
            if s.step != event.step {
                endBarLine()
                if let step = s.step { stepDone(step, last: s.last, seconds: seconds(now - s.stepStart)) }
                s = State()
                s.step = event.step
                s.stepStart = now
                // A log line's rate and ETA come from its step's first interval, not from a
                // first page of a few keys (a check of 3 s once logged "etaSeconds=125").
                if !isTerminal { s.lastDraw = now }
                stepStarted(event)
            }
            s.last = event
            // Tenths are progress (`--quiet` drops them); the steps' milestones above are not.
            if enabled, event.step == .rewrite, event.total > 0, !isTerminal {
                let tenths = min(10, event.done * 10 / event.total)
                if tenths > s.tenths, tenths < 10 {
                    s.tenths = tenths
                    milestone(
                        "rewrite \(tenths * 10)% done", "rewrite-progress",
                        ["done": .number(event.done), "total": .number(event.total), "percent": .number(tenths * 10)])
                }
            }
            guard enabled else { return }
            let finished = event.total > 0 && event.done >= event.total
            let interval: Duration = isTerminal ? .milliseconds(100) : lineInterval
            // Nothing to say before the first unit of work (a "done=0 rate=0/s" line helps nobody).
            guard event.done > 0, finished || now - s.lastDraw >= interval else { return }
            s.lastDraw = now
            let elapsed = seconds(now - s.stepStart)
            let rate = elapsed > 0 ? Double(event.done) / elapsed : 0
            var eta: Double?
            if event.total > 0 && rate > 0 && !finished { eta = Double(event.total - event.done) / rate }
            guard isTerminal else {
                var metadata: Logger.Metadata = ["step": "\(event.step.rawValue)", "done": .number(event.done), "perSecond": .number(Int(rate))]
                if event.total > 0 { metadata["total"] = .number(event.total) }
                if let eta { metadata["etaSeconds"] = .number(Int(eta.rounded())) }
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
            Posix.writeStandardError(line)
            progressBarMidLine.store(!finished, ordering: .sequentiallyConsistent)
        }
    }

    /// What the operator and the log pipeline follow: the run's steps as they begin and end.
    private func stepStarted(_ event: ProgressEvent) {
        let what: String? =
            switch event.step {
            case .scan: "scan started: reading every key under the roots"
            case .backup: "backup started"
            case .rewrite: "writing started: the first record is being written"
            case .check: "check started"
            case .restore: "restore started"
            default: nil  // `starting` and `done` are no milestones
            }
        guard let what else { return }
        var metadata: Logger.Metadata = [:]
        if event.total > 0 { metadata["total"] = .number(event.total) }
        milestone(what, "\(event.step.rawValue)-started", metadata)
    }

    private func stepDone(_ step: MigrationStep, last: ProgressEvent?, seconds: Double) {
        guard step != .starting, step != .done else { return }
        var metadata: Logger.Metadata = ["seconds": .number(seconds)]
        if let last { metadata["done"] = .number(last.done) }
        milestone("\(step.rawValue) done", "\(step.rawValue)-done", metadata)
    }

    /// A notice with an `event` field a log pipeline can match on.
    private func milestone(_ message: String, _ event: String, _ metadata: Logger.Metadata) {
        logger.notice("\(message)", metadata: metadata.merging(["event": "\(event)"]) { $1 })
    }

    /// Logs a notice on a line of its own (a bar left mid-line is ended first, so the notice
    /// is not glued to it): what a signal does to the run.
    func interrupt(_ notice: String) {
        state.withLock { s in
            endBarLine()
            s.lastDraw = ContinuousClock.now
        }
        logger.notice("\(notice)")
    }

    /// The work succeeded: ends a bar left mid-line and says the last step is done (no
    /// next step says it).
    func complete() {
        state.withLock { s in
            endBarLine()
            if let step = s.step { stepDone(step, last: s.last, seconds: seconds(ContinuousClock.now - s.stepStart)) }
            s.step = nil
        }
    }

    /// Ends a bar left mid-line (before an error message, say).
    func finish() {
        state.withLock { _ in endBarLine() }
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

func formatSeconds(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m\(s % 60)s" }
    return "\(s / 3600)h\((s % 3600) / 60)m"
}
