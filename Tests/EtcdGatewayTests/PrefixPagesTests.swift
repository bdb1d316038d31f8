@testable import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Synchronization
import Testing

/// A sorted key list that answers ranges the way etcd 3.4 does, and counts what etcd 3.4
/// pays for them: its index walk runs from a range's start to its end whatever the limit.
private final class SortedKeyStore: ReadOnlyStore {
    let keys: [[UInt8]]
    /// The size of each key's value (bytes of "v").
    let valueSize: @Sendable ([UInt8]) -> Int
    let walked = Atomic<Int>(0)
    let requests = Atomic<Int>(0)

    init(_ keys: Set<[UInt8]>, valueSize: @escaping @Sendable ([UInt8]) -> Int = { _ in 0 }) {
        self.keys = keys.sorted { $0.lexicographicallyPrecedes($1) }
        self.valueSize = valueSize
    }

    private func lowerBound(_ key: [UInt8]) -> Int {
        var (low, high) = (0, keys.count)
        while low < high {
            let mid = (low + high) / 2
            if keys[mid].lexicographicallyPrecedes(key) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse {
        let low = lowerBound(request.key)
        let high = request.rangeEnd == [0] ? keys.count : max(low, lowerBound(request.rangeEnd))
        walked.add(high - low, ordering: .relaxed)

        requests.add(1, ordering: .relaxed)
        let taken = request.limit > 0 ? min(high - low, Int(request.limit)) : high - low
        return RangeResponse(
            header: ResponseHeader(revision: 7),
            kvs: keys[low..<low + taken].map { KeyValue(key: $0, value: Array(repeating: 0x76, count: valueSize($0))) },
            more: taken < high - low, count: Int64(high - low))
    }
}

/// Key sets shaped like real clusters and like nothing real, each under `prefix`.
private func keySet(_ shape: String, prefix: [UInt8], count: Int) -> Set<[UInt8]> {
    var generator = SeededGenerator(seed: UInt64(count) &+ UInt64(shape.utf8.count))
    let hex = Array("0123456789abcdef".utf8)
    func uuid() -> [UInt8] { (0..<32).map { _ in hex.randomElement(using: &generator)! } }
    var keys = Set<[UInt8]>()
    switch shape {
    case "pachyderm":  // jobs by uuid, their index keys, a few pipelines, and a lone counter
        for i in 0..<count {
            let id = uuid()
            keys.insert(prefix + Array("jobs/".utf8) + id)
            if i % 2 == 0 { keys.insert(prefix + Array("jobs__index_Pipeline/p\(i % 7)/".utf8) + id) }
        }
        for p in 0..<7 { keys.insert(prefix + Array("pipelines/p\(p)".utf8)) }
        keys.insert(prefix + Array("repoRefCounts".utf8))
    case "repos":  // Pachyderm 1.4's commits and jobs with their index keys: many small subtrees
        let repos = (0..<max(1, count / 200)).map { i in ["images", "join", "score", "log-errors", "aggregate"][i % 5] + "-\(i * 8 + 3)" }
        for _ in 0..<count / 4 {
            let skew = Double.random(in: 0..<1, using: &generator)
            let repo = repos[Int(Double(repos.count) * skew * skew)]
            let upstream = repos.randomElement(using: &generator)!
            let commit = uuid()
            keys.insert(prefix + Array("commits/\(repo)/".utf8) + commit)
            keys.insert(
                prefix + Array("commits/\(repo)__index_{Provenance %!s(bool=true)}/repo:<name:\"\(upstream)\" > id:\"".utf8) + uuid()
                    + Array("\" /".utf8) + commit)
            let job = uuid()
            keys.insert(prefix + Array("jobs/".utf8) + job)
            keys.insert(
                prefix + Array("jobs__index_{Input %!s(bool=false)}/atom:<name:\"\(upstream)\" repo:\"\(upstream)\" branch:\"master\" commit:\"".utf8)
                    + commit + Array("\" glob:\"/*\" > /".utf8) + job)
        }
    case "decimal":  // k0, k1, … k10, k100: far from uniform as numbers
        for i in 0..<count { keys.insert(prefix + Array("k\(i)".utf8)) }
    case "binary":  // any bytes, any length, including 0x00 and 0xff
        while keys.count < count {
            keys.insert(prefix + (0..<Int.random(in: 0...12, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
    case "nested":  // keys that are prefixes of each other: a, a\0, a\0\0, …, a\xff\xff …, then numbered
        for i in 0..<count {
            keys.insert(prefix + [0x61] + Array(repeating: i % 2 == 0 ? 0 : 0xff, count: i % 17) + (i < 34 ? [] : Array("\(i)".utf8)))
        }
    default:
        Issue.record("unknown shape \(shape)")
    }
    return keys
}

@Suite("Prefix paging in windows (etcd 3.4 walks to a range's end)")
struct PrefixPagesTests {
    static let prefixes: [[UInt8]] = [Array("pachyderm_pps/".utf8), [0xff, 0xff], []]

    @Test(arguments: ["pachyderm", "repos", "decimal", "binary", "nested"], [0, 1, 2, 3, 500, 20_000])
    func returnsExactlyTheKeysUnderThePrefixInOrder(shape: String, count: Int) throws {
        for prefix in Self.prefixes {
            let inside = keySet(shape, prefix: prefix, count: count)
            // Neighbours just outside the prefix must never show up.
            var all = inside
            if !prefix.isEmpty {
                all.insert(Array(prefix.dropLast()) + [prefix.last! &- 1, 0xff])
                if prefixRangeEnd(prefix) != [0] { all.insert(prefixRangeEnd(prefix)) }
            }
            let store = SortedKeyStore(all)
            for pageSize in [1, 7, 100] where pageSize > 1 || count <= 500 {
                var pages = store.pages(prefix: prefix, pageSize: pageSize)
                var read: [[UInt8]] = []
                var requests = 0
                while let page = try pages.next() {
                    read += page.map(\.key)
                    requests += 1
                    if requests > 20 * (count / pageSize + 1) + 2_000 {
                        Issue.record("\(shape) \(count) page \(pageSize) prefix \(prefix): \(requests) requests, stuck after \(read.last ?? [])")
                        break
                    }
                }
                #expect(read == inside.sorted { $0.lexicographicallyPrecedes($1) }, "\(shape) \(count) page \(pageSize) prefix \(prefix)")
            }
        }
    }

    /// Without windows, 20,000 keys in pages of 100 cost etcd 3.4 about 2 million index
    /// steps (n²/2 per page size, 100 walks of the keys); windows keep it to a few walks,
    /// in not many more requests than pages. Many small subtrees (`repos`) cost 40 walks
    /// when each new region was read to the range's end; estimated from what was read before
    /// it, 6.6.
    @Test(arguments: ["pachyderm", "repos", "decimal", "binary"])
    func costGrowsLinearlyNotQuadratically(shape: String) throws {
        let count = 20_000
        let store = SortedKeyStore(keySet(shape, prefix: Array("pachyderm_pps/".utf8), count: count))
        var pages = store.pages(prefix: Array("pachyderm_pps/".utf8), pageSize: 100)
        var read = 0
        while let page = try pages.next() { read += page.count }
        #expect(read == store.keys.count)
        let walked = store.walked.load(ordering: .relaxed)
        // Measured: 6.6 (repos), 6.5 (pachyderm), 8.1 (decimal), 2.3 (binary); before new
        // regions were estimated from history, 39.8, 12.9, 20.3 and 2.3.
        #expect(walked <= 12 * store.keys.count, "\(shape): walked \(walked) index entries for \(store.keys.count) keys")
        let requests = store.requests.load(ordering: .relaxed)
        #expect(requests <= 3 * store.keys.count / 100 + 50, "\(shape): \(requests) requests for \(store.keys.count) keys")
    }

    /// Pages of two keys (values of 1 MiB), more of them than `PageWindow.marksKept`: the
    /// history is thinned, and its estimates still keep the walk linear. Measured: 18.9 walks
    /// of the keys; 1,019 when each new region was read to the range's end.
    @Test func aScanOfManyPagesThinsItsHistory() throws {
        let store = SortedKeyStore(keySet("repos", prefix: Array("pachyderm_pfs/".utf8), count: 20_000))
        var pages = store.pages(prefix: Array("pachyderm_pfs/".utf8), pageSize: 2)
        var read: [[UInt8]] = []
        while let page = try pages.next() { read += page.map(\.key) }
        #expect(store.keys.count / 2 > PageWindow.marksKept)
        #expect(read == store.keys)
        let walked = store.walked.load(ordering: .relaxed)
        #expect(walked <= 24 * store.keys.count, "walked \(walked) index entries for \(store.keys.count) keys")
    }

    /// Jobs of 1 MiB, then small index keys: a page of large values holds about
    /// `targetBytes` (one job), not a thousand jobs; the small keys after them are read a
    /// thousand a page again.
    @Test func largeValuesMakeSmallPages() throws {
        let prefix = Array("pachyderm_pps/".utf8)
        let jobs = Array("pachyderm_pps/jobs/".utf8)
        let store = SortedKeyStore(keySet("pachyderm", prefix: prefix, count: 3_000)) { $0.starts(with: jobs) ? 1 << 20 : 40 }
        var pages = store.pages(prefix: prefix, pageSize: 1000)
        var read: [[UInt8]] = []
        var largestJobPage = 0
        var largestIndexPage = 0
        var first = true
        while let page = try pages.next() {
            read += page.map(\.key)
            let bytes = page.reduce(0) { $0 + $1.key.count + $1.value.count }
            if page.allSatisfy({ $0.key.starts(with: jobs) }) {
                // The first page knows nothing of the values yet: 16 keys.
                if first { #expect(page.count == 16) } else { largestJobPage = max(largestJobPage, bytes) }
            } else {
                largestIndexPage = max(largestIndexPage, page.count)
            }
            first = false
        }
        #expect(read == store.keys)
        #expect(largestJobPage > 0 && largestJobPage <= PrefixPages.targetBytes)
        #expect(largestIndexPage == 1000)
    }
}
