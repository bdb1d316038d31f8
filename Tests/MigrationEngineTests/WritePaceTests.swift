import EtcdModel
import Testing

@testable import MigrationEngine

/// The writers beside the longest lane keep its pace (`WritePace`) instead of racing ahead
/// and queueing their txns in front of it.
@Suite("Writers keep the longest lane's pace")
struct WritePaceTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var leaderDone: Int
        var leaderEnded = false
        var done: Int
        var longestRemaining = 50
        var mayWrite: Bool
        var why: String
        var testDescription: String { why }
    }

    /// A leader of 1,000 records; a follower of 200.
    @Test(arguments: [
        Case(leaderDone: 0, done: 0, mayWrite: true, why: "both at the start"),
        Case(leaderDone: 0, done: 4, mayWrite: true, why: "2% ahead: within the lead"),
        Case(leaderDone: 0, done: 5, mayWrite: false, why: "2.5% ahead of a leader that has not begun"),
        Case(leaderDone: 500, done: 104, mayWrite: true, why: "halfway, 2% ahead"),
        Case(leaderDone: 500, done: 110, mayWrite: false, why: "halfway, 5% ahead"),
        Case(leaderDone: 500, done: 110, longestRemaining: 400, mayWrite: true, why: "its own longest lane nearly as long as the leader's rest"),
        Case(leaderDone: 500, leaderEnded: true, done: 190, mayWrite: true, why: "the leader stopped: nobody waits for it"),
    ])
    func aFollowerWritesOnlyWithinItsLead(_ c: Case) {
        let pace = WritePace(leaderRecords: 1000)
        if c.leaderDone > 0 { pace.leaderLanded(records: c.leaderDone) }
        if c.leaderEnded { pace.leaderEnded() }
        #expect(pace.mayWrite(done: c.done, total: 200, longestRemaining: c.longestRemaining) == c.mayWrite)
    }

    /// One lane of 400 records and six of 40 (two to each other writer): without the pace
    /// the others, two records a txn, would be done while the long lane is a tenth written.
    @Test func theOtherWritersLandTheirRecordsAlongsideTheLongestLane() throws {
        let store = InMemoryKeyValueService()
        var seed: [(String, String)] = []
        for i in 0..<400 { seed.append(("app/c/long/id\(i)", "v1:\(i)")) }
        for g in 0..<6 { for i in 0..<40 { seed.append(("app/c/short\(g)/id\(i)", "v1:\(g)-\(i)")) } }
        store.seed(seed)
        let before = laneOrder(store)
        let start = store.revision
        var options = MigrationOptions(backup: .none)
        options.concurrency = 4
        let result = try migrator(store).run(options: options)
        #expect(result.written == 640)
        #expect(laneOrder(store) == before)

        // At each revision a short lane's record landed, how far each side had come.
        let landed = store.all(prefix: "app/c/").filter { $0.modRevision > start }.sorted { $0.modRevision < $1.modRevision }
        var longDone = 0
        var shortDone = 0
        for kv in landed {
            if String(decoding: kv.key, as: UTF8.self).hasPrefix("app/c/long/") {
                longDone += 1
                continue
            }
            shortDone += 1
            // While the long lane has more than 50 left (above that its rest is within 0.8×
            // of a short lane's 40, and the others may write at full speed), each other writer
            // stays within its lead: 2% of its 80 records, plus the txn (2 records) it sends.
            guard longDone < 350 else { break }
            let shortShare = Double(shortDone) / 240
            let longShare = Double(longDone) / 400
            #expect(shortShare <= longShare + WritePace.lead + 2.0 / 80 + 1e-9, "at \(kv.key.printable): \(shortDone)/240 vs \(longDone)/400")
        }
    }
}
