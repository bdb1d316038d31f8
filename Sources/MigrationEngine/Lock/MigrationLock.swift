import EtcdGateway
import EtcdModel
import Logging
import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

import PlatformShim

/// Who holds the lock, as stored (JSON) in the lock key. Operators read it with
/// `pachmigrate lock show` or `etcdctl get pachmigrate/lock`.
public struct LockHolder: Codable, Sendable, Hashable {
    public var holderID: String
    public var host: String
    public var pid: Int32
    public var podName: String?
    public var podNamespace: String?
    public var toolVersion: String
    public var command: String
    public var from: String?
    public var to: String?
    public var startedAt: String
    public var step: MigrationStep
    public var done: Int
    public var total: Int
    public var heartbeat: String
    /// Seconds since the epoch of `heartbeat`, for staleness checks without date parsing.
    public var heartbeatEpoch: Double
    public var leaseID: String
    public var ttl: Int64

    /// The holder record for a process about to take the lock.
    public static func current(
        command: String, toolVersion: String, from: String?, to: String?, identity: HolderIdentity = .thisProcess
    ) -> LockHolder {
        let now = Date()
        return LockHolder(
            holderID: UUID().uuidString.lowercased(), host: identity.host, pid: identity.pid, podName: identity.podName,
            podNamespace: identity.podNamespace, toolVersion: toolVersion, command: command, from: from, to: to,
            startedAt: timestamp(now), step: .starting, done: 0, total: 0, heartbeat: timestamp(now),
            heartbeatEpoch: now.timeIntervalSince1970, leaseID: "", ttl: 0)
    }

    public var who: String {
        var s = "\(host) pid \(pid)"
        if let podName { s += " (pod \(podNamespace.map { "\($0)/" } ?? "")\(podName))" }
        return s
    }
}

/// Who takes the lock: the process, its host and, where the caller knows it, the pod it runs
/// in. The caller reads its deployment (the environment of a Kubernetes pod, say); the engine
/// only records what it is given.
public struct HolderIdentity: Sendable, Hashable {
    public var host: String
    public var pid: Int32
    public var podName: String?
    public var podNamespace: String?

    public init(host: String, pid: Int32, podName: String? = nil, podNamespace: String? = nil) {
        self.host = host
        self.pid = pid
        self.podName = podName
        self.podNamespace = podNamespace
    }

    /// This process on this host, in no pod the engine knows of.
    public static var thisProcess: HolderIdentity {
        HolderIdentity(host: ProcessInfo.processInfo.hostName, pid: ProcessInfo.processInfo.processIdentifier)
    }
}

public struct LockOptions: Sendable {
    public var ttl: Int64
    /// How long to wait for a held lock before giving up; zero fails at once.
    public var wait: Duration

    public init(ttl: Int64 = 30, wait: Duration = .zero) {
        self.ttl = ttl
        self.wait = wait
    }
}

/// The migration lock: one well-known key created only if absent, bound to a lease that a
/// background heartbeat keeps alive. Its create revision is the fence every write compares.
public final class MigrationLock: Sendable {
    public let namespace: Namespace
    public let leaseID: Int64
    /// The lock key's create revision. A txn comparing it can only succeed while this
    /// process still holds the lock: once the lease is gone, the key is gone or re-created.
    public let fence: Int64
    let store: any KeyValueService
    let logger: Logger
    private let holder: Mutex<LockHolder>
    private let lostError: Mutex<EtcdError?> = Mutex(nil)
    private let stopped = Atomic<Bool>(false)
    private let keeper = Mutex<LeaseKeeper?>(nil)
    private let onLost: @Sendable (EtcdError) -> Void
    /// The run's stop, told while this lock is held (what a process that quits at once leaves).
    private let stop: StopSignal
    /// The revisions of the holder record's publications that etcd confirmed (a heartbeat's
    /// put takes a revision of its own: the check after the writes counts them as the run's).
    /// Held while a publication is in flight.
    private let published = Mutex<[Int64]>([])

    /// The fence as a txn compare.
    public var fenceCompare: Compare { Compare(key: namespace.lockKey, .equal, .createRevision(fence)) }

    public var isLost: Bool { lostError.withLock { $0 != nil } }
    /// The lease's TTL in seconds, as etcd granted it.
    var ttl: Int64 { holder.withLock { $0.ttl } }
    /// The step last reported: where a run that fails now stopped.
    var step: MigrationStep { holder.withLock { $0.step } }
    public var lossReason: EtcdError? { lostError.withLock { $0 } }
    /// Runs `body` with the revisions this lock's writes took after it was taken (its
    /// heartbeats, its steps), while none is in flight: a revision `body` reads from etcd is
    /// then past every publication that landed, and each of those is in the list (unless its
    /// reply was lost).
    func withPublicationsSettled<T: Sendable, E: Error>(_ body: ([Int64]) throws(E) -> T) throws(E) -> T {
        try published.withLock { (revisions) throws(E) -> T in try body(revisions) }
    }

