import EtcdGateway
import EtcdTestSupport
import Synchronization
import Testing

@testable import MigrationEngine

@Suite("The space preflight's arithmetic")
struct SpaceEstimateTests {
    // 10,000 record writes of 500 bytes each (replacing 800-byte ones) on a 100 MB backend.
    let writes = 10_000
    let writeBytes: Int64 = 5_000_000
    let replacedBytes: Int64 = 8_000_000
    var growth: Int64 { SpaceEstimate.growth(writeBytes: writeBytes, writes: writes) }
    let roomy = SpaceLimits(quotaBytes: 2 << 30)

    func estimate(current: Int64 = 100_000_000, inUse: Int64? = nil, quota: Int64, mode: SpaceMode) -> SpaceEstimate {
        SpaceEstimate(
            currentBytes: current, inUseBytes: inUse, writeBytes: writeBytes, replacedBytes: replacedBytes, writes: writes,
            limits: SpaceLimits(quotaBytes: quota), mode: mode)
    }

    @Test func theLimitKeepsAReserveBelowTheQuota() {
        #expect(SpaceLimits(quotaBytes: 2 << 30).reserveBytes == (2 << 30) / 100)
        #expect(SpaceLimits(quotaBytes: 2 << 30).limitBytes == (2 << 30) - (2 << 30) / 100)
        // Small quotas keep at least 256 KiB free, and rounds are worth at least 128 KiB.
        #expect(SpaceLimits(quotaBytes: 10_000_000).reserveBytes == 256 << 10)
        #expect(SpaceLimits(quotaBytes: 10_000_000).minimumWindowBytes == 128 << 10)
    }

    @Test(arguments: [
        (compact: false, permitted: false, mode: SpaceMode.plain), (compact: false, permitted: true, mode: .plain),
        (compact: true, permitted: false, mode: .compaction), (compact: true, permitted: true, mode: .compactionAndDefragmentation),
    ])
    func theModeFollowsCompactAndThePermission(compact: Bool, permitted: Bool, mode: SpaceMode) {
        let policy = SpacePolicy(compactEvery: compact ? 500 : nil)
        #expect(policy.mode(defragmentPermitted: permitted) == mode)
    }

    @Test func withoutCompactionTheWholeCopyCounts() {
        let plain = estimate(quota: 2 << 30, mode: .plain)
        #expect(growth == Int64(Double(5_000_000 + 10_000 * 380) * 1.25))
        #expect(plain.expectedGrowthBytes == growth)
        #expect(plain.projectedBytes == 100_000_000 + growth)
        #expect(plain.uncompactedProjectedBytes == nil)
        #expect(!plain.fitsOnlyIfCompactionFrees)
        // The reserve counts: a projection within the quota but past its limit does not fit.
        let quota = 100_000_000 + growth + 100_000
        #expect(!estimate(quota: quota, mode: .plain).fits)
        #expect(estimate(quota: quota + SpaceLimits(quotaBytes: quota).reserveBytes, mode: .plain).fits)
    }

    /// Free pages count as room: the projection starts from the part in use.
    @Test func projectionStartsFromTheSizeInUseButNeverBelowTheFile() {
        let fromInUse = estimate(inUse: 40_000_000, quota: 2 << 30, mode: .plain)
        #expect(fromInUse.projectedBytes == max(100_000_000, 40_000_000 + growth))
        let tiny = SpaceEstimate(
            currentBytes: 100_000_000, inUseBytes: 1_000_000, writeBytes: 1000, writes: 1, limits: roomy, mode: .plain)
        #expect(tiny.projectedBytes == 100_000_000)
    }

    /// Compaction only: the decision counts two intervals of growth, and the estimate also
    /// says where the backend would end were compaction to free nothing; between the two,
    /// the run fits only if compaction frees enough.
    @Test(arguments: [
        (quota: Int64(101_000_000), fits: false, onlyIfFrees: false),
        (quota: Int64(103_000_000), fits: true, onlyIfFrees: true),
        (quota: Int64(125_000_000), fits: true, onlyIfFrees: false),
    ])
    func compactingProjectionAndItsWorstCase(quota: Int64, fits: Bool, onlyIfFrees: Bool) {
        let compacting = estimate(quota: quota, mode: .compaction)
        #expect(compacting.expectedGrowthBytes == Int64(Double(growth) / Double(writes) * 1000))
        #expect(compacting.uncompactedProjectedBytes == 100_000_000 + growth)
        #expect(compacting.fits == fits)
        #expect(compacting.fitsOnlyIfCompactionFrees == onlyIfFrees)
    }

