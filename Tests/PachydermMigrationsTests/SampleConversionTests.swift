import EtcdGateway
import EtcdTestSupport
import Foundation
import PachydermMigrations
import PachydermPatchSchemas
import PachydermSchema
import SwiftProtobuf
import Testing

@Suite("Both 1.4.8 samples against Pachyderm 1.5.0's own migration")
struct SampleConversionTests {
    @Test("every record converts and equals Pachyderm 1.5.0's result semantically", arguments: ["at-rest", "busy"])
    func everyRecordMatchesPachyderm(sample: String) throws {
        let theirs = try SampleData.pachydermAfter(sample)
        var compared = 0
        for kv in try SampleData.keyValues(before: sample) {
            guard case .record(let kind, _) = layout.classify(kv.key) else { continue }
            let converted = try Pachyderm14To15Step.convert(kind: kind, key: kv.key, value: kv.value)
            #expect(converted.sourceEncoding == .text14)
            // The samples hold no older-patch fields, no stale ParallelismSpec and no
            // stopped/state disagreement: no policy note at all.
            #expect(converted.notes.isEmpty, "\(kv.keyText): \(converted.notes)")
            let expected = try #require(theirs[kv.keyText], "Pachyderm 1.5.0 has no \(kv.keyText)")
            #expect(try canonical15(kind, converted.value) == canonical15(kind, expected), "\(kv.keyText)")
            compared += 1
        }
        #expect(compared == theirs.count)
        #expect(compared == (sample == "at-rest" ? 508 : 510))
    }

    /// The documented differences from Pachyderm 1.5.0's bytes, record by record: its
    /// routine encoded with the 1.4.8 messages, so its values keep `JobInfo.stopped` (16),
    /// `PipelineInfo.stopped` (13) and `ParallelismSpec.strategy` (1); ours do not. With
    /// those removed (and map entries sorted), the bytes are identical.
    @Test("differences from Pachyderm's bytes are exactly the removed fields", arguments: ["at-rest", "busy"])
    func differencesAreTheRemovedFields(sample: String) throws {
        let theirs = try SampleData.pachydermAfter(sample)
        var differences: [String: Int] = [:]
        for kv in try SampleData.keyValues(before: sample) {
            guard case .record(let kind, _) = layout.classify(kv.key) else { continue }
            let ours = try Pachyderm14To15Step.convert(kind: kind, key: kv.key, value: kv.value).value
            let their = try #require(theirs[kv.keyText])
            switch kind {
            case .job:
                var theirJob = try Pach148_JobInfo(serializedBytes: their)
                let ourJob = try Pach148_JobInfo(serializedBytes: ours)
                #expect(!ourJob.stopped && ourJob.parallelismSpec.strategy == .constant)
                if theirJob.stopped { differences["jobs: stopped", default: 0] += 1; theirJob.stopped = false }
                if theirJob.parallelismSpec.strategy == .coefficient {
                    differences["jobs: parallelism_spec.strategy", default: 0] += 1
                    theirJob.parallelismSpec.strategy = .constant
                }
                theirJob.transform.env.sort { $0.key.lexicographicallyPrecedes($1.key) }
                #expect(try theirJob.serializedBytes(options: deterministic) as [UInt8] == ours, "\(kv.keyText)")
            case .pipeline:
                var theirPipeline = try Pach148_PipelineInfo(serializedBytes: their)
                let ourPipeline = try Pach148_PipelineInfo(serializedBytes: ours)
                #expect(!ourPipeline.stopped && ourPipeline.parallelismSpec.strategy == .constant)
                if theirPipeline.stopped { differences["pipelines: stopped", default: 0] += 1; theirPipeline.stopped = false }
                if theirPipeline.parallelismSpec.strategy == .coefficient {
                    differences["pipelines: parallelism_spec.strategy", default: 0] += 1
                    theirPipeline.parallelismSpec.strategy = .constant
                }
                theirPipeline.transform.env.sort { $0.key.lexicographicallyPrecedes($1.key) }
                #expect(try theirPipeline.serializedBytes(options: deterministic) as [UInt8] == ours, "\(kv.keyText)")
            case .repo, .commit, .branch:
                #expect(their == ours, "\(kv.keyText)")
            }
        }
        let expected: [String: [String: Int]] = [
            // every finished job and the PIPELINE_STOPPED pipeline carry stopped:true;
            // every COEFFICIENT spec carries strategy (constant is never stale in the samples).
            "at-rest": [
                "jobs: stopped": 200, "jobs: parallelism_spec.strategy": 95,
                "pipelines: stopped": 1, "pipelines: parallelism_spec.strategy": 2,
            ],
            "busy": [
                "jobs: stopped": 197, "jobs: parallelism_spec.strategy": 95,
                "pipelines: stopped": 1, "pipelines: parallelism_spec.strategy": 2,
            ],
        ]
        #expect(differences == expected[sample])
    }

    /// The direct field copies must equal a binary round trip through the same field
    /// numbers: a field forgotten in a copy fails here.
    @Test("field copies equal the binary round trip", arguments: ["at-rest", "busy"])
    func copiesEqualBinaryRoundTrip(sample: String) throws {
        for kv in try SampleData.keyValues(before: sample) {
            guard case .record(let kind, _) = layout.classify(kv.key) else { continue }
            try expectCopyEqualsRoundTrip(kind: kind, key: kv.key, text: kv.value)
        }
    }
}

let deterministic: BinaryEncodingOptions = {
    var options = BinaryEncodingOptions()
    options.useDeterministicOrdering = true
    return options
}()

/// Converts `text` with the step and through `Read14 → binary → Pach150` (stopped and
/// strategy cleared, ParallelismSpec normalized the same way), and expects equal messages.
func expectCopyEqualsRoundTrip(kind: RecordKind, key: [UInt8], text: [UInt8]) throws {
    let ours = try Pachyderm14To15Step.convert(kind: kind, key: key, value: text).value
    let decoded = try RecordCodec.decode(kind: kind, key: key, value: text).record
    let roundTrip: [UInt8]
    switch decoded {
    case .repo(let m): roundTrip = try m.serializedBytes(options: deterministic)
    case .commit(let m): roundTrip = try m.serializedBytes(options: deterministic)
    case .branch(let m): roundTrip = try m.serializedBytes(options: deterministic)
    case .pipeline(var m):
        m.stopped = false
        m.clearGcPolicy()
        if m.hasParallelismSpec {
            if m.parallelismSpec.strategy == .coefficient { m.parallelismSpec.constant = 0 } else { m.parallelismSpec.coefficient = 0 }
            m.parallelismSpec.strategy = .constant
        }
        roundTrip = try m.serializedBytes(options: deterministic)
    case .job(var m):
        m.stopped = false
        m.error = Data()
        if m.hasParallelismSpec {
            if m.parallelismSpec.strategy == .coefficient { m.parallelismSpec.constant = 0 } else { m.parallelismSpec.coefficient = 0 }
            m.parallelismSpec.strategy = .constant
        }
        roundTrip = try m.serializedBytes(options: deterministic)
    }
    #expect(try canonical15(kind, ours) == canonical15(kind, roundTrip), "\(String(decoding: key, as: UTF8.self))")
    #expect(ours == roundTrip, "\(String(decoding: key, as: UTF8.self)) bytes")
}
