import EtcdGateway
import EtcdModel
import Foundation
import Synchronization

/// A generated 1.4.8 cluster (`pachmigrate-bench generate`: records of real kinds, jobs
/// with worker status, index keys), as key-values. `largeRecords`: the percent of jobs and
/// pipelines given a long transform script, of 4 KiB up to `largestBytes`.
public func generatedCluster(keys: Int, seed: Int = 1, largeRecords: Double = 0, largestBytes: Int = 262_144) throws -> [KeyValue] {
    let directory = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let bench = URL(fileURLWithPath: pachmigrateBinary).deletingLastPathComponent().appendingPathComponent("pachmigrate-bench").path
    let dump = directory + "/cluster.jsonl"
    _ = try runCommand(
        bench,
        ["generate", "--keys", "\(keys)", "--seed", "\(seed)", "--large-records", "\(largeRecords)", "--largest-bytes", "\(largestBytes)", dump])
    return try SampleData.keyValues(dump)
}

/// Polls every member's alarms and backend size from a thread of its own while a run goes,
/// so that a test sees an alarm that was raised and cleared between two of its own reads.
public final class SpaceWatch: @unchecked Sendable {
    private let clients: [EtcdClient]
    private let done = Atomic<Bool>(false)
    private let seen = Mutex<(alarms: Set<String>, peak: Int64, reads: Int)>(([], 0, 0))
    private let finished = DispatchSemaphore(value: 0)

    /// `credentials`: a root user's where auth is on (alarms and status need it on 3.1).
    public init(endpoints: [String], credentials: EtcdClient.Credentials? = nil) throws {
        clients = try endpoints.map {
            try EtcdClient(
                configuration: .init(endpoints: [$0], requestTimeout: .seconds(5), credentials: credentials), logger: testLogger)
        }
        let thread = Thread { [self] in
            defer { finished.signal() }
            while !done.load(ordering: .acquiring) {
                for client in clients {
                    let alarms = (try? client.alarms()) ?? []
                    let size = (try? client.status().dbSize) ?? 0
                    seen.withLock { s in
                        for alarm in alarms { s.alarms.insert(alarm.kind.rawValue) }
                        s.peak = max(s.peak, size)
                        s.reads += 1
                    }
                }
                usleep(10_000)
            }
        }
        thread.start()
    }

    /// Stops polling; returns every alarm seen, the largest backend and how many reads.
    public func stop() -> (alarms: Set<String>, peak: Int64, reads: Int) {
        done.store(true, ordering: .releasing)
        finished.wait()
        return seen.withLock { $0 }
    }
}
