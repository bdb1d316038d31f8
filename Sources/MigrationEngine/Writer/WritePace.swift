import PlatformShim

/// Keeps the writers that do not carry the longest lane from crowding it out.
///
/// The longest lane sets the write phase's floor: one txn per record, each after the one
/// before. The other writers have fewer txns to make (their lanes' records share txns), so
/// at full speed they would finish early, and until then every txn of the longest lane
/// would queue in etcd behind theirs. Across a network that costs the most: at 0.5 ms a
/// round trip etcd's apply is as busy as the longest lane's round trips are long. Kept at
/// the longest lane's pace instead, the others' txns fall into the gaps its round trips
/// leave, and all finish together.
///
/// A writer follows only while it has time to spare: once its own longest lane needs
/// nearly as many txns as the longest lane has left, it writes at full speed.
final class WritePace: Sendable {
    /// How a writer takes part: it carries the longest lane (`leads`) or keeps its pace
    /// (`follows`).
    enum Role {
        case leads(WritePace)
        case follows(WritePace)
    }

    /// A follower may be this far ahead of the leader (a share of its records).
    static let lead = 0.02
    /// A follower whose longest lane has this share of the leader's remaining records left
    /// no longer waits: it could otherwise finish after the leader.
    static let nearlyCritical = 0.8
    /// Waits end at least this often, so that a stop is seen.
    static let longestWait = Duration.milliseconds(50)

    private struct Leader {
        var done = 0
        var ended = false
    }

    private let leaderTotal: Int
    private let leader = ConditionLock(Leader())

    /// `leaderRecords`: the records of the writer that carries the longest lane.
    init(leaderRecords: Int) {
        leaderTotal = max(1, leaderRecords)
    }

    /// The leader landed a txn of `records` records.
    func leaderLanded(records: Int) {
        leader.withLockWakingWaiters { $0.done += records }
    }

    /// The leader wrote its last record, or stopped: nobody waits for it any more.
    func leaderEnded() {
        leader.withLockWakingWaiters { $0.ended = true }
    }

    /// Whether a follower that has written `done` of its `total` records, and whose longest
    /// lane has `longestRemaining` left, may send its next txn now.
    func mayWrite(done: Int, total: Int, longestRemaining: Int) -> Bool {
        leader.withLock { mayWrite(done: done, total: total, longestRemaining: longestRemaining, leader: $0) }
    }

    /// Returns once a follower may send its next txn (see `mayWrite`) or `stop` is set.
    func waitForTurn(done: Int, total: Int, longestRemaining: Int, stop: StopSignal) {
        while !stop.isStopped {
            let ready = leader.wait(
                until: { self.mayWrite(done: done, total: total, longestRemaining: longestRemaining, leader: $0) },
                timeout: Self.longestWait)
            if ready { return }
        }
    }

    private func mayWrite(done: Int, total: Int, longestRemaining: Int, leader: Leader) -> Bool {
        if leader.ended { return true }
        let leaderRemaining = leaderTotal - leader.done
        if Double(longestRemaining) >= Self.nearlyCritical * Double(leaderRemaining) { return true }
        return Double(done) / Double(max(1, total)) <= Double(leader.done) / Double(leaderTotal) + Self.lead
    }
}
