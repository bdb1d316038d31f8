import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Foundation
import PachydermMigrations
import Testing

/// Values as they were written: every record of the at-rest sample, in 1.4 text and in
/// 1.5.0 binary as Pachyderm 1.5.0's own routine wrote it.
let sampleRecords: [(kind: RecordKind, kv: KeyValue)] = {
    let root = SampleData.root + "/at-rest"
    let kvs =
        ((try? SampleData.keyValues("\(root)/before.etcd.jsonl")) ?? [])
        + ((try? SampleData.keyValues("\(root)/after-pachyderm-1.5.0.etcd.jsonl")) ?? [])
    return kvs.compactMap { kv in
        if case .record(let kind, _) = layout.classify(kv.key) { return (kind, kv) }
        return nil
    }
}()

/// Seconds of fuzzing: `$PACHMIGRATE_FUZZ_SECONDS`, else 3 (CI).
let fuzzSeconds = ProcessInfo.processInfo.environment["PACHMIGRATE_FUZZ_SECONDS"].flatMap(Double.init) ?? 3

/// One mutation of `value`: the kinds of damage a value can take (bit rot, truncation,
/// a stray edit, another record spliced in) plus random bytes.
func mutate(_ value: [UInt8], using generator: inout SeededGenerator) -> [UInt8] {
    var v = value
    func offset() -> Int { v.isEmpty ? 0 : Int.random(in: 0...v.count, using: &generator) }
    let interesting: [UInt8] = Array("<>{}\":\\ \n".utf8) + [0x00, 0x7f, 0x80, 0xff, 0x08, 0x12, 0x0a]
    switch Int.random(in: 0..<8, using: &generator) {
    case 0:  // bit flips
        for _ in 0..<Int.random(in: 1...4, using: &generator) where !v.isEmpty {
            v[Int.random(in: 0..<v.count, using: &generator)] ^= 1 << UInt8.random(in: 0..<8, using: &generator)
        }
    case 1:  // truncation
        v = Array(v.prefix(offset()))
    case 2:  // random bytes inserted
        v.insert(contentsOf: (0..<Int.random(in: 1...8, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }, at: offset())
    case 3:  // a range deleted
        let a = offset(), b = offset()
        v.removeSubrange(min(a, b)..<max(a, b))
    case 4:  // a range duplicated elsewhere
        let a = offset(), b = offset()
        let piece = Array(v[min(a, b)..<max(a, b)])
        v.insert(contentsOf: piece, at: offset())
    case 5:  // syntax bytes planted
        for _ in 0..<Int.random(in: 1...3, using: &generator) where !v.isEmpty {
            v[Int.random(in: 0..<v.count, using: &generator)] = interesting.randomElement(using: &generator)!
        }
    case 6:  // another record (maybe of another kind) spliced in
        let other = sampleRecords.randomElement(using: &generator)!.kv.value
        let cut = other.isEmpty ? 0 : Int.random(in: 0...other.count, using: &generator)
        v = Array(v.prefix(offset())) + other[cut...]
    default:  // random bytes
        v = (0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
    return v
}

/// `input` (field 20 of PipelineInfo) holding `depth` nested `cross` inputs,
/// as 1.4 text and as protobuf binary.
func deepInput(depth: Int) -> (text: [UInt8], binary: [UInt8]) {
    let text = "input:<" + String(repeating: "cross:<", count: depth) + String(repeating: "> ", count: depth) + "> "
    func varint(_ n: Int) -> [UInt8] {
        var n = n, out: [UInt8] = []
        while n >= 0x80 { out.append(UInt8(n & 0x7f) | 0x80); n >>= 7 }
        return out + [UInt8(n)]
    }
    var inner: [UInt8] = []
    for _ in 0..<depth { inner = [0x12] + varint(inner.count) + inner }  // cross = 2
    return (Array(text.utf8), [0xa2, 0x01] + varint(inner.count) + inner)  // input = 20
}

@Suite("Bad input: fuzzed values and rough clusters")
struct BadInputTests {
    /// Seeded mutations of real records and random bytes for `fuzzSeconds`: every value
    /// either converts or fails with a `RecordCodecError` naming its key; none crashes or
    /// takes long.
    @Test func fuzzedValuesConvertOrFailNamingTheKey() async throws {
        try await onOwnThread {
            #expect(sampleRecords.count > 1000)
            let seed = ProcessInfo.processInfo.environment["PACHMIGRATE_FUZZ_SEED"].flatMap(UInt64.init) ?? 1
            var generator = SeededGenerator(seed: seed)
            let deadline = Date().addingTimeInterval(fuzzSeconds)
            var tried = 0, converted = 0, slowest = 0.0
            var unnamed: [String] = []
            while Date() < deadline {
                let (kind, kv) = sampleRecords.randomElement(using: &generator)!
                let value = mutate(kv.value, using: &generator)
                // Keys too: not every key is UTF-8.
                let key = Bool.random(using: &generator) ? kv.key : kv.key + [0xff, 0x0a, 0x00]
                let started = threadCPUSeconds()
                do throws(RecordCodecError) {
                    _ = try Pachyderm14To15Step.convert(kind: kind, key: key, value: value)
                    converted += 1
                } catch {
                    if error.key != key.printable || error.message.isEmpty {
                        unnamed.append("\(error)")
                    }
                }
                slowest = max(slowest, threadCPUSeconds() - started)
                tried += 1
            }
            #expect(tried > 100, "only \(tried) values in \(fuzzSeconds) s")
            #expect(unnamed.isEmpty, "\(unnamed.prefix(5))")
            #expect(slowest < 1, "slowest value took \(slowest) CPU-s")
            reportReliability(fault: "fuzzed record values (seed \(seed))", records: tried, losses: unnamed.count)
        }
    }

    /// Inputs nested far deeper than any pipeline: a clear error naming the key, never a
    /// stack overflow (5,000 levels used to crash the process). Realistic depths convert.
    @Test(arguments: [50, 200, 5_000, 100_000])
    func deeplyNestedInputsFailCleanly(depth: Int) async throws {
        try await onOwnThread {
            let (text, binary) = deepInput(depth: depth)
            for (kind, value) in [(RecordKind.pipeline, text), (.pipeline, binary), (.job, text)] {
                let started = threadCPUSeconds()
                defer { #expect(threadCPUSeconds() - started < 2, "depth \(depth) \(kind) took long") }
                do throws(RecordCodecError) {
                    _ = try Pachyderm14To15Step.convert(kind: kind, key: bytes("pachyderm_pps/deep"), value: value)
                    #expect(depth <= 200, "depth \(depth) \(kind) accepted")
                } catch {
                    #expect(error.key == "pachyderm_pps/deep")
                    #expect(!error.message.isEmpty)
                    #expect(depth > 200, "depth \(depth) \(kind) refused: \(error)")
                }
            }
        }
    }
}

/// CPU time of the calling thread: a bound on it catches pathological inputs (the 20 s
/// diagnosis of an over-deep value) without failing when a loaded machine preempts the test.
private func threadCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