    private init(
        store: any KeyValueService, namespace: Namespace, leaseID: Int64, fence: Int64, holder: LockHolder,
        stop: StopSignal, logger: Logger, onLost: @escaping @Sendable (EtcdError) -> Void
    ) {
        self.stop = stop
        self.store = store
        self.namespace = namespace
        self.leaseID = leaseID
        self.fence = fence
        self.holder = Mutex(holder)
        self.logger = logger
        self.onLost = onLost
    }

    /// Takes the lock or throws `.lockHeld` naming the holder (after waiting up to `options.wait`).
    /// A stop asked for while it waits ends the wait (`.stoppedBeforeWriting`).
    public static func acquire(
        store: any KeyValueService, namespace: Namespace, holder: LockHolder, options: LockOptions = .init(),
        stop: StopSignal = StopSignal(), logger: Logger, onLost: @escaping @Sendable (EtcdError) -> Void = { _ in }
    ) throws(MigrationError) -> MigrationLock {
        let deadline = ContinuousClock.now + options.wait
        var waited = false
        while true {
            try stop.checkBeforeWriting("the wait for the lock")
            let lease = try etcd("granting the lock's lease") { () throws(EtcdError) in try store.leaseGrant(ttl: options.ttl) }
            var record = holder
            record.leaseID = String(lease.id, radix: 16)
            record.ttl = lease.ttl
            let txn = TxnRequest(
                compare: [Compare(key: namespace.lockKey, .equal, .createRevision(0))],
                success: [.put(PutRequest(key: namespace.lockKey, value: JSONCoding.encode(record), lease: lease.id))],
                failure: [.range(RangeRequest(key: namespace.lockKey))])
            let response = try etcd("taking the lock") { () throws(EtcdError) in try store.txn(txn) }
            if response.succeeded {
                let lock = MigrationLock(
                    store: store, namespace: namespace, leaseID: lease.id, fence: response.header.revision,
                    holder: record, stop: stop, logger: logger, onLost: onLost)
                stop.holdsLock = true
                lock.startHeartbeat(ttl: lease.ttl)
                // A notice: a milestone an operator following the log looks for (README "JSON output").
                logger.notice(
                    "lock taken",
                    metadata: [
                        "event": "lock-taken", "lease": "\(record.leaseID)", "fence": .stringConvertible(lock.fence),
                        "ttlSeconds": .stringConvertible(lease.ttl),
                    ])
                return lock
            }
            _ = try? store.leaseRevoke(id: lease.id)
            var current: LockHolder?
            if case .range(let r)? = response.responses.first, let kv = r.kvs.first {
                current = try? JSONCoding.decode(LockHolder.self, kv.value, key: kv.key)
            }
            if ContinuousClock.now >= deadline {
                // What `lock show` would say of the same holder, for the way forward.
                let inspection = (try? LockInspection.read(store: store, namespace: namespace)).flatMap {
                    $0.holder.holderID == current?.holderID ? $0 : nil
                }
                var error = MigrationError(
                    .lockHeld, Self.heldMessage(current, inspection: inspection, namespace: namespace),
                    keys: [namespace.lockKey.printable])
                error.heldLock = inspection
                throw error
            }
            // Said once where an operator sees it, then at info level each second.
            let level: Logger.Level = waited ? .info : .notice
            waited = true
            logger.log(
                level: level, "lock held, waiting for its release",
                metadata: ["holder": "\(current?.who ?? "unknown")", "step": "\(current.map { "\($0.step)" } ?? "?")"])
            ContinuousClockSleep.sleep(for: min(.seconds(1), deadline - ContinuousClock.now))
        }
    }

    static func heldMessage(_ holder: LockHolder?, inspection: LockInspection?, namespace: Namespace) -> String {
        guard let holder else {
            return "the migration lock \(namespace.lockKey.printable) is held by a record this tool cannot read"
        }
        // The journal's count outlives the holder's last progress heartbeat.
        let progress =
            if let written = inspection?.journalWritten, let records = inspection?.journalRecords {
                "\(written) of \(records) records written"
            } else {
                "\(holder.done)/\(holder.total)"
            }
        return """
            the migration lock is held by \(holder.who), holder \(holder.holderID), running `\(holder.command)` \
            \(holder.from.map { "from \($0) " } ?? "")\(holder.to.map { "to \($0) " } ?? "")since \(holder.startedAt), \
            step \(holder.step) (\(progress)), last heartbeat \(holder.heartbeat).
            """
    }

    /// Updates the step and progress the next heartbeat publishes; a new step is published
    /// at once, so `lock show` never names a step the run has left (progress within a step
    /// is as fresh as the last heartbeat).
    public func report(step: MigrationStep? = nil, done: Int? = nil, total: Int? = nil) {
        let newStep = holder.withLock { h -> Bool in
            let changed = step.map { $0 != h.step } ?? false
            if let step { h.step = step }
            if let done { h.done = done }
            if let total { h.total = total }
            return changed
        }
        guard newStep, !isLost, !stopped.load(ordering: .acquiring) else { return }
        do throws(EtcdError) {
            try publishHeartbeat()
        } catch {
            logger.warning("could not publish the lock holder's step", metadata: ["error": "\(error)"])
        }
    }

