import EtcdGateway
import EtcdTestSupport
import Foundation
import Testing

/// A compare operand resolved against the key's real revisions and lease at run time.
enum Operand: Sendable, CustomStringConvertible {
    case version(Int64)
    case createRevision(offset: Int64)
    case modRevision(offset: Int64)
    case value(String)
    case ownLease
    case noLease

    var description: String {
        switch self {
        case .version(let v): "version \(v)"
        case .createRevision(let o): "create_revision\(o >= 0 ? "+" : "")\(o)"
        case .modRevision(let o): "mod_revision\(o >= 0 ? "+" : "")\(o)"
        case .value(let v): "value \"\(v)\""
        case .ownLease: "its lease"
        case .noLease: "lease 0"
        }
    }
}

@Suite("Txn against a real etcd")
struct TxnTests {
    // The key holds value "m", version 2, and a lease.
    @Test(arguments: [
        (Operand.version(2), Compare.Result.equal, true),
        (.version(5), .equal, false),
        (.version(1), .greater, true),
        (.version(3), .less, true),
        (.version(2), .notEqual, false),
        (.createRevision(offset: 0), .equal, true),
        (.createRevision(offset: 0), .less, false),
        (.createRevision(offset: 1), .less, true),
        (.modRevision(offset: 0), .equal, true),
        (.modRevision(offset: -1), .greater, true),
        (.modRevision(offset: 0), .notEqual, false),
        (.value("m"), .equal, true),
        (.value("a"), .greater, true),
        (.value("z"), .less, true),
        (.value("m"), .notEqual, false),
        (.ownLease, .equal, true),
        (.noLease, .equal, false),
        (.noLease, .notEqual, true),
    ])
    func compare(operand: Operand, result: Compare.Result, expectSuccess: Bool) async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let key = bytes(uniquePrefix("cmp") + "key")
            let lease = try client.leaseGrant(ttl: 60)
            defer { try? client.leaseRevoke(id: lease.id) }
            try client.put(PutRequest(key: key, value: bytes("x"), lease: lease.id))
            try client.put(PutRequest(key: key, value: bytes("m"), lease: lease.id))
            let stored = try #require(try client.range(RangeRequest(key: key)).kvs.first)
            let target: Compare.Target =
                switch operand {
                case .version(let v): .version(v)
                case .createRevision(let offset): .createRevision(stored.createRevision + offset)
                case .modRevision(let offset): .modRevision(stored.modRevision + offset)
                case .value(let v): .value(bytes(v))
                case .ownLease: .lease(lease.id)
                case .noLease: .lease(0)
                }
            let request = TxnRequest(compare: [Compare(key: key, result, target)], success: [.range(RangeRequest(key: key))], failure: [])
            if case .lease = target, EtcdBinaries.version < EtcdVersion(3, 3) {
                // Older gateways would drop the LEASE target; the client refuses, naming it.
                let error = #expect(throws: EtcdError.self) { try client.txn(request) }
                #expect(error?.code == .unsupported)
                #expect(error?.message.contains("compare a key's lease") == true)
                return
            }
            let answer = try client.txn(request)
            #expect(answer.succeeded == expectSuccess)
            // Only the success branch has an op: it ran exactly when the compare held.
            #expect(answer.responses.count == (expectSuccess ? 1 : 0))
        }
    }

    @Test func compareOnAbsentKeyComparesAgainstZero() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let key = bytes(uniquePrefix("absent") + "lock")
            // The create-if-absent idiom: CREATE == 0, then put; the failure branch reads the holder.
            let create = TxnRequest(
                compare: [Compare(key: key, .equal, .createRevision(0))],
                success: [.put(PutRequest(key: key, value: bytes("me")))],
                failure: [.range(RangeRequest(key: key))])
            let first = try client.txn(create)
            #expect(first.succeeded)
            guard case .put = first.responses.first else {
                Issue.record("expected a put response, got \(first.responses)")
                return
            }
            let second = try client.txn(create)
            #expect(!second.succeeded)
            guard case .range(let holder) = second.responses.first else {
                Issue.record("expected a range response, got \(second.responses)")
                return
            }
            #expect(holder.kvs.map { text($0.value) } == ["me"])
        }
    }

    @Test func successBranchWithPutRangeAndDeleteSharesOneRevision() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let prefix = uniquePrefix("txn")
            try client.put(PutRequest(key: bytes(prefix + "old1"), value: bytes("1")))
            try client.put(PutRequest(key: bytes(prefix + "old2"), value: bytes("2")))
            let answer = try client.txn(
                TxnRequest(
                    compare: [Compare(key: bytes(prefix + "old1"), .equal, .value(bytes("1")))],
                    success: [
                        .put(PutRequest(key: bytes(prefix + "new"), value: bytes("n"), prevKV: true)),
                        .range(.prefix(bytes(prefix + "old"))),
                        .deleteRange(DeleteRangeRequest(key: bytes(prefix + "old2"), prevKV: true)),
                    ],
                    failure: [.put(PutRequest(key: bytes(prefix + "failed"), value: bytes("f")))]))
            #expect(answer.succeeded)
            #expect(answer.responses.count == 3)
            guard answer.responses.count == 3,
                case .put(let put) = answer.responses[0],
                case .range(let range) = answer.responses[1],
                case .deleteRange(let delete) = answer.responses[2]
            else {
                Issue.record("unexpected responses \(answer.responses)")
                return
            }
            #expect(put.prevKV == nil)
            #expect(range.kvs.map { text($0.value) } == ["1", "2"])
            #expect(range.count == 2)
            #expect(delete.deleted == 1)
            #expect(delete.prevKVs.map { text($0.value) } == ["2"])
            let newKV = try #require(try client.range(RangeRequest(key: bytes(prefix + "new"))).kvs.first)
            #expect(newKV.modRevision == answer.header.revision)
            #expect(try client.range(RangeRequest(key: bytes(prefix + "failed"))).kvs.isEmpty)
        }
    }

    @Test func failureBranchRunsWhenCompareFails() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let prefix = uniquePrefix("txnfail")
            try client.put(PutRequest(key: bytes(prefix + "guard"), value: bytes("current")))
            try client.put(PutRequest(key: bytes(prefix + "victim"), value: bytes("v")))
            let answer = try client.txn(
                TxnRequest(
                    compare: [Compare(key: bytes(prefix + "guard"), .equal, .value(bytes("stale")))],
                    success: [.put(PutRequest(key: bytes(prefix + "guard"), value: bytes("mine")))],
                    failure: [
                        .range(RangeRequest(key: bytes(prefix + "guard"))),
                        .deleteRange(DeleteRangeRequest(key: bytes(prefix + "victim"))),
                    ]))
            #expect(!answer.succeeded)
            guard answer.responses.count == 2, case .range(let range) = answer.responses[0],
                case .deleteRange(let delete) = answer.responses[1]
            else {
                Issue.record("unexpected responses \(answer.responses)")
                return
            }
            #expect(range.kvs.map { text($0.value) } == ["current"])
            #expect(delete.deleted == 1)
            #expect(try client.range(RangeRequest(key: bytes(prefix + "guard"))).kvs.first.map { text($0.value) } == "current")
        }
    }

    @Test func txnOverTheOpLimitFailsClearly() async throws {
        try await onOwnThread {
            let server = try EtcdServer.shared()
            let prefix = uniquePrefix("limit")
            let puts = (0..<129).map { RequestOp.put(PutRequest(key: bytes(prefix + "\($0)"), value: bytes("v"))) }

            // Client-side: never sent.
            let client = try server.makeClient()
            let local = #expect(throws: EtcdError.self) { try client.txn(TxnRequest(success: puts)) }
            #expect(local?.code == .limitExceeded)
            #expect(local?.httpStatus == nil)
            #expect(local?.message.contains("129") == true)
            #expect(local?.message.contains("128") == true)
            #expect(local?.message.contains("maxTxnOps") == true)

            // With the client's limit raised, etcd's own 400 code 3 comes back as limitExceeded.
            let lenient = try server.makeClient(maxTxnOps: 1000)
            let remote = #expect(throws: EtcdError.self) { try lenient.txn(TxnRequest(success: puts)) }
            #expect(remote?.code == .limitExceeded)
            #expect(remote?.httpStatus == 400)
            #expect(remote?.grpcCode == 3)
            #expect(remote?.message.contains("too many operations") == true)
            #expect(try client.range(.prefix(bytes(prefix), countOnly: true)).count == 0)

            // 128 is fine.
            let ok = try client.txn(TxnRequest(success: Array(puts.prefix(128))))
            #expect(ok.succeeded)
            #expect(try client.range(.prefix(bytes(prefix), countOnly: true)).count == 128)
        }
    }

    @Test func requestTooLargeFailsClearly() async throws {
        try await onOwnThread {
            let server = try EtcdServer.shared()
            let key = bytes(uniquePrefix("large") + "big")
            let client = try server.makeClient()
            let huge = [UInt8](repeating: 0x61, count: 2 << 20)
            let local = #expect(throws: EtcdError.self) { try client.put(PutRequest(key: key, value: huge)) }
            #expect(local?.code == .limitExceeded)
            #expect(local?.httpStatus == nil)
            #expect(local?.message.contains("maxRequestBytes") == true)
            #expect(local?.message.contains("1572864") == true)

            // Under the client's JSON allowance but over etcd's protobuf limit: etcd says so.
            let lenient = try server.makeClient(maxRequestBytes: 8 << 20)
            let overServer = [UInt8](repeating: 0x62, count: 1_600_000)
            let remote = #expect(throws: EtcdError.self) { try lenient.put(PutRequest(key: key, value: overServer)) }
            #expect(remote?.code == .limitExceeded)
            #expect(remote?.grpcCode == 3 || remote?.grpcCode == 8)
            #expect(try client.range(RangeRequest(key: key)).kvs.isEmpty)

            // A value comfortably under the limit goes through.
            let fine = [UInt8](repeating: 0x63, count: 1_000_000)
            try client.put(PutRequest(key: key, value: fine))
            #expect(try client.range(RangeRequest(key: key)).kvs.first?.value == fine)
        }
    }
}
