import EtcdGateway
import EtcdTestSupport
import PlatformShim
import Synchronization
import Testing

@testable import MigrationEngine

/// A store that only records the revisions it was compacted to.
private final class CompactionRecorder: ForwardingKeyValueService, Sendable {
    let base = InMemoryKeyValueService()
    let compactedTo = Mutex<[Int64]>([])
    func compact(revision: Int64, physical: Bool) throws(EtcdError) { compactedTo.withLock { $0.append(revision) } }
}

@Suite("The history compactor beside the writers")
struct HistoryCompactorTests {
    /// Asleep until `every` records have landed, it compacts to the latest write at once;
    /// told the writers are done, it returns without a last compaction.
    @Test func compactsWhenDueAndReturnsWhenTheWritersAreDone() throws {
        let store = CompactionRecorder()
        let compactor = HistoryCompactor(store: store, every: 10, logger: testLogger)
        let thread = try OSThread.start(name: "compactor") { compactor.run() }.get()
        compactor.wrote(revision: 5, records: 6)
        compactor.wrote(revision: 9, records: 4)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while compactor.count < 1 && clock.now < deadline { OSThread.sleep(for: .milliseconds(5)) }
        #expect(store.compactedTo.withLock { $0 } == [9])
        // Not due again: a record short of the interval.
        compactor.wrote(revision: 12, records: 9)
        compactor.writersFinished()
        thread.join()
        #expect(store.compactedTo.withLock { $0 } == [9])
        #expect(compactor.count == 1)
    }
}
