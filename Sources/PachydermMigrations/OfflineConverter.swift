import EtcdModel
import Logging
import MigrationEngine

/// What an offline conversion did, per kind, with every note and every failure.
public struct ConversionReport: Sendable, Hashable, CustomStringConvertible {
    public struct Failure: Sendable, Hashable {
        public var key: String
        public var error: RecordCodecError
    }
    /// Records converted from 1.4 text, per kind.
    public var converted: [RecordKind: Int] = [:]
    /// Records that were already 1.5.0 binary (re-encoded, normally to the same bytes).
    public var alreadyBinary: [RecordKind: Int] = [:]
    /// Keys the migration does not rewrite (index keys, repoRefCounts, scratch, workers…), copied unchanged.
    public var copiedUnchanged = 0
    /// `openCommits/<id>` entries added for open commits (only when asked for).
    public var openCommitsWritten = 0
    /// Every drop, normalization, disagreement and warning, in input order.
    public var notes: [MigrationNote] = []
    /// Every key that failed, with its error; never only the first.
    public var failures: [Failure] = []
    public var recordsRead = 0
    public var keysRead = 0

    public init() {}

    public var succeeded: Bool { failures.isEmpty }
    public var dropped: [MigrationNote] { notes.filter { $0.kind == .droppedField } }
    public var normalizations: [MigrationNote] { notes.filter { $0.kind == .normalized } }
    public var disagreements: [MigrationNote] { notes.filter { $0.kind == .disagreement } }
    public var warnings: [MigrationNote] { notes.filter { $0.kind == .warning } }

    public var description: String {
        var lines: [String] = []
        lines.append("keys read: \(keysRead); records: \(recordsRead); copied unchanged: \(copiedUnchanged)")
        for kind in RecordKind.allCases {
            let c = converted[kind, default: 0], b = alreadyBinary[kind, default: 0]
            if c + b > 0 { lines.append("  \(kind): \(c) converted from 1.4 text" + (b > 0 ? ", \(b) already 1.5 binary" : "")) }
        }
        if openCommitsWritten > 0 { lines.append("openCommits entries written: \(openCommitsWritten)") }
        lines.append(
            "dropped fields: \(dropped.count); normalizations: \(normalizations.count); "
                + "disagreements: \(disagreements.count); warnings: \(warnings.count); failures: \(failures.count)")
        for note in notes { lines.append("  \(note)") }
        if !failures.isEmpty {
            lines.append("FAILED keys (\(failures.count)):")
            for failure in failures { lines.append("  \(failure.error)") }
        }
        return lines.joined(separator: "\n")
    }
}

/// Converts a dump (JSON lines of etcd `KeyValue`s) of a 1.4.x cluster into the dump of
/// the same cluster at 1.5.0, without etcd. Records are converted in mod-revision order;
/// keys the migration does not rewrite are copied unchanged; the output is ordered by mod
/// revision ascending (stable: equal revisions keep their input order), so loading it in
/// order keeps each collection's relative order.
public struct OfflineConverter: Sendable {
    public var layout: PachydermLayout
    public var plan: MigrationPlan
    /// Write the `openCommits/<id>` entry 1.5.0 needs for each open commit (only on
    /// explicit request; otherwise each open commit is reported as a warning).
    public var writeOpenCommits: Bool
    public var logger: Logger

    public init(
        layout: PachydermLayout = PachydermLayout(), plan: MigrationPlan, writeOpenCommits: Bool = false,
        logger: Logger = Logger(label: "pachmigrate.convert")
    ) {
        self.layout = layout
        self.plan = plan
        self.writeOpenCommits = writeOpenCommits
        self.logger = logger
    }

    /// What `convert(_:)` made of a dump held in memory.
    public struct Conversion: Sendable {
        /// The output key-values, sorted by mod revision.
        public var output: [KeyValue]
        public var report: ConversionReport
    }

    /// Converts `kvs` (any order) and returns the output key-values sorted by mod revision.
    public func convert(_ kvs: [KeyValue]) -> Conversion {
        var report = ConversionReport()
        // Stable sort by mod revision: the input dump is normally sorted already.
        let ordered = kvs.enumerated().sorted { ($0.element.modRevision, $0.offset) < ($1.element.modRevision, $1.offset) }
            .map(\.element)
        var output: [KeyValue] = []
        output.reserveCapacity(ordered.count)
        let entries = Set(kvs.lazy.map(\.key).filter { layout.classify($0) == .openCommit })
        for kv in ordered {
            let converted = convertOne(kv, existingEntries: entries, report: &report)
            output.append(converted.value)
            if let extra = converted.openCommitEntry { output.append(extra) }
        }
        return Conversion(output: output, report: report)
    }

    /// One input key's output: its (converted or copied) value, plus the `openCommits`
    /// entry when one was asked for.
    struct ConvertedKey {
        var value: KeyValue
        var openCommitEntry: KeyValue?
    }

