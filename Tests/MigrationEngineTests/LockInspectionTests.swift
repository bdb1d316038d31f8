import EtcdGateway
import EtcdTestSupport
import Foundation
import MigrationEngine
import Testing

/// An etcd whose gateway has no lease time-to-live, as 3.1.4's may not.
private struct NoTimeToLive: ForwardingKeyValueService {
    let base: InMemoryKeyValueService
    func leaseTimeToLive(id: Int64, keys: Bool) throws(EtcdError) -> LeaseTimeToLiveResponse {
        throw EtcdError(.unsupported, "no time-to-live here")
    }
}

@Suite("Lock inspection")
struct LockInspectionTests {
    private func holder(pid: Int32 = ProcessInfo.processInfo.processIdentifier) -> LockHolder {
        var holder = LockHolder.current(command: "pachmigrate migrate", toolVersion: "t", from: "1.4.8", to: "1.5.0")
        holder.pid = pid
        return holder
    }

    @Test func freeLockIsNil() throws {
        #expect(try LockInspection.read(store: InMemoryKeyValueService(), namespace: Namespace()) == nil)
    }

    @Test func leaseTimeComesFromEtcdWhereItAnswers() throws {
        let store = InMemoryKeyValueService()
        let lock = try MigrationLock.acquire(
            store: store, namespace: Namespace(), holder: holder(), options: LockOptions(ttl: 30), logger: testLogger)
        defer { lock.release() }
        let inspection = try #require(try LockInspection.read(store: store, namespace: Namespace()))
        #expect(inspection.leaseRemainingSource == .etcd)
        #expect(inspection.leaseRemainingSeconds == 30)
        #expect(inspection.leaseTimeUnavailable == nil)
        #expect(!inspection.stale)
        #expect(inspection.holderProcessGone == false)
    }

    /// The run's stop knows while the lock is held: a process that quits at once says from it
    /// whether it leaves the lock held.
    @Test func theRunsStopKnowsWhileTheLockIsHeld() throws {
        let store = InMemoryKeyValueService()
        let stop = StopSignal()
        #expect(!stop.holdsLock)
        let lock = try MigrationLock.acquire(
            store: store, namespace: Namespace(), holder: holder(), options: LockOptions(ttl: 30), stop: stop, logger: testLogger)
        #expect(stop.holdsLock)
        #expect(lock.release())
        #expect(!stop.holdsLock)

        let again = try MigrationLock.acquire(
            store: store, namespace: Namespace(), holder: holder(), options: LockOptions(ttl: 30), stop: stop, logger: testLogger)
        // Revoked by someone else (`lock break`): etcd deleted the lock with it.
        try store.leaseRevoke(id: again.leaseID)
        #expect(again.release())
        #expect(!stop.holdsLock)
    }

    // TTL 300: the holder's heartbeat (every TTL/3) does not move again during the test, as
    // it could with 30 on a loaded machine.
    @Test(arguments: [(0.0, Int64(300), false), (120.0, 180, false), (299.5, 1, false), (601.0, 0, true)])
    func withoutTimeToLiveTheLeaseIsEstimatedFromTheHeartbeat(age: Double, expected: Int64, stale: Bool) throws {
        let base = InMemoryKeyValueService()
        let lock = try MigrationLock.acquire(
            store: base, namespace: Namespace(), holder: holder(), options: LockOptions(ttl: 300), logger: testLogger)
        defer { lock.release() }
        let store = NoTimeToLive(base: base)
        // Read again if the holder's first heartbeat landed between the two reads.
        var heartbeat: Double
        var inspection: LockInspection
        repeat {
            heartbeat = try #require(try JournalReader(store: store, namespace: Namespace()).lockHolder()).holder.heartbeatEpoch
            inspection = try #require(try LockInspection.read(store: store, namespace: Namespace(), now: heartbeat + age))
        } while inspection.holder.heartbeatEpoch != heartbeat
        #expect(inspection.leaseRemainingSource == .holderHeartbeat)
        #expect(inspection.leaseRemainingSeconds == expected)
        #expect(inspection.leaseTimeUnavailable?.contains("cannot report") == true)
        #expect(inspection.stale == stale)
    }

    @Test func holderWhoseProcessIsGoneFromThisHostIsSaidSo() throws {
        let store = InMemoryKeyValueService()
        // No process has this pid: Linux pids stay below 2^22.
        let lock = try MigrationLock.acquire(
            store: store, namespace: Namespace(), holder: holder(pid: Int32.max - 1), logger: testLogger)
        defer { lock.release() }
        let here = try #require(try LockInspection.read(store: store, namespace: Namespace()))
        #expect(here.holderProcessGone == true)
        #expect(here.stale, "a fresh heartbeat from a holder known to be gone")
        let elsewhere = try #require(try LockInspection.read(store: store, namespace: Namespace(), hostName: "another-pod"))
        #expect(elsewhere.holderProcessGone == nil)
        #expect(!elsewhere.stale)
    }

    /// A run killed on this host (its terminal closed, say) and run again at once meets its
    /// own lock: the refusal carries the inspection that tells the holder is gone and when
    /// etcd frees the lock (the CLI words it: `CLIWordingTests`).
    @Test func aRefusalByAHolderGoneFromThisHostCarriesItsInspection() throws {
        let store = InMemoryKeyValueService()
        let dead = try MigrationLock.acquire(
            store: store, namespace: Namespace(), holder: holder(pid: Int32.max - 1), logger: testLogger)
        defer { dead.release() }
        let error = #expect(throws: MigrationError.self) {
            try MigrationLock.acquire(store: store, namespace: Namespace(), holder: holder(), logger: testLogger)
        }
        #expect(error?.code == .lockHeld)
        let held = try #require(error?.heldLock)
        #expect(held.holder.pid == Int32.max - 1)
        #expect(held.holderProcessGone == true)
        #expect((0...30).contains(held.leaseRemainingSeconds), "\(held.leaseRemainingSeconds)")
    }
}
