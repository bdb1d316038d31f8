import EtcdGateway
import Foundation
import Testing

@testable import MigrationEngine

/// The run's state and the lock's holder record stay on clusters between versions of the
/// tool: their step is typed in memory and the same string on the wire.
@Suite("Journal and lock records on the wire")
struct JournalWireFormatTests {
    /// A run state as written before the step was typed (keys sorted, as `JSONCoding` writes them).
    private let oldRunState = #"""
        {"backupPath":"\/backup\/b.jsonl","from":"1.4.8","records":12,"runID":"run-1","startRevision":7,\#
        "startedAt":"2026-01-01T00:00:00Z","status":"running","step":"rewrite","to":"1.5.0","updatedAt":"2026-01-01T00:01:00Z"}
        """#

    /// A lock holder record as written before the step was typed.
    private let oldHolder = #"""
        {"command":"pachmigrate migrate","done":3,"from":"1.4.8","heartbeat":"2026-01-01T00:01:00Z","heartbeatEpoch":1767225660.5,\#
        "holderID":"h-1","host":"node-a","leaseID":"1f","pid":42,"podName":"job-x","podNamespace":"pach","startedAt":"2026-01-01T00:00:00Z",\#
        "step":"backup","to":"1.5.0","toolVersion":"0.1.0","total":9,"ttl":30}
        """#

    @Test func aRunStateWrittenBeforeTheStepWasTypedStillReads() throws {
        let state = try JSONCoding.decode(RunState.self, Array(oldRunState.utf8), key: Array("pachmigrate/state".utf8))
        #expect(state.step == .rewrite)
        #expect(state.status == .running)
        #expect(state.records == 12)
        // Written back, it is the same document.
        #expect(String(decoding: JSONCoding.encode(state), as: UTF8.self) == oldRunState)
    }

    @Test func aLockHolderWrittenBeforeTheStepWasTypedStillReads() throws {
        let holder = try JSONCoding.decode(LockHolder.self, Array(oldHolder.utf8), key: Array("pachmigrate/lock".utf8))
        #expect(holder.step == .backup)
        #expect(holder.who == "node-a pid 42 (pod pach/job-x)")
        #expect(String(decoding: JSONCoding.encode(holder), as: UTF8.self) == oldHolder)
    }

    /// A newer tool may name a step this one does not know: the record still reads.
    @Test func aStepThisVersionDoesNotKnowStillReads() throws {
        let newer = oldRunState.replacingOccurrences(of: #""step":"rewrite""#, with: #""step":"settle""#)
        let state = try JSONCoding.decode(RunState.self, Array(newer.utf8), key: Array("pachmigrate/state".utf8))
        #expect(state.step.rawValue == "settle")
        #expect(state.step != .rewrite)
    }

    /// Lane cursor keys as earlier versions wrote them (the lane's name after `lanes/`) read
    /// back as the lanes they name, and those lanes make the same keys: a run an earlier
    /// version left half done resumes every lane where it stopped.
    @Test(arguments: [
        ("pachmigrate/lanes/repos", LaneID(kind: "repos")),
        ("pachmigrate/lanes/commits/images", LaneID(kind: "commits", group: "images")),
        ("pachmigrate/lanes/branches/edges-2", LaneID(kind: "branches", group: "edges-2")),
    ])
    func aLaneCursorKeyWrittenBeforeLanesWereTypedStillReads(key: String, lane: LaneID) throws {
        let store = InMemoryKeyValueService()
        let cursor = #"{"lastKey":"k","lastRevision":7,"written":3}"#
        _ = try store.txn(TxnRequest(success: [.put(PutRequest(key: Array(key.utf8), value: Array(cursor.utf8)))]))
        let cursors = try JournalReader(store: store, namespace: Namespace()).laneCursors()
        #expect(cursors == [lane: LaneCursor(written: 3, lastKey: "k", lastRevision: 7)])
        #expect(Namespace().laneKey(lane) == Array(key.utf8))
        #expect(lane.name == String(key.dropFirst("pachmigrate/lanes/".count)))
    }

    /// An interrupted run is recorded `failed`, its message led by the code `interrupted`: a
    /// resume tells it from a run that failed.
    @Test func anInterruptedRunIsToldFromAFailedOne() throws {
        var state = try JSONCoding.decode(RunState.self, Array(oldRunState.utf8), key: Array("pachmigrate/state".utf8))
        #expect(state.failureCode == nil)
        state.status = .failed
        state.message = "interrupted: stopped on request after 3 of 12 records; run the same command again to resume"
        #expect(state.failureCode == .interrupted)
        #expect(UnfinishedRun(state, cursors: [:]).interrupted)
        state.message = "foreignWrite: someone else wrote to the cluster during the migration: a was deleted."
        #expect(state.failureCode == .foreignWrite)
        #expect(!UnfinishedRun(state, cursors: [:]).interrupted)
        state.message = "no code: here"
        #expect(state.failureCode == nil)
    }

    @Test func theHolderNamesTheIdentityItIsGiven() {
        let identity = HolderIdentity(host: "node-b", pid: 7, podName: "migrate-abc", podNamespace: "pachyderm")
        let holder = LockHolder.current(command: "migrate", toolVersion: "t", from: "1.4.8", to: "1.5.0", identity: identity)
        #expect(holder.host == "node-b" && holder.pid == 7)
        #expect(holder.who == "node-b pid 7 (pod pachyderm/migrate-abc)")
        #expect(holder.step == .starting)
    }
}
