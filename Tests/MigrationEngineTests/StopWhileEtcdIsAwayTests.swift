import EtcdGateway
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
}
