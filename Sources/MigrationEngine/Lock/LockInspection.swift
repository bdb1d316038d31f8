import EtcdGateway

import EtcdModel
import PlatformShim

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The lock as an operator needs to judge it: who holds it, how fresh its heartbeat is, how
/// long its lease has left, whether its process still runs. `lock show`, `lock break` and
/// `status` word it; the staleness policy lives here.
public struct LockInspection: Sendable, Encodable {
    /// Where `leaseRemainingSeconds` comes from.
    public enum LeaseTimeSource: String, Sendable, Encodable {
        /// etcd's lease time-to-live.
        case etcd
        /// Estimated as heartbeat + TTL − now: the holder keeps its lease alive as often as it
        /// writes its heartbeat. Used where etcd does not answer (3.1.4's gateway may lack
        /// the call).
        case holderHeartbeat
    }

    public var holder: LockHolder
    public var heartbeatAgeSeconds: Int
    /// -1 once the lease is gone.
    public var leaseRemainingSeconds: Int64
    public var leaseRemainingSource: LeaseTimeSource
    /// Why etcd's own count is not shown, when it is not.
    public var leaseTimeUnavailable: String?
    public var stale: Bool
    /// True when the holder ran on this host and its process no longer exists; nil when this
    /// host cannot tell (another host or pod).
    public var holderProcessGone: Bool?
    /// The journal's account of the run, which outlives the holder: its step and how many of
    /// its records the lanes have written (the holder's own record may predate its first
    /// progress heartbeat).
    public var journalStep: MigrationStep?
    public var journalWritten: Int?
    public var journalRecords: Int?
    /// The lock key as read (its lease and create revision, which a lock break compares).
    public var record: KeyValue

    enum CodingKeys: String, CodingKey {
        case holder, heartbeatAgeSeconds, leaseRemainingSeconds, leaseRemainingSource, leaseTimeUnavailable, stale,
            holderProcessGone, journalStep, journalWritten, journalRecords
    }

    /// The heartbeat age after which a holder counts as stale: twice its TTL, at least 60 s.
    public static func staleThreshold(ttl: Int64) -> Double { Double(max(ttl * 2, 60)) }

    /// Nil when the lock is free.
    public static func read(
        store: any KeyValueService, namespace: Namespace, staleAfter: Double? = nil,
        now: Double = Date().timeIntervalSince1970, hostName: String = ProcessInfo.processInfo.hostName
    ) throws(MigrationError) -> LockInspection? {
        let journal = JournalReader(store: store, namespace: namespace)
        guard let held = try journal.lockHolder() else { return nil }
        let (holder, kv) = (held.holder, held.record)
        let age = max(0, now - holder.heartbeatEpoch)
        var source = LeaseTimeSource.etcd
        var remaining: Int64 = -1
        var unavailable: String?
        if kv.lease != 0 {
            do {
                remaining = try store.leaseTimeToLive(id: kv.lease, keys: false).ttl
            } catch {
                // Not knowing the lease's time must not hide the holder.
                source = .holderHeartbeat
                unavailable = error.code == .unsupported ? "this etcd cannot report a lease's time to live" : error.message
                remaining = max(0, Int64((holder.heartbeatEpoch + Double(holder.ttl) - now).rounded(.up)))
            }
        }
        var gone: Bool?
        if holder.host == hostName {
            gone = !Posix.processExists(holder.pid)
        }
        var inspection = LockInspection(
            holder: holder, heartbeatAgeSeconds: Int(age), leaseRemainingSeconds: remaining, leaseRemainingSource: source,
            // A holder known to be gone is stale whatever its last heartbeat says: `lock break`
            // then needs no --force for a migrator that was killed on this host.
            leaseTimeUnavailable: unavailable, stale: gone == true || age > (staleAfter ?? staleThreshold(ttl: holder.ttl)),
            holderProcessGone: gone, record: kv)
        if let state = try journal.state(), state.status == .running {
            inspection.journalStep = state.step
            inspection.journalRecords = state.records
            inspection.journalWritten = try journal.laneCursors().values.reduce(0) { $0 + $1.written }
        }
        return inspection
    }
}
