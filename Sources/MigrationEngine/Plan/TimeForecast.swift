import EtcdGateway
import Logging

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How long a migration of this cluster takes from where pachmigrate runs: what an operator
/// plans a maintenance window with. Made from the scan (which `plan` and `migrate` have just
/// done, so its time is measured, not guessed), a calibrated backup write, and two latencies
/// measured against this etcd with requests that change nothing.
///
/// The write phase has two bounds and takes the longer. Records of one ordering group land
/// one txn after another, so the longest group costs a fenced txn's full latency per record
/// (the critical path: what a network adds to). Records of different groups share txns, so
/// the rest overlap with it, until etcd's own work per record bounds the run (what a
/// loopback bench sees: about the server's part of a lone txn per record, a little less
/// since records share txns).
public struct TimeForecast: Sendable, Hashable, Codable {
    /// A read that returns nothing, there and back (`MeasuredLatency.typical`).
    public var roundTripSeconds: Double
    /// A fenced txn with a put that never applies (its compare never holds), as a record's
    /// txn costs: raft, the compare, the round trip (`MeasuredLatency.typical`).
    public var fencedTxnSeconds: Double
    public var scanSeconds: Double
    /// Nil for a run without a backup.
    public var backupSeconds: Double?
    public var writeSeconds: Double
    /// The check after the writes, for writes by others: one read when every revision since
    /// the run started is its own; every key read once more, keys only, when it cannot know
    /// that (a resumed run: its earlier attempts' writes are not known by revision).
    public var checkSeconds: Double
    /// Records of the longest ordering group: that many txns, one after another.
    public var longestChain: Int
    /// The kind of that group (`jobs`, `commits`, …).
    public var longestChainKind: String
    public var records: Int

    public var totalSeconds: Double { scanSeconds + (backupSeconds ?? 0) + writeSeconds + checkSeconds }

    /// The check's time, when it reads every key, as a share of the scan's: both read every
    /// key, the check without values and converting nothing. Measured on etcd 3.1.4, release
    /// build, at loopback: 0.66 of the scan at 100k generated keys, 0.72 to 1.18 in four runs
    /// at 1M (it moves with etcd; docs/performance.md).
    public static let checkShareOfScan = 0.75

    /// What a record of the longest chain costs beyond a lone txn's latency, as a share of
    /// its server part (its txn lands among the other writers' txns). Fitted on a generated
    /// 100k-key cluster, release build, at loopback, 0.5 ms and 2 ms round trips
    /// (docs/performance.md, "The time forecast").
    static let criticalPathServerShare = 0.5

    /// What each record costs etcd, as a share of a lone txn's server part, in etcd's own
    /// work (which sets a loopback run's forecast): 1.4 on 3.1 and 3.2 (fitted on 3.1.4),
    /// 0.9 from 3.3 on (fitted on 3.4.23; 3.3 is taken to be like 3.4, unmeasured). Unknown
    /// versions (a store that does not say) get 3.1's. More than a whole server part on 3.1:
    /// four writers at once keep etcd's CPU busy, and each record then costs more than a lone
    /// txn shows (not its apply: there a lone txn that lands takes no longer than one that
    /// does not).
    public static func serverSharePerRecord(for version: EtcdVersion?) -> Double {
        guard let version, version >= EtcdVersion(3, 3) else { return 1.4 }
        return 0.9
    }

    /// The write phase: the longer of the critical path (each record of the longest chain a
    /// whole txn, among the others) and etcd's own work (a txn's server part per txn, which
    /// is about one per record of the longest chain since the others share them, and a
    /// share of it per record). The server part is what a txn takes beyond a read's round trip.
    public static func writeSeconds(
        records: Int, longestChain: Int, fencedTxnSeconds: Double, roundTripSeconds: Double, serverSharePerRecord: Double = 0.5
    ) -> Double {
        let serverPerTxn = max(fencedTxnSeconds - roundTripSeconds, fencedTxnSeconds * 0.1)
        let criticalPath = Double(longestChain) * (fencedTxnSeconds + serverPerTxn * criticalPathServerShare)
        let serverWork = Double(longestChain) * serverPerTxn + Double(records) * serverPerTxn * serverSharePerRecord
        return max(criticalPath, serverWork)
    }

    public init(
        roundTripSeconds: Double, fencedTxnSeconds: Double, scanSeconds: Double, backupSeconds: Double?, records: Int,
        longestChain: Int, longestChainKind: String, checkReadsEveryKey: Bool, server: EtcdVersion? = nil
    ) {
        self.roundTripSeconds = roundTripSeconds
        self.fencedTxnSeconds = fencedTxnSeconds
        self.scanSeconds = scanSeconds
        self.backupSeconds = backupSeconds
        self.records = records
        self.longestChain = longestChain
        self.longestChainKind = longestChainKind
        self.checkSeconds = checkReadsEveryKey ? scanSeconds * Self.checkShareOfScan : roundTripSeconds
        self.writeSeconds = Self.writeSeconds(
            records: records, longestChain: longestChain, fencedTxnSeconds: fencedTxnSeconds, roundTripSeconds: roundTripSeconds,
            serverSharePerRecord: Self.serverSharePerRecord(for: server))
    }
}

/// The latencies a forecast needs, measured with requests that change nothing.
public struct MeasuredLatency: Sendable, Hashable {
    public var roundTripSeconds: Double
    public var fencedTxnSeconds: Double
    /// The etcd answering (its status), nil where the store does not say.
    public var server: EtcdVersion?

