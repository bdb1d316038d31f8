import EtcdGateway
import EtcdTestSupport
import Foundation
import Testing

/// How many extra copies of the at-rest sample's records the scaled cluster holds:
/// `$PACHMIGRATE_SCALE`, else 1 (CI: 1,016 records); `Scripts/reliability` uses 10 (5,588).
let clusterScale = ProcessInfo.processInfo.environment["PACHMIGRATE_SCALE"].flatMap(Int.init) ?? 1

@Suite("A bigger cluster under compound faults")
struct ScaledClusterTests {
    /// SIGKILL at a seeded instant, then the rerun survives an etcd restart at another
    /// seeded instant: the end state equals an uninterrupted run of the bigger cluster.
    @Test(arguments: 0..<max(1, faultSeedCount / 5))
    func killedThenRestartedEtcdStillEqualsAnUninterruptedRun(seed: Int) async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            try client.seed(try scaledSample(clusterScale))
            let expectation = MigrationExpectation(
                client: client, before: try pachydermState(client),
                counts: SampleServer.atRestCounts.mapValues { $0 * (clusterScale + 1) })
            var generator = SeededGenerator(seed: UInt64(1000 + seed))
            // Within the shortest first run seen, so that the kill lands mid-run.
            let killAfter = UInt32.random(in: 200_000...900_000, using: &generator)
            let restartAfter = UInt32.random(in: 0...1_000_000, using: &generator)
            let replay =
                "seed \(seed), scale \(clusterScale): killed after \(killAfter / 1000) ms, etcd restarted \(restartAfter / 1000) ms into the rerun"

            let first = try PachmigrateProcess(["migrate", "--no-backup", "--lock-ttl", "5", "--endpoints", server.endpoint])
            usleep(killAfter)
            first.signal(SIGKILL)
            let killed = first.wait()
            #expect(
                killed.status == SIGKILL && first.process.terminationReason == .uncaughtSignal,
                "\(replay): the first run ended before the SIGKILL (\(killed.status)): \(killed.stderr.suffix(1000))")
            #expect(try JournalFacts(client).version() == nil, "\(replay): the killed run had already finished")

            let rerun = try PachmigrateProcess(["migrate", "--no-backup", "--wait-lock", "60s", "--endpoints", server.endpoint])
            // Once the rerun holds the lock (the dead run's lease has expired), etcd goes down
            // for a second at a seeded instant.
            let holding = eventually(timeout: 30) {
                !rerun.process.isRunning
                    || (try? client.range(RangeRequest(key: bytes("pachmigrate/lock"))).kvs.first)
                        .map { text($0.value).contains("\"pid\":\(rerun.pid)") } == true
            }
            #expect(holding && rerun.process.isRunning, "\(replay): the rerun never held the lock: \(rerun.currentStderr.suffix(2000))")
            usleep(restartAfter)
            // The restart lands on the running rerun, not after it.
            #expect(rerun.process.isRunning, "\(replay): the rerun ended before etcd went down")
            server.shutdown()
            usleep(1_000_000)
            try server.restart()
            let result = rerun.wait(timeout: 300)
            // Ridden out (0), or, when etcd went down before the write phase, stopped
            // resumably (7); then the same command completes.
            #expect(result.status == 0 || result.status == 7, "\(replay): \(result.stderr.suffix(3000))")
            if result.status == 7 {
                #expect(result.stderr.contains("run the same command again"), "\(replay): \(result.stderr.suffix(3000))")
                let last = try pachmigrate(["migrate", "--no-backup", "--wait-lock", "60s", "--endpoints", server.endpoint], timeout: 300)
                #expect(last.status == 0, "\(replay): \(last.stderr.suffix(3000))")
            }
            try expectation.expectMigratedLikeAnUninterruptedRun(
                Comment(rawValue: replay), fault: "bigger cluster: SIGKILL, then etcd restart during the rerun")
        }
    }
}