    /// Checks the lock is still ours; throws `.leaseLost` if not.
    public func checkHeld() throws(MigrationError) {
        if let reason = lossReason {
            throw MigrationError(
                .leaseLost,
                "the lock's lease was lost (\(reason.message)); no further write was made. Run the same command again to resume.")
        }
    }

    /// Stops the heartbeat and revokes the lease, which deletes the lock key.
    /// Returns false when the lease could not be revoked (etcd did not answer): the lock then
    /// stays until the lease expires.
    @discardableResult
    public func release() -> Bool {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return true }
        keeper.withLock { $0 }?.stop()
        do {
            try store.leaseRevoke(id: leaseID)
            stop.holdsLock = false
            logger.info("lock released")
            return true
        } catch {
            // Expired or revoked already: etcd deleted the lock key with it.
            if error.code == .leaseNotFound {
                stop.holdsLock = false
                logger.info("lock released: its lease was already gone")
                return true
            }
            logger.warning("could not revoke the lock's lease; it expires by itself", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// The heartbeat: the lease kept alive from its own thread (`LeaseKeeper`, which retries
    /// a failed keep-alive within half a second and counts the lease lost once none succeeded
    /// for nearly its TTL), and after each keep-alive the holder record (step, progress,
    /// time) published under the fence.
    private func startHeartbeat(ttl: Int64) {
        let started = LeaseKeeper.start(
            store: store, leaseID: leaseID, ttl: ttl, logger: logger,
            onKeptAlive: { [self] in
                do throws(EtcdError) {
                    try publishHeartbeat()
                } catch {
                    logger.warning("lock heartbeat failed", metadata: ["error": "\(error)"])
                }
            },
            onLost: { [self] in markLost($0) })
        keeper.withLock { $0 = started }
    }

    private func publishHeartbeat() throws(EtcdError) {
        let record = holder.withLock { h -> LockHolder in
            let now = Date()
            h.heartbeat = timestamp(now)
            h.heartbeatEpoch = now.timeIntervalSince1970
            return h
        }
        let txn = TxnRequest(
            compare: [fenceCompare],
            // Naming the lease (not `ignoreLease`) keeps the key bound to it on every etcd:
            // 3.1's gateway drops the unknown `ignore_lease` and would detach it.
            success: [.put(PutRequest(key: namespace.lockKey, value: JSONCoding.encode(record), lease: leaseID))])
        let succeeded = try published.withLock { (revisions) throws(EtcdError) -> Bool in
            let response = try store.txn(txn)
            if response.succeeded { revisions.append(response.header.revision) }
            return response.succeeded
        }
        if !succeeded {
            markLost(EtcdError(.leaseNotFound, "the lock key was deleted or re-created by someone else"))
            keeper.withLock { $0 }?.stop()
        }
    }

    private func markLost(_ error: EtcdError) {
        let first = lostError.withLock { current -> Bool in
            guard current == nil else { return false }
            current = error
            return true
        }
        if first {
            logger.error("lock lost", metadata: ["reason": "\(error.message)"])
            onLost(error)
        }
    }
}

/// Blocking sleep for code that runs on its own threads (never on Swift's cooperative pool).
enum ContinuousClockSleep {
    static func sleep(for duration: Duration) { OSThread.sleep(for: duration) }
}

extension MigrationLock {
    /// Breaks a lock someone else holds: revokes its lease (which deletes the key), deletes
    /// exactly that lock key if it had no lease, and records who broke it in the history.
    /// The broken holder's writes fail from then on: they are fenced on the key's create revision.
    public static func breakLock(
        store: any KeyValueService, namespace: Namespace, held: KeyValue, holder: LockHolder, by who: String, detail: String,
        logger: Logger
    ) throws(MigrationError) {
        if held.lease != 0 { _ = try? store.leaseRevoke(id: held.lease) }
        let journal = JournalReader(store: store, namespace: namespace)
        let entry = HistoryEntry(
            event: .lockBreak, at: timestamp(), who: who, from: holder.from, to: holder.to, detail: detail)
        _ = try etcd("breaking the lock") { () throws(EtcdError) in
            try store.txn(
                TxnRequest(
                    compare: [Compare(key: namespace.lockKey, .equal, .createRevision(held.createRevision))],
                    success: [.deleteRange(DeleteRangeRequest(key: namespace.lockKey))]))
        }
        _ = try etcd("recording the lock break") { () throws(EtcdError) in
            try store.txn(
                TxnRequest(success: [.put(PutRequest(key: journal.newHistoryKey(runID: "break"), value: JSONCoding.encode(entry)))]))
        }
        logger.notice("lock broken", metadata: ["holder": "\(holder.who)", "by": "\(who)"])
    }
}