    /// With defragmentation the file shrinks to what is in use after each round: the run fits
    /// when what stays in use leaves a window below the limit, whatever the growth; the
    /// peak is the limit at most, and the rounds are the growth past the first window over
    /// each later one.
    @Test func defragmentingFitsWhatStaysInUse() {
        // Records shrink (800 → 500 bytes): what stays in use is the backend as it is. The
        // quota leaves room for less than the growth, so rounds are needed.
        let quota: Int64 = 105_000_000
        let shrinking = estimate(quota: quota, mode: .compactionAndDefragmentation)
        let limits = SpaceLimits(quotaBytes: quota)
        #expect(shrinking.liveBytes == 100_000_000)
        #expect(shrinking.fits)
        #expect(shrinking.projectedBytes == limits.limitBytes)
        let window = limits.limitBytes - 100_000_000
        let expected = (growth - window + window - 1) / window
        #expect(shrinking.expectedRounds == Int(expected))
        #expect((shrinking.expectedRounds ?? 0) >= 1)

        // Records that grow by 3 MB leave no window under a quota only just above the backend.
        let growing = SpaceEstimate(
            currentBytes: 100_000_000, inUseBytes: nil, writeBytes: 8_000_000, replacedBytes: 5_000_000, writes: writes,
            limits: SpaceLimits(quotaBytes: 102_000_000), mode: .compactionAndDefragmentation)
        #expect(growing.liveBytes == 100_000_000 + Int64(3_000_000 * 1.25))
        #expect(!growing.fits)
        // A run that fits in the first window needs no round.
        #expect(estimate(quota: 2 << 30, mode: .compactionAndDefragmentation).expectedRounds == 0)
    }
}

/// A backend that grows as the guard's txns land (by `factor` × what was admitted) and
/// shrinks to what is in use when defragmented: the guard's decisions, without etcd.
private final class SimulatedBackend: ReadOnlyStore, @unchecked Sendable {
    struct State {
        var sizes: [Int64]
        var live: Int64
        var defragmented: [UInt64] = []
        var compactions = 0
        var largestSeen: Int64 = 0
    }
    let state: Mutex<State>
    let permitsDefragmentation: Bool

    init(members: Int, size: Int64, permitsDefragmentation: Bool) {
        state = Mutex(State(sizes: Array(repeating: size, count: members), live: size))
        self.permitsDefragmentation = permitsDefragmentation
    }

    func grow(_ bytes: Int64) {
        state.withLock { s in
            for i in s.sizes.indices { s.sizes[i] += bytes }
            s.largestSeen = max(s.largestSeen, s.sizes.max()!)
        }
    }

    func memberStatuses() throws(EtcdError) -> [MemberStatus] {
        state.withLock { s in
            s.sizes.enumerated().map {
                MemberStatus(
                    memberID: UInt64($0.offset + 1), name: "m\($0.offset + 1)", endpoint: "http://m\($0.offset + 1)", dbSize: $0.element,
                    dbSizeInUse: nil, isLeader: $0.offset == 0, revision: 1000)
            }
        }
    }

    func defragment(memberID: UInt64, timeout: Duration) throws(EtcdError) {
        guard permitsDefragmentation else { throw EtcdError(.permissionDenied, "permission denied") }
        state.withLock { s in
            s.sizes[Int(memberID) - 1] = s.live
            s.defragmented.append(memberID)
        }
    }

    func compact(revision: Int64, physical: Bool) throws(EtcdError) { state.withLock { $0.compactions += 1 } }

    func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse { throw EtcdError(.unsupported, "not simulated") }
}

@Suite("The space guard's decisions")
struct SpaceGuardTests {
    /// Writes `txns` txns of `growth` bytes each through the guard; the backend grows by
    /// `factor` × each. Returns the guard's error, if it stopped the run.
    fileprivate func run(
        _ backend: SimulatedBackend, mode: SpaceMode, quota: Int64, txns: Int, growth: Int64, factor: Double
    ) -> (written: Int, error: MigrationError?, guard: SpaceGuard) {
        let compactor = mode == .plain ? nil : HistoryCompactor(store: backend, every: 500, logger: .init(label: "test"))
        let spaceGuard = SpaceGuard(
            store: backend, mode: mode, limits: SpaceLimits(quotaBytes: quota), compactor: compactor, startRevision: 1,
            reportingLag: .zero, logger: .init(label: "test"))
        for i in 0..<txns {
            do {
                try spaceGuard.admit(growth, records: 1)
            } catch {
                return (i, error, spaceGuard)
            }
            backend.grow(Int64(Double(growth) * factor))
            spaceGuard.landed(revision: Int64(i + 2))
        }
        return (txns, nil, spaceGuard)
    }

