import EtcdGateway
import EtcdTestSupport
@testable import MigrationEngine
import Testing

/// The forecast's arithmetic: which bound governs where, and how the phases add up.
@Suite("Time forecast")
struct TimeForecastTests {
    /// Across a network the critical path governs: each record of the longest chain costs a
    /// whole txn there and back, whatever the other records do beside it.
    @Test(arguments: [0.0005, 0.002, 0.0035])
    func acrossANetworkTheLongestChainGoverns(roundTrip: Double) {
        let serverPart = 0.0006
        let write = TimeForecast.writeSeconds(
            records: 35_871, longestChain: 15_330, fencedTxnSeconds: roundTrip + serverPart, roundTripSeconds: roundTrip)
        let floor = 15_330 * (roundTrip + serverPart)
        #expect(write >= floor)
        // The apply of each record is all it adds to the floor.
        #expect(write < floor + 15_330 * serverPart)
    }

    /// On loopback etcd's own work governs: every record's apply, and a txn's server part
    /// per txn of the longest chain.
    @Test(arguments: [0.9, 1.4])
    func onLoopbackEtcdsWorkGoverns(share: Double) {
        let write = TimeForecast.writeSeconds(
            records: 100_000, longestChain: 1_000, fencedTxnSeconds: 0.0007, roundTripSeconds: 0.0001, serverSharePerRecord: share)
        let serverPerTxn = 0.0006
        #expect(abs(write - (1_000 * serverPerTxn + 100_000 * serverPerTxn * share)) < 1e-9)
        #expect(write > 1_000 * 0.0007 * 2)
    }

    /// etcd 3.1 and 3.2 cost more per record beside a lone txn's server part than 3.3 and
    /// later; a store that does not say its version gets 3.1's.
    @Test(arguments: [
        (EtcdVersion(3, 1, 4), 1.4), (EtcdVersion(3, 2, 7), 1.4), (EtcdVersion(3, 3, 27), 0.9), (EtcdVersion(3, 4, 23), 0.9),
        (EtcdVersion(3, 5, 0), 0.9),
    ])
    func applyShareFollowsTheServersVersion(version: EtcdVersion, share: Double) {
        #expect(TimeForecast.serverSharePerRecord(for: version) == share)
    }

    @Test func anUnknownVersionGetsTheOldestShare() {
        #expect(TimeForecast.serverSharePerRecord(for: nil) == TimeForecast.serverSharePerRecord(for: EtcdVersion(3, 1, 4)))
        // The version changes the loopback forecast, not the network's: the critical path
        // governs there whatever the share.
        let loopback = { (server: EtcdVersion?) in
            TimeForecast(
                roundTripSeconds: 0.0001, fencedTxnSeconds: 0.0007, scanSeconds: 1, backupSeconds: nil, records: 100_000,
                longestChain: 1_000, longestChainKind: "jobs", checkReadsEveryKey: false, server: server
            ).writeSeconds
        }
        #expect(loopback(EtcdVersion(3, 4, 23)) < loopback(nil))
        let networked = { (server: EtcdVersion?) in
            TimeForecast(
                roundTripSeconds: 0.002, fencedTxnSeconds: 0.003, scanSeconds: 1, backupSeconds: nil, records: 20_000,
                longestChain: 15_000, longestChainKind: "jobs", checkReadsEveryKey: false, server: server
            ).writeSeconds
        }
        #expect(networked(EtcdVersion(3, 4, 23)) == networked(nil))
    }

    /// More round trip never forecasts a shorter run; a longer chain never either.
    @Test func monotonicInRoundTripAndChain() {
        var previous = 0.0
        for roundTrip in stride(from: 0.0, through: 0.005, by: 0.0005) {
            let write = TimeForecast.writeSeconds(
                records: 10_000, longestChain: 4_000, fencedTxnSeconds: roundTrip + 0.0005, roundTripSeconds: roundTrip)
            #expect(write >= previous)
            previous = write
        }
        let short = TimeForecast.writeSeconds(records: 10_000, longestChain: 100, fencedTxnSeconds: 0.003, roundTripSeconds: 0.002)
        let long = TimeForecast.writeSeconds(records: 10_000, longestChain: 9_000, fencedTxnSeconds: 0.003, roundTripSeconds: 0.002)
        #expect(long > short)
    }

    /// A resumed run's check reads every key again, as the scan did; a fresh run's needs one
    /// read when no one else wrote.
    @Test(arguments: [true, false])
    func phasesAddUp(checkReadsEveryKey: Bool) {
        let forecast = TimeForecast(
            roundTripSeconds: 0.001, fencedTxnSeconds: 0.002, scanSeconds: 40, backupSeconds: 35, records: 151_000,
            longestChain: 151_000, longestChainKind: "jobs", checkReadsEveryKey: checkReadsEveryKey)
        #expect(forecast.writeSeconds >= 151_000 * 0.002)
        #expect(abs(forecast.checkSeconds - (checkReadsEveryKey ? 40 * TimeForecast.checkShareOfScan : 0.001)) < 1e-9)
        #expect(forecast.checkSeconds > 0 && forecast.checkSeconds <= 40)
        #expect(abs(forecast.totalSeconds - (40 + 35 + forecast.writeSeconds + forecast.checkSeconds)) < 1e-9)
        let noBackup = TimeForecast(
            roundTripSeconds: 0.001, fencedTxnSeconds: 0.002, scanSeconds: 40, backupSeconds: nil, records: 151_000,
            longestChain: 151_000, longestChainKind: "jobs", checkReadsEveryKey: checkReadsEveryKey)
        #expect(abs(noBackup.totalSeconds - (40 + noBackup.writeSeconds + noBackup.checkSeconds)) < 1e-9)
    }

