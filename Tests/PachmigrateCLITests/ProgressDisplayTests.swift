import Logging
import Synchronization
import Testing

@testable import MigrationEngine
@testable import PachmigrateCLI

/// What a log collector sees of a step's progress (off a terminal).
@Suite("Progress lines in logs")
struct ProgressDisplayTests {
    /// Keeps each message with its metadata.
    final class Recorder: Sendable {
        let lines = Mutex<[(message: String, metadata: Logger.Metadata)]>([])

        var logger: Logger {
            Logger(label: "test") { _ in Handler(recorder: self) }
        }

        struct Handler: LogHandler {
            let recorder: Recorder
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .trace
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                recorder.lines.withLock { $0.append(("\(event.message)", event.metadata ?? [:])) }
            }
        }

        var progress: [Logger.Metadata] { lines.withLock { $0.filter { $0.message == "progress" }.map(\.metadata) } }
    }

    /// A step's first pages are small (16 keys, then growing): a rate taken from them put a
    /// 3-second check at "etaSeconds=125". Within the step's first interval only the line
    /// that says it finished is written, and it carries no ETA.
    @Test func noProgressLineFromAStepsFirstPages() {
        let recorder = Recorder()
        let display = ProgressDisplay(enabled: true, logger: recorder.logger, isTerminal: false)
        display.update(ProgressEvent(step: .check, done: 0, total: 0))
        for done in [16, 80, 50_000] { display.update(ProgressEvent(step: .check, done: done, total: 100_005)) }
        #expect(recorder.progress.isEmpty, "\(recorder.progress)")
        display.update(ProgressEvent(step: .check, done: 100_005, total: 100_005))
        let finished = recorder.progress
        #expect(finished.count == 1 && finished.first?["done"].map { "\($0)" } == "100005", "\(finished)")
        #expect(finished.first?["etaSeconds"] == nil)
        let events = recorder.lines.withLock { $0.compactMap { $0.metadata["event"].map { "\($0)" } } }
        #expect(events == ["check-started"], "\(events)")
    }
}