    /// `existingEntries`: the `openCommits/…` keys the input holds; an open commit that has
    /// one (1.5 binary a 1.5 pachd wrote) needs none written.
    func convertOne(_ kv: KeyValue, existingEntries: Set<[UInt8]>, report: inout ConversionReport) -> ConvertedKey {
        report.keysRead += 1
        let converter = RecordConverter(layout: layout, plan: plan, writeOpenCommits: writeOpenCommits)
        let converted: RecordConverter.Converted?
        do {
            converted = try converter.convert(key: kv.key, value: kv.value) {
                existingEntries.contains(layout.openCommitKey(forOpen: $0))
            }
        } catch {
            report.recordsRead += 1
            logger.error("cannot convert record", metadata: ["key": "\(error.key)", "error": "\(error.message)"])
            report.failures.append(.init(key: error.key, error: error))
            // Keep the original so the output is still a complete picture of the input.
            return ConvertedKey(value: kv)
        }
        guard let converted else {
            report.copiedUnchanged += 1
            return ConvertedKey(value: kv)
        }
        report.recordsRead += 1
        report.notes.append(contentsOf: converted.notes)
        if converted.read.sourceEncoding == .binary15 {
            report.alreadyBinary[converted.kind, default: 0] += 1
        } else {
            report.converted[converted.kind, default: 0] += 1
        }
        var result = ConvertedKey(value: kv)
        if case .rewrite(let value) = converted.action { result.value.value = value }
        if let entry = converted.openCommitEntry {
            // Right after its commit, same revision: loading the dump in order recreates
            // what 1.5.0's StartCommit would have written.
            result.openCommitEntry = KeyValue(
                key: entry.key, value: entry.value, createRevision: kv.modRevision, modRevision: kv.modRevision, version: 1)
            report.openCommitsWritten += 1
        }
        return result
    }

    /// The version a dump's records are at, told as `migrate` tells a cluster's
    /// (`ClusterInspection.detectVersion`): any 1.4 text record among the first `sample` of
    /// each kind means 1.4.x, only 1.5 binary means 1.5.0, none means an empty dump. A dump
    /// has no journal or stamp, so the records are all there is to go by.
    public static func detectVersion(
        dumpPath: String, layout: PachydermLayout = PachydermLayout(), sample: Int = 100
    ) throws(DumpError) -> DetectedVersion {
        let reader = try DumpReader(path: dumpPath)
        var sampled: [RecordKind: Int] = [:]
        var text = 0
        var binary = 0
        // One text record decides it; all-binary needs the sample of every kind.
        while text == 0, let kv = try reader.read() {
            guard case .record(let kind, _) = layout.classify(kv.key), sampled[kind, default: 0] < sample else { continue }
            sampled[kind, default: 0] += 1
            switch (try? RecordCodec.decode(kind: kind, key: kv.key, value: kv.value))?.encoding {
            case .text14: text += 1
            case .binary15: binary += 1
            case nil: break
            }
            if sampled.count == RecordKind.allCases.count, sampled.values.allSatisfy({ $0 >= sample }) { break }
        }
        if text > 0 {
            return DetectedVersion(
                version: "1.4.x", source: .records, detail: "its records are 1.4 text (gogo text, any 1.4.x patch release)",
                sampledText: text, sampledBinary: binary)
        }
        if binary > 0 {
            return DetectedVersion(
                version: "1.5.0", source: .records, detail: "every sampled record is already 1.5 binary", sampledBinary: binary)
        }
        return DetectedVersion(version: nil, source: .empty, detail: "no Pachyderm records under \(layout.pfsPrefix)/ and \(layout.ppsPrefix)/")
    }

    /// Reads the dump at `inputPath`, converts it, writes `outputPath` (+ `.sha256`).
    /// The output is written even when records failed (they are copied unchanged and listed
    /// in the report), so it can be inspected; callers decide what a failure means.
    ///
    /// Streams in constant memory when the input is ordered by mod revision (as etcd dumps
    /// and `DumpWriter` output are); on the first out-of-order line it starts over, holding
    /// the dump in memory to sort it.
    public func convertDump(inputPath: String, outputPath: String, overwrite: Bool = false) throws(DumpError)
        -> ConversionReport
    {
        var report = ConversionReport()
        var writer = try DumpWriter(path: outputPath, overwrite: overwrite)
        let reader = try DumpReader(path: inputPath)
        var lastRevision = Int64.min
        var ordered = true
        // Entries sort after the commits: find them first (an open commit with its entry
        // needs neither a new one nor a warning, as in `convert(_:)` and the live scan).
        var entries: Set<[UInt8]> = []
        let scan = try DumpReader(path: inputPath)
        while let kv = try scan.read() {
            if layout.classify(kv.key) == .openCommit { entries.insert(kv.key) }
        }
        do throws(DumpError) {
            while let kv = try reader.read() {
                if kv.modRevision < lastRevision {
                    ordered = false
                    break
                }
                lastRevision = kv.modRevision
                let converted = convertOne(kv, existingEntries: entries, report: &report)
                try writer.write(converted.value)
                if let extra = converted.openCommitEntry { try writer.write(extra) }
            }
        } catch {
            writer.abandon()
            throw error
        }
        if ordered {
            try writer.finish()
            return report
        }
        logger.notice("input is not ordered by mod revision; sorting it in memory", metadata: ["path": "\(inputPath)"])
        writer.abandon()
        let sorted = convert(try DumpReader(path: inputPath).readAll())
        let (output, sortedReport) = (sorted.output, sorted.report)
        writer = try DumpWriter(path: outputPath, overwrite: true)
        do throws(DumpError) {
            try writer.write(contentsOf: output)
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
        return sortedReport
    }
}
