import EtcdGateway
import EtcdTestSupport
import PachydermMigrations
import Testing

@testable import MigrationEngine

private func put(_ store: InMemoryKeyValueService, _ kvs: [(key: [UInt8], value: [UInt8])]) throws {
    for kv in kvs { _ = try store.txn(TxnRequest(success: [.put(PutRequest(key: kv.key, value: kv.value))])) }
}

/// The at-rest sample as Pachyderm 1.4.8 left it, or (`binary`) as converted to 1.5.0.
private func sampleStore(binary: Bool = false) throws -> InMemoryKeyValueService {
    var kvs = try SampleData.keyValues(SampleData.before("at-rest"))
    if binary {
        kvs = OfflineConverter(plan: try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")).convert(kvs).output
    }
    let store = InMemoryKeyValueService()
    try put(store, kvs.map { ($0.key, $0.value) })
    return store
}

private func stamp(_ store: InMemoryKeyValueService, _ version: String) throws {
    try put(store, [(Namespace().versionKey, Array(version.utf8))])
}

private func resolve(_ store: InMemoryKeyValueService, from: String? = nil) throws -> ResolvedMigration {
    try ResolvedMigration.resolve(store: store, layout: PachydermLayout(), namespace: Namespace(), from: from)
}

@Suite("Choosing the migration (plan and migrate)")
struct ResolutionTests {
    @Test func emptyClusterHasNothingToDo() throws {
        let resolved = try resolve(InMemoryKeyValueService())
        #expect(resolved.detected.source == .empty)
        #expect(resolved.plan == nil && resolved.migration == nil)
        #expect(resolved.nothingToDo == .noRecords)
    }

    @Test func textRecordsAreUpgradedFromWhatTheySay() throws {
        let resolved = try resolve(try sampleStore())
        #expect(resolved.detected.source == .records && resolved.detected.version == "1.4.x")
        let migration = try #require(resolved.migration)
        #expect(migration.plan.purpose == .upgrade)
        #expect(migration.fromVersion == "1.4.x" && migration.toVersion == "1.5.0")
        #expect(resolved.nothingToDo == nil)
    }

    @Test func fromFlagWinsOverDetection() throws {
        let resolved = try resolve(try sampleStore(), from: "1.4.8")
        #expect(resolved.migration?.fromVersion == "1.4.8")
    }

    @Test func unstampedBinaryIsPlannedAsARepair() throws {
        let resolved = try resolve(try sampleStore(binary: true))
        #expect(resolved.detected.source == .records && resolved.detected.version == "1.5.0")
        #expect(resolved.migration?.plan.purpose == .repair)
    }

    @Test func stampedTargetHasNothingToDo() throws {
        let store = try sampleStore(binary: true)
        try stamp(store, "1.5.0")
        let resolved = try resolve(store)
        #expect(resolved.detected.source == .stamp)
        #expect(resolved.migration == nil)
        #expect(resolved.plan?.needsRewrite == false)
        #expect(resolved.nothingToDo == .noRecordToRewrite)
    }

    @Test(arguments: ["9.9.9", "1.6.0", "garbage"])
    func unknownStampIsRefused(stamped: String) throws {
        let store = try sampleStore()
        try stamp(store, stamped)
        let error = #expect(throws: MigrationError.self) { try resolve(store) }
        #expect(error?.code == .unsupportedVersion)
        #expect(error?.message.contains(stamped) == true)
    }
}

@Suite("Readiness for the migrated release (wait)")
struct ReadinessTests {
    private func running(_ status: RunState.Status) -> [UInt8] {
        JSONCoding.encode(
            RunState(
                status: status, runID: "r", from: "1.4.8", to: "1.5.0", startRevision: 1, startedAt: "t", updatedAt: "t",
                step: .rewrite))
    }

    @Test func unstampedIsNotReady() throws {
        let journal = JournalReader(store: InMemoryKeyValueService(), namespace: Namespace())
        #expect(try journal.readiness(for: ["1.5.0"]) == .stampedOther(nil))
    }

    @Test func stampedAnotherVersionIsNotReady() throws {
        let store = InMemoryKeyValueService()
        try stamp(store, "1.4.8")
        #expect(try JournalReader(store: store, namespace: Namespace()).readiness(for: ["1.5.0"]) == .stampedOther("1.4.8"))
    }

    @Test(arguments: [RunState.Status.running, .failed])
    func unfinishedRunIsNotReady(status: RunState.Status) throws {
        let store = InMemoryKeyValueService()
        try stamp(store, "1.5.0")
        try put(store, [(Namespace().stateKey, running(status))])
        #expect(try JournalReader(store: store, namespace: Namespace()).readiness(for: ["1.5.0"]) == .runUnfinished(status))
    }

    @Test func heldLockIsNotReadyThenFreeIsReady() throws {
        let store = InMemoryKeyValueService()
        try stamp(store, "1.5.0")
        try put(store, [(Namespace().stateKey, running(.done))])
        let holder = LockHolder.current(command: "migrate", toolVersion: "t", from: "1.4.8", to: "1.5.0")
        let lock = try MigrationLock.acquire(
            store: store, namespace: Namespace(), holder: holder, options: LockOptions(ttl: 30), logger: testLogger)
        let journal = JournalReader(store: store, namespace: Namespace())
        guard case .locked(let seen) = try journal.readiness(for: ["1.5.0"]) else {
            Issue.record("expected the held lock to be reported")
            return
        }
        #expect(seen.holderID == holder.holderID)
        lock.release()
        #expect(try journal.readiness(for: ["1.5.0"]) == .ready)
    }
}

@Suite("Waiting for readiness")
struct ReadinessWaitTests {
    @Test func aReadyClusterEndsTheWaitAtOnce() throws {
        let store = InMemoryKeyValueService()
        try stamp(store, "1.5.0")
        var heard = 0
        let wait = JournalReader(store: store, namespace: Namespace())
            .waitUntilReady(for: ["1.5.0"], timeout: .seconds(5), interval: .seconds(1)) { _ in heard += 1 }
        #expect(wait.isReady)
        #expect(wait.waited < .seconds(1))
        #expect(heard == 0)
    }

    @Test func aTimeoutEndsTheWaitWithTheLastReasonHeardOnce() throws {
        var heard: [Result<Readiness, MigrationError>] = []
        let wait = JournalReader(store: InMemoryKeyValueService(), namespace: Namespace())
            .waitUntilReady(for: ["1.5.0"], timeout: .milliseconds(300), interval: .milliseconds(50)) { heard.append($0) }
        #expect(!wait.isReady)
        #expect(wait.waited >= .milliseconds(300))
        guard case .success(.stampedOther(nil)) = wait.last else {
            Issue.record("expected the missing stamp as the reason, got \(wait.last)")
            return
        }
        // Several looks, one change heard.
        #expect(heard.count == 1)
    }
}

@Suite("History counts")
struct HistoryCountTests {
    @Test(arguments: [
        ("repos", HistoryCount.Category.written, "repos"),
        ("kept-in-order-commits", .keptInOrder, "commits"),
        ("already-migrated-jobs", .alreadyMigrated, "jobs"),
    ])
    func keysParseAndFormatTheSame(key: String, category: HistoryCount.Category, kind: String) {
        let count = HistoryCount(parsing: key)
        #expect(count == HistoryCount(category, kind: kind))
        #expect(count.key == key)
    }

    @Test func anEntrysWrittenCountsLeaveTheOtherCategoriesOut() {
        let entry = HistoryEntry(
            event: .migrate, at: "", who: "", counts: ["jobs": 3, "kept-in-order-jobs": 2, "already-migrated-repos": 1, "commits": 4])
        #expect(entry.writtenCounts == ["jobs": 3, "commits": 4])
    }

    @Test func everyCollectionNamesItsKind() {
        #expect(Set(RecordKind.allCases.map(\.collection)).count == RecordKind.allCases.count)
        for kind in RecordKind.allCases {
            #expect(PachydermLayout().collectionPrefix(kind).starts(with: Array("pachyderm_".utf8)))
        }
    }
}
