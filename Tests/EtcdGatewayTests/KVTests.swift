import EtcdGateway
import EtcdModel
import EtcdTestSupport
import Foundation
import Testing

@Suite("KV against a real etcd")
struct KVTests {
    @Test func rangeSingleKeyAndMissingKey() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let prefix = uniquePrefix("single")
            let put = try client.put(PutRequest(key: bytes(prefix + "a"), value: bytes("one")))
            #expect(put.header.revision > 0)

            let found = try client.range(RangeRequest(key: bytes(prefix + "a")))
            #expect(found.kvs.count == 1)
            #expect(found.count == 1)
            let kv = try #require(found.kvs.first)
            #expect(text(kv.key) == prefix + "a")
            #expect(text(kv.value) == "one")
            #expect(kv.version == 1)
            #expect(kv.createRevision == put.header.revision)
            #expect(kv.modRevision == put.header.revision)
            #expect(kv.lease == 0)

            // The gateway omits zero fields: an empty answer has no kvs and no count.
            let missing = try client.range(RangeRequest(key: bytes(prefix + "nope")))
            #expect(missing.kvs.isEmpty)
            #expect(missing.count == 0)
            #expect(missing.more == false)
            #expect(missing.header.revision >= put.header.revision)
        }
    }

    @Test func prefixPagingWithMoreAtPinnedRevision() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let prefix = uniquePrefix("paging")
            for index in 0..<10 {
                try client.put(PutRequest(key: bytes(prefix + "k\(index)"), value: bytes("v\(index)")))
            }
            // A key just outside the prefix must never show up.
            let outside = String(prefix.dropLast()) + "0"
            try client.put(PutRequest(key: bytes(outside), value: bytes("outside")))

            let firstPage = try client.range(.prefix(bytes(prefix), limit: 3))
            #expect(firstPage.kvs.map { text($0.key) } == (0..<3).map { prefix + "k\($0)" })
            #expect(firstPage.more)
            #expect(firstPage.count == 10)  // total, not page size
            let pinned = firstPage.header.revision

            // Changes after the pinned revision must not show in the scan.
            try client.put(PutRequest(key: bytes(prefix + "k0"), value: bytes("changed")))
            try client.put(PutRequest(key: bytes(prefix + "k99"), value: bytes("new")))
            _ = try client.deleteRange(DeleteRangeRequest(key: bytes(prefix + "k5")))

            var pages: [[KeyValue]] = []
            let revisionRead = try client.scanPrefix(bytes(prefix), revision: pinned, pageSize: 3) { pages.append($0) }
            #expect(revisionRead == pinned)
            #expect(pages.map(\.count) == [3, 3, 3, 1])
            let all = pages.flatMap { $0 }
            #expect(all.map { text($0.key) } == (0..<10).map { prefix + "k\($0)" })
            #expect(all.map { text($0.value) } == (0..<10).map { "v\($0)" })

            // Unpinned: the current state.
            var current: [String] = []
            try client.scanPrefix(bytes(prefix), pageSize: 4) { page in current += page.map { text($0.key) } }
            #expect(current.count == 10)
            #expect(current.contains(prefix + "k99"))
            #expect(!current.contains(prefix + "k5"))

            // Unpinned, the first page pins the revision: writes made while the caller works on
            // a page never show in later pages (whatever windows the paging chooses).
            let expected = current
            var ahead = client.pages(prefix: bytes(prefix), pageSize: 3)
            var seen = try #require(try ahead.next()).map { text($0.key) }
            let aheadRevision = ahead.revision
            try client.put(PutRequest(key: bytes(prefix + "k6a"), value: bytes("new")))
            _ = try client.deleteRange(DeleteRangeRequest(key: bytes(prefix + "k9")))
            while let page = try ahead.next() { seen += page.map { text($0.key) } }
            #expect(seen == expected)
            #expect(ahead.revision == aheadRevision)
        }
    }

    @Test func keysOnlyAndCountOnly() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let prefix = uniquePrefix("keysonly")
            for index in 0..<5 {
                try client.put(PutRequest(key: bytes(prefix + "\(index)"), value: bytes("value\(index)")))
            }
            let keys = try client.range(.prefix(bytes(prefix), keysOnly: true))
            #expect(keys.kvs.count == 5)
            #expect(keys.kvs.allSatisfy { $0.value.isEmpty && !$0.key.isEmpty && $0.modRevision > 0 })

            let counted = try client.range(.prefix(bytes(prefix), countOnly: true))
            #expect(counted.kvs.isEmpty)
            #expect(counted.count == 5)
        }
    }

    // Keys written in the order k3, k1, k2 with values c, a, b for k1, k2, k3; then k3 rewritten.
    @Test(arguments: [
        (RangeRequest.SortOrder.ascend, RangeRequest.SortTarget.key, ["k1", "k2", "k3"]),
        (.descend, .key, ["k3", "k2", "k1"]),
        (.ascend, .value, ["k2", "k3", "k1"]),
        (.descend, .value, ["k1", "k3", "k2"]),
        (.ascend, .create, ["k3", "k1", "k2"]),
        (.ascend, .mod, ["k1", "k2", "k3"]),
        (.descend, .mod, ["k3", "k2", "k1"]),
    ])
    func sortedRange(order: RangeRequest.SortOrder, target: RangeRequest.SortTarget, expected: [String]) async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let prefix = uniquePrefix("sort")
            try client.put(PutRequest(key: bytes(prefix + "k3"), value: bytes("b")))
            try client.put(PutRequest(key: bytes(prefix + "k1"), value: bytes("c")))
            try client.put(PutRequest(key: bytes(prefix + "k2"), value: bytes("a")))
            try client.put(PutRequest(key: bytes(prefix + "k3"), value: bytes("b")))
            var request = RangeRequest.prefix(bytes(prefix))
            request.sortOrder = order
            request.sortTarget = target
            let answer = try client.range(request)
            #expect(answer.kvs.map { String(text($0.key).dropFirst(prefix.count)) } == expected)
        }
    }

    @Test func putWithPrevKVAndLease() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let key = bytes(uniquePrefix("put") + "key")
            let first = try client.put(PutRequest(key: key, value: bytes("v1"), prevKV: true))
            #expect(first.prevKV == nil)

            let lease = try client.leaseGrant(ttl: 60)
            let second = try client.put(PutRequest(key: key, value: bytes("v2"), lease: lease.id, prevKV: true))
            let previous = try #require(second.prevKV)
            #expect(text(previous.value) == "v1")
            #expect(previous.version == 1)
            #expect(try client.range(RangeRequest(key: key)).kvs.first?.lease == lease.id)

            // ignore_lease rewrites the value and keeps the lease; a plain put detaches it.
            // Before 3.2 the gateway would drop ignore_lease, so the client refuses it.
            if EtcdBinaries.version < EtcdVersion(3, 2) {
                let error = #expect(throws: EtcdError.self) { try client.put(PutRequest(key: key, value: bytes("v3"), ignoreLease: true)) }
                #expect(error?.code == .unsupported)
                try client.put(PutRequest(key: key, value: bytes("v3"), lease: lease.id))
            } else {
                try client.put(PutRequest(key: key, value: bytes("v3"), ignoreLease: true))
            }
            let kept = try #require(try client.range(RangeRequest(key: key)).kvs.first)
            #expect(kept.lease == lease.id)
            #expect(text(kept.value) == "v3")
            try client.put(PutRequest(key: key, value: bytes("v4")))
            #expect(try client.range(RangeRequest(key: key)).kvs.first?.lease == 0)
            try client.leaseRevoke(id: lease.id)
        }
    }

    @Test func deleteRangeSingleAndPrefix() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let prefix = uniquePrefix("delete")
            for name in ["a", "b", "c", "d"] {
                try client.put(PutRequest(key: bytes(prefix + name), value: bytes("value-" + name)))
            }
            let single = try client.deleteRange(DeleteRangeRequest(key: bytes(prefix + "a"), prevKV: true))
            #expect(single.deleted == 1)
            #expect(single.prevKVs.map { text($0.value) } == ["value-a"])

            let none = try client.deleteRange(DeleteRangeRequest(key: bytes(prefix + "a")))
            #expect(none.deleted == 0)

            let rest = try client.deleteRange(.prefix(bytes(prefix)))
            #expect(rest.deleted == 3)
            #expect(rest.prevKVs.isEmpty)
            #expect(try client.range(.prefix(bytes(prefix), countOnly: true)).count == 0)
        }
    }

    @Test func pastCompactionIsCompacted() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            let old = try client.put(PutRequest(key: bytes("/c/a"), value: bytes("1"))).header.revision
            let newer = try client.put(PutRequest(key: bytes("/c/a"), value: bytes("2"))).header.revision
            try runCommand(EtcdBinaries.etcdctl, ["--endpoints=\(server.endpoint)", "compact", "\(newer)"])
            let error = #expect(throws: EtcdError.self) {
                try client.range(RangeRequest(key: bytes("/c/a"), revision: old))
            }
            #expect(error?.code == .compacted)
            #expect(error?.grpcCode == 11)
            #expect(error?.httpStatus == 400)
            #expect(error?.message.contains("compacted") == true)
        }
    }
}