    /// Pairs of requests that change nothing, after one pair that is not counted (it may open
    /// a connection): a count-only read of one key, and a txn whose compare (the lock key's
    /// version below zero) never holds, carrying a put as a record's txn does. etcd checks a
    /// txn's permissions before its compare: a user without write permission gets
    /// `permissionDenied`, and the forecast is made without it.
    /// `recordBytes`: a typical record's size, so the txn carries what a record's does (its
    /// value and its lane cursor).
    ///
    /// In bursts of `samples` pairs, until one is calm (`Burst.isCalm`), at most `bursts`
    /// of them `pause` apart; then the calmest. The probe runs right after a scan, and etcd
    /// is not itself for a second or two after serving every key (measured on 3.1.4 at 1M
    /// keys: latencies twice their usual with spikes of 10–50 ms until about a second after
    /// the scan's last page): a forecast made from that moment was 2.3× and 2.9× what the
    /// writes took. A calm etcd answers the first burst, at no cost in time. A `stop` asked
    /// for ends the waiting after the burst in flight, so Ctrl-C is not held up by it.
    public static func measure(
        store: any KeyValueService, namespace: Namespace, recordBytes: Int, samples: Int = 15, bursts: Int = 8,
        pause: Duration = .milliseconds(250), stop: StopSignal = StopSignal(), logger: Logger
    ) throws(EtcdError) -> MeasuredLatency {
        let read = RangeRequest(key: namespace.lockKey, countOnly: true)
        let txn = TxnRequest(
            compare: [Compare(key: namespace.lockKey, .less, .version(0)), Compare(key: namespace.stateKey, .less, .modRevision(0))],
            success: [
                .put(PutRequest(key: namespace.lockKey, value: [UInt8](repeating: 0x61, count: max(0, recordBytes)))),
                .put(PutRequest(key: namespace.laneKey(LaneID(kind: "probe")), value: [UInt8](repeating: 0x61, count: 80))),
            ])
        _ = try store.range(read)
        _ = try store.txn(txn)
        var taken: [Burst] = []
        while taken.isEmpty || (taken.count < bursts && !taken.last!.isCalm && !stop.isStopped) {
            if !taken.isEmpty { ContinuousClockSleep.sleep(for: pause) }
            var burst = Burst()
            for _ in 0..<max(1, samples) {
                burst.reads.append(try timed { () throws(EtcdError) in _ = try store.range(read) })
                burst.txns.append(try timed { () throws(EtcdError) in _ = try store.txn(txn) })
            }
            taken.append(burst)
        }
        let chosen = Burst.calmest(taken)
        let server = try? store.status().serverVersion
        let latency = MeasuredLatency(roundTripSeconds: typical(chosen.reads), fencedTxnSeconds: typical(chosen.txns), server: server)
        // What the forecast rests on, for an operator asking why it was off.
        logger.debug(
            "measured latencies",
            metadata: [
                "bursts": "\(taken.count)", "calm": "\(chosen.isCalm)",
                "roundTripMs": "\(describe(chosen.reads))", "fencedTxnMs": "\(describe(chosen.txns))",
                "typicalRoundTripMs": "\(latency.roundTripSeconds * 1000)", "typicalFencedTxnMs": "\(latency.fencedTxnSeconds * 1000)",
            ])
        return latency
    }

    /// One burst of the probe: its reads' and txns' latencies (seconds).
    struct Burst: Equatable {
        var reads: [Double] = []
        var txns: [Double] = []

        /// No sample of either kind past `stallCap` times its kind's median, nor a stall of
        /// less than a millisecond (a store answering in microseconds jitters by more than
        /// 4×, and it costs a forecast nothing): etcd answered as it usually does, its
        /// disk's ordinary tail included.
        var isCalm: Bool {
            [reads, txns].allSatisfy { values in
                guard let slowest = values.max() else { return true }
                let usual = values.median
                return slowest <= max(usual * stallCap, usual + 0.001)
            }
        }

        /// The first calm burst; else the one whose txns were fastest (an etcd that is busy
        /// only ever answers slower).
        static func calmest(_ bursts: [Burst]) -> Burst {
            bursts.first(where: \.isCalm) ?? bursts.min { typical($0.txns) < typical($1.txns) } ?? Burst()
        }
    }

    /// How many times their median a sample counts for at most in `typical`, and may take in
    /// a calm burst.
    static let stallCap = 4.0

    /// The mean of the samples, each counted as at most `stallCap` times their median.
    /// A mean, not the median: the write phase is the sum of thousands of txns' latencies,
    /// and a disk's fsyncs have a long tail that a median leaves out (2,000 lone fenced txns
    /// at loopback on etcd 3.1.4: mean 1.2× the median). Capped: a burst lasts a few
    /// hundredths of a second, so a lone stall of etcd's in it would otherwise move the
    /// forecast of a run of minutes by as much as the stall's share of the burst (a `migrate`
    /// on etcd 3.4 at 1M keys forecast +129% from a plain mean of 30 samples).
    static func typical(_ values: some Collection<Double>) -> Double {
        guard !values.isEmpty else { return 0 }
        let cap = values.median * stallCap
        return values.reduce(0) { $0 + min($1, cap) } / Double(values.count)
    }

    /// Samples in milliseconds to a hundredth, smallest first.
    private static func describe(_ values: some Collection<Double>) -> String {
        "\(values.sorted().map { ($0 * 100_000).rounded() / 100 })"
    }

    private static func timed(_ body: () throws(EtcdError) -> Void) throws(EtcdError) -> Double {
        let start = ContinuousClock.now
        try body()
        return seconds(ContinuousClock.now - start)
    }
}

/// A duration in seconds, for arithmetic and JSON.
func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}

extension Collection<Double> {
    /// The middle value (the mean of the two middle ones for an even count); 0 when empty.
    public var median: Double {
        guard !isEmpty else { return 0 }
        let sorted = self.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}
