import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Foundation
import Synchronization
import Testing

/// Keys `k0000`… answered in pages, counting requests; fails the request numbered
/// `failAt` (1-based), if given.
private final class CountingStore: ReadOnlyStore {
    let keys: [[UInt8]]
    let failAt: Int?
    let requests = Atomic<Int>(0)

    init(count: Int, failAt: Int? = nil) {
        keys = (0..<count).map { Array(String(format: "k%04d", $0).utf8) }
        self.failAt = failAt
    }

    func range(_ request: RangeRequest) throws(EtcdError) -> RangeResponse {
        let number = requests.add(1, ordering: .relaxed).newValue
        if number == failAt { throw EtcdError(.compacted, "required revision has been compacted") }
        let inRange = keys.filter { !$0.lexicographicallyPrecedes(request.key) && $0.lexicographicallyPrecedes(request.rangeEnd) }
        let taken = request.limit > 0 ? min(inRange.count, Int(request.limit)) : inRange.count
        return RangeResponse(
            header: ResponseHeader(revision: 40 + Int64(number)), kvs: inRange.prefix(taken).map { KeyValue(key: $0, value: $0) },
            more: taken < inRange.count, count: Int64(inRange.count))
    }
}

/// The scan reads one page ahead on a thread of its own: the same pages, revisions and
/// failures as reading them in turn, and never more than one page ahead.
@Suite("Prefetching pages")
struct PrefetchingPagesTests {
    @Test(arguments: [0, 1, 99, 100, 101, 1_234])
    func returnsWhatPagingInTurnReturns(count: Int) throws {
        var direct = CountingStore(count: count).pages(prefix: Array("k".utf8), pageSize: 100)
        var expected: [([KeyValue], Int64)] = []
        while let page = try direct.next() { expected.append((page, direct.revision)) }

        let prefetched = PrefetchingPages(CountingStore(count: count).pages(prefix: Array("k".utf8), pageSize: 100))
        var got: [([KeyValue], Int64)] = []
        while let (page, revision) = try prefetched.next() { got.append((page, revision)) }
        #expect(got.map(\.0) == expected.map(\.0))
        #expect(got.map(\.1) == expected.map(\.1))
        #expect(try prefetched.next() == nil)
    }

    @Test func readsOnePageAheadAndNoMore() throws {
        let store = CountingStore(count: 1_000)
        let pages = PrefetchingPages(store.pages(prefix: Array("k".utf8), pageSize: 100))
        // Before anything is asked for, the first page is being read; once it is taken,
        // the second is read without being asked for, and a third is not.
        _ = try #require(try pages.next())
        #expect(eventually(timeout: 10) { store.requests.load(ordering: .relaxed) == 2 })
        Thread.sleep(forTimeInterval: 0.05)
        #expect(store.requests.load(ordering: .relaxed) == 2)
    }

    @Test func aFailureComesAfterThePagesReadBeforeIt() throws {
        var direct = CountingStore(count: 1_000, failAt: 3).pages(prefix: Array("k".utf8), pageSize: 100)
        let first = try #require(try direct.next())
        let second = try #require(try direct.next())
        #expect(throws: EtcdError.self) { try direct.next() }

        let pages = PrefetchingPages(CountingStore(count: 1_000, failAt: 3).pages(prefix: Array("k".utf8), pageSize: 100))
        #expect(try pages.next()?.page == first)
        #expect(try pages.next()?.page == second)
        #expect(throws: EtcdError.self) { try pages.next() }
        #expect(try pages.next() == nil)
    }
}
