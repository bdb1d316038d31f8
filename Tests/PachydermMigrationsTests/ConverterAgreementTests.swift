import EtcdGateway
import EtcdTestSupport
import MigrationEngine
import Testing

@testable import PachydermMigrations

/// `convert` (offline) and `plan`/`migrate` (live) go through one `RecordConverter`: for
/// the same record they write the same value and say the same things.
@Suite("Offline and live conversion agree")
struct ConverterAgreementTests {
    @Test(arguments: [("busy", false), ("busy", true), ("at-rest", false)])
    func sameValuesAndNotes(sample: String, openCommits: Bool) throws {
        let plan = try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")
        let kvs = try SampleData.keyValues(before: sample)
        let converted = OfflineConverter(plan: plan, writeOpenCommits: openCommits).convert(kvs)
        let (output, report) = (converted.output, converted.report)
        let live = PachydermRecordMigration(layout: layout, plan: plan, allowOpenCommits: openCommits)
        let offlineValues = Dictionary(output.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        let offlineNotes = Dictionary(grouping: report.notes, by: \.key)
        var records = 0
        var openCommitNotes = 0
        for kv in kvs where live.lane(of: kv.key) != nil {
            records += 1
            let conversion = try live.convert(kv)
            let value: [UInt8] = if case .rewrite(let new) = conversion.action { new } else { kv.value }
            #expect(value == offlineValues[kv.key], "\(kv.key.printable)")
            #expect(conversion.notes == offlineNotes[kv.key.printable, default: []], "\(kv.key.printable)")
            #expect(conversion.companions.count == (openCommits ? conversion.notes.count(where: { $0.message.hasPrefix("open commit") }) : 0))
            openCommitNotes += conversion.notes.count(where: { $0.message.hasPrefix("open commit") })
        }
        #expect(records == report.recordsRead)
        #expect(openCommitNotes == (sample == "busy" ? 2 : 0))
        // An open commit is the same kind of note on both paths: a warning when its entry is
        // not written, a normalization when it is.
        let kinds = Set(report.notes.filter { $0.message.hasPrefix("open commit") }.map(\.kind))
        #expect(kinds == (sample == "busy" ? [openCommits ? .normalized : .warning] : []))
    }

    @Test func failuresAreStructuredTheSameWay() throws {
        let plan = try VersionPlanner.plan(from: "1.4.8", to: "1.5.0")
        var kv = try #require(try SampleData.keyValues(before: "at-rest").first { layout.lane(ofRecord: $0.key) })
        kv.value = Array("bogus:1 ".utf8)
        let offline = try #require(OfflineConverter(plan: plan).convert([kv]).report.failures.first)
        let live = PachydermRecordMigration(layout: layout, plan: plan)
        let error = #expect(throws: RecordConversionError.self) { try live.convert(kv) }
        #expect(error?.key == offline.key)
        #expect(error?.code?.rawValue == "unknownField" && error?.code?.rawValue == offline.error.code.description)
        #expect(error?.field == "bogus" && error?.field == offline.error.field)
        #expect(error?.message == offline.error.message)
    }
}

extension PachydermLayout {
    fileprivate func lane(ofRecord key: [UInt8]) -> Bool {
        if case .record = classify(key) { true } else { false }
    }
}
