import EtcdGateway
import Foundation
import Glibc
import MigrationEngine
import Synchronization
import Testing

/// A stop asked for while etcd does not answer (Ctrl-C on a run whose etcd hangs, or whose
/// port-forward dropped): the run ends at the call that failed. Retrying it would keep the
/// operator waiting up to the lock's TTL, and recording the stop would wait out the request
/// timeout once more for each record; the next run needs neither.
@Suite struct StopWhileEtcdIsAwayTests {
    @Test func aStopDuringTheWritesEndsAtTheUnansweredTxnAndTheRunResumes() throws {
        let reference = toyCluster()
        _ = try migrator(reference).run(options: MigrationOptions(backup: .none))

        let store = toyCluster()
        let stop = StopSignal()
        let writing = Atomic<Bool>(false)
        let failedAt = Mutex<Int?>(nil)
        let landedAfterTheFailure = Atomic<Bool>(false)
        store.beforeTxn.withLock {
            $0 = { (n: Int) throws(EtcdError) in
                guard writing.load(ordering: .relaxed), failedAt.withLock({ $0 == nil }) else { return }
                failedAt.withLock { $0 = n }
                stop.stop(signal: SIGINT)
                throw EtcdError(.timeout, "etcd did not answer within 10 s")
            }
        }
        var options = MigrationOptions(backup: .none)
        options.concurrency = 1
        let error = #expect(throws: MigrationError.self) {
            try migrator(store).run(options: options, stop: stop) { event in
                guard event.step == .rewrite else { return }
                if failedAt.withLock({ $0 != nil }) { landedAfterTheFailure.store(true, ordering: .relaxed) }
                if event.done >= 5 { writing.store(true, ordering: .relaxed) }
            }
        }
        #expect(error?.code == .interrupted)
        #expect(error?.message.contains("stopped on request after") == true, "\(error?.message ?? "")")
        // Neither retried (it would have landed) nor followed by a record of the failure.
        let resent = landedAfterTheFailure.load(ordering: .relaxed)
        #expect(!resent, "the unanswered txn was sent again")
        #expect(try JournalReader(store: store, namespace: Namespace()).state()?.status == .running)
        #expect(error?.lockLeftHeldSeconds == nil, "the lease was revoked")

        store.beforeTxn.withLock { $0 = nil }
        let resumed = try migrator(store).run(options: options)
        #expect(resumed.resumed)
        #expect(values(store, prefix: "app/") == values(reference, prefix: "app/"))
        #expect(laneOrder(store) == laneOrder(reference))
    }

    @Test func aStopWhileAScanReadGoesUnansweredIsAStopBeforeWriting() throws {
        let store = toyCluster()
        let before = values(store)
        let stop = StopSignal()
        let locked = Atomic<Bool>(false)
        store.beforeTxn.withLock { $0 = { (_: Int) throws(EtcdError) in locked.store(true, ordering: .relaxed) } }
        store.beforeRange.withLock {
            $0 = { (request: RangeRequest) throws(EtcdError) in
                guard locked.load(ordering: .relaxed), request.key.starts(with: Array("app/".utf8)) else { return }
                stop.stop(signal: SIGTERM)
                throw EtcdError(.timeout, "etcd did not answer within 10 s")
            }
        }
        let error = #expect(throws: MigrationError.self) {
            try migrator(store).run(options: MigrationOptions(backup: .none), stop: stop)
        }
        // Said as the stop it is (exit 143), not as etcd failing (exit 7).
        #expect(error?.code == .stoppedBeforeWriting)
        #expect(error?.signal == SIGTERM)
        #expect(error?.message.contains("etcd did not answer within 10 s") == true, "\(error?.message ?? "")")
        store.beforeRange.withLock { $0 = nil }
        #expect(values(store) == before)
        #expect(try JournalReader(store: store, namespace: Namespace()).history().isEmpty, "no record of the stop was attempted")
    }

    /// A restore that loses etcd while it lists the keys, after it unstamped the cluster,
    /// says the cluster is half restored and how to finish; with a stop asked, worded as the
    /// stop (exit 7). The same restore then finishes.
    @Test(arguments: [false, true])
    func aRestoreThatLosesEtcdHalfWaySaysHowToFinish(stopAsked: Bool) throws {
        let store = toyCluster()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("restore-away-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/backup.jsonl"
        _ = try migrator(store).run(options: MigrationOptions(backup: .file(path)))
        let backup = try DumpReader(path: path).readAll()

        // The restore's writes begin with the lock's txn and the unstamping one; the listing follows.
        let writesBefore = store.txnCount
        let stop = StopSignal()
        store.beforeRange.withLock {
            $0 = { [store] (request: RangeRequest) throws(EtcdError) in
                guard store.txnCount >= writesBefore + 2, request.keysOnly, request.key.starts(with: Array("app/".utf8)) else { return }
                if stopAsked { stop.stop(signal: SIGINT) }
                throw EtcdError(.timeout, "etcd did not answer within 10 s")
            }
        }
        let restorer = Restorer(store: store, namespace: Namespace(), prefixes: ToyMigration().backupPrefixes, logger: testLogger)
        let error = #expect(throws: MigrationError.self) { try restorer.restore(from: path, stop: stop) }
        #expect(error?.code == (stopAsked ? .interrupted : .store))
        #expect(error?.message.contains("the cluster is half restored") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("run the same restore command again to finish") == true, "\(error?.message ?? "")")

        store.beforeRange.withLock { $0 = nil }
        _ = try restorer.restore(from: path)
        #expect(
            values(store)
                == Dictionary(
                    uniqueKeysWithValues: backup.map { (String(decoding: $0.key, as: UTF8.self), String(decoding: $0.value, as: UTF8.self)) }))
    }
}
