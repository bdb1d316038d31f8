import EtcdGateway
import MigrationEngine
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
}