    /// Samples and what the probe makes of them.
    static let probes: [(samples: [Double], typical: Double)] = [
        // Steady samples: their mean.
        ([1.0, 1.0, 1.0, 1.0], 1.0),
        // A disk's tail within the cap counts whole: the mean (2.0), not the median (1.5).
        ([1.0, 1.5, 1.5, 4.0], 2.0),
        // One stall of 50 among 29 of 1.6 (a probe like the one that doubled a 1M forecast
        // on 3.4): it counts as 6.4, so 1.76 where the plain mean says 3.21.
        (Array(repeating: 1.6, count: 29) + [50.0], (29 * 1.6 + 6.4) / 30),
        // Odd count: the middle sample is the median (2), so 100 counts as 8.
        ([2.0, 100.0, 1.0], (2.0 + 8.0 + 1.0) / 3),
        ([], 0.0),
    ]

    /// The probe's figure: the mean, with a lone stall counted as `stallCap` times the median
    /// and the tail within that kept whole.
    @Test(arguments: probes)
    func aLoneStallCountsAsAFewMedians(samples: [Double], expected: Double) {
        #expect(abs(MeasuredLatency.typical(samples) - expected) < 1e-9)
    }

    /// A stall moves the forecast of a long run by little: the 1M-key case that prompted the cap.
    @Test func aStallInTheProbeBarelyMovesAMillionKeyForecast() {
        let steadyTxn = Array(repeating: 0.0016, count: 30)
        let stalledTxn = Array(repeating: 0.0016, count: 29) + [0.05]
        let write = { (txns: [Double]) in
            TimeForecast.writeSeconds(
                records: 344_201, longestChain: 147_470, fencedTxnSeconds: MeasuredLatency.typical(txns),
                roundTripSeconds: 0.0008, serverSharePerRecord: 0.9)
        }
        #expect(write(stalledTxn) > write(steadyTxn))
        #expect(write(stalledTxn) < write(steadyTxn) * 1.25)
    }

    /// A burst is calm when no sample of either kind passes `stallCap` times its median, by
    /// a millisecond at least: the disk's ordinary tail passes, a stall does not. (Seconds,
    /// as `measure` records them.)
    @Test(arguments: [
        ([0.4, 0.5, 0.45], [0.8, 0.9, 1.0, 3.2], true),
        ([0.4, 0.5, 0.45], [0.8, 0.9, 1.0, 14.0], false),
        ([0.4, 0.5, 9.0], [0.8, 0.9, 1.0], false),
        // Microseconds (an in-memory store): jitter of 10× is not a stall.
        ([0.000_01, 0.000_01, 0.000_1], [0.000_02, 0.000_02, 0.000_3], true),
        ([0.000_3, 0.000_3, 0.0014], [0.000_6, 0.000_6, 0.000_7], false),
    ])
    func aBurstWithAStallIsNotCalm(reads: [Double], txns: [Double], calm: Bool) {
        #expect(MeasuredLatency.Burst(reads: reads, txns: txns).isCalm == calm)
    }

    /// A store that is never calm keeps the probe waiting through all its bursts; a stop
    /// asked for (Ctrl-C before the first write) ends that after the burst in flight.
    @Test func aStopEndsTheWaitForACalmBurst() throws {
        let store = InMemoryKeyValueService()
        // One txn in five stalls for 5 ms: every burst of 15 holds three stalls.
        store.beforeTxn.withLock { $0 = { n in if n % 5 == 0 { ContinuousClockSleep.sleep(for: .milliseconds(5)) } } }
        let txnsTaken = { (stop: StopSignal) throws -> Int in
            let before = store.txnCount
            _ = try MeasuredLatency.measure(
                store: store, namespace: Namespace(), recordBytes: 100, samples: 15, bursts: 8, pause: .milliseconds(1), stop: stop,
                logger: testLogger)
            return store.txnCount - before
        }
        // The uncounted first txn, then the bursts.
        #expect(try txnsTaken(StopSignal()) == 1 + 8 * 15)
        let stopped = StopSignal()
        stopped.stop(signal: 2)
        #expect(try txnsTaken(stopped) == 1 + 15)
    }

    /// The probe keeps the first calm burst; when none is, the one with the fastest txns
    /// (the probe right after a 1M-key scan: etcd slower, with spikes, for a second or so).
    @Test func theCalmestBurstCounts() {
        let busy = MeasuredLatency.Burst(reads: [1.2, 1.5, 30.0], txns: [1.8, 2.0, 45.0])
        let busier = MeasuredLatency.Burst(reads: [1.4, 1.6, 35.0], txns: [2.5, 2.6, 50.0])
        let calm = MeasuredLatency.Burst(reads: [0.4, 0.5, 0.45], txns: [0.8, 0.9, 1.0])
        #expect(MeasuredLatency.Burst.calmest([busy, busier, calm]) == calm)
        #expect(MeasuredLatency.Burst.calmest([calm, busy]) == calm)
        #expect(MeasuredLatency.Burst.calmest([busier, busy]) == busy)
    }
}