    /// What the guard remembers of recent admissions stays bounded however many txns a run
    /// makes between measurements (it held one entry a txn: MiBs at a million keys).
    @Test func recentAdmissionsStayBounded() {
        let backend = SimulatedBackend(members: 1, size: 1_000_000, permitsDefragmentation: false)
        let result = run(backend, mode: .plain, quota: 1 << 40, txns: 20_000, growth: 100, factor: 1)
        #expect(result.error == nil)
        #expect(result.guard.recentAdmissions <= SpaceGuard.recentTrimCount, "\(result.guard.recentAdmissions)")
    }

    /// No member ever passes the limit, even when the backend grows several times as fast as
    /// the model says (the guard learns the ratio); the run stops with the reserve still free
    /// and says so.
    @Test(arguments: [1.0, 2.0, 3.5])
    func plainRunStopsBeforeTheLimit(factor: Double) {
        let quota: Int64 = 40_000_000
        let backend = SimulatedBackend(members: 3, size: 30_000_000, permitsDefragmentation: false)
        let result = run(backend, mode: .plain, quota: quota, txns: 10_000, growth: 10_000, factor: factor)
        let limits = SpaceLimits(quotaBytes: quota)
        #expect(result.error?.code == .outOfSpace)
        #expect(result.error?.space?.guardStopped == true)
        #expect(result.error?.space?.alarmRaised == false)
        #expect(result.error?.space?.members.count == 3)
        let largest = backend.state.withLock { $0.largestSeen }
        #expect(largest <= limits.limitBytes, "reached \(largest) of limit \(limits.limitBytes)")
        // It used most of the room before stopping, reading the sizes more often as the room shrank.
        #expect(largest > limits.limitBytes - 100_000, "stopped at \(largest), far below \(limits.limitBytes)")
        #expect((5...40).contains(result.guard.report.measurements), "\(result.guard.report.measurements)")
    }

    /// With defragmentation the run goes on through rounds; each compacts first and
    /// defragments every member, the leader (member 1) last.
    @Test func defragmentingRunCompletesThroughRounds() {
        let quota: Int64 = 34_500_000
        let backend = SimulatedBackend(members: 3, size: 30_000_000, permitsDefragmentation: true)
        let result = run(backend, mode: .compactionAndDefragmentation, quota: quota, txns: 3000, growth: 10_000, factor: 1.5)
        #expect(result.error == nil, "\(result.error?.message ?? "")")
        let state = backend.state.withLock { $0 }
        #expect(state.largestSeen <= SpaceLimits(quotaBytes: quota).limitBytes)
        let report = result.guard.report
        #expect(report.rounds >= 10, "45 MB of growth through a 4 MB window")
        #expect(report.defragmentations == report.rounds * 3)
        #expect(state.compactions == report.rounds)
        for round in stride(from: 0, to: state.defragmented.count, by: 3) {
            #expect(state.defragmented[round + 2] == 1, "the leader last: \(state.defragmented)")
        }
    }

    /// What stays in use leaves no window: the run stops after a round instead of looping.
    @Test func defragmentingRunStopsWhenNoWindowIsLeft() {
        let backend = SimulatedBackend(members: 1, size: 30_000_000, permitsDefragmentation: true)
        // 31 MB less the 310 KB reserve leaves 90 KB above what stays in use: under the 155 KB a round must win.
        backend.state.withLock { $0.live = 30_600_000 }
        let quota: Int64 = 31_000_000
        let result = run(backend, mode: .compactionAndDefragmentation, quota: quota, txns: 3000, growth: 10_000, factor: 1)
        #expect(result.error?.code == .outOfSpace)
        #expect(result.error?.message.contains("even after compacting and defragmenting") == true, "\(result.error?.message ?? "")")
        #expect(result.guard.report.rounds == 1)
        #expect(backend.state.withLock { $0.largestSeen } <= SpaceLimits(quotaBytes: quota).limitBytes)
    }
}
