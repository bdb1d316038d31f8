@testable import EtcdGateway
import EtcdTestSupport
import Foundation
import Synchronization
import Testing

@Suite("Error mapping and concurrency")
struct ErrorMappingTests {
    // Bodies as etcd 3.4's gateway sends them (see the gateway notes).
    @Test(
        arguments: [
            (
                400,
                #"{"error":"etcdserver: too many operations in txn request","message":"etcdserver: too many operations in txn request","code":3}"#,
                EtcdError.Code.limitExceeded, 3
            ),
            (400, #"{"error":"etcdserver: request is too large","message":"etcdserver: request is too large","code":3}"#, .limitExceeded, 3),
            (
                429, #"{"error":"grpc: received message larger than max","message":"grpc: received message larger than max","code":8}"#,
                .limitExceeded, 8
            ),
            (
                400,
                #"{"error":"etcdserver: mvcc: required revision has been compacted","#
                    + #""message":"etcdserver: mvcc: required revision has been compacted","code":11}"#,
                .compacted, 11
            ),
            (
                404, #"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#, .leaseNotFound,
                5
            ),
            (503, #"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#, .unavailable, 14),
            // While etcd shuts down (seen in ReliabilityTests' etcd restart): transient.
            (
                408, #"{"error":"grpc: the client connection is closing","message":"grpc: the client connection is closing","code":1}"#, .unavailable,
                1
            ),
            (401, #"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#, .authentication, 16),
            (403, #"{"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7}"#, .permissionDenied, 7),
            (
                400,
                #"{"error":"etcdserver: duplicate key given in txn request","message":"etcdserver: duplicate key given in txn request","code":3}"#,
                .server, 3
            ),
            // etcd 3.1's bodies have no "message", and some codes differ.
            (400, #"{"error":"auth: user name is empty","code":2}"#, .authentication, 2),
            (403, #"{"error":"etcdserver: mvcc: database space exceeded","code":8}"#, .noSpace, 8),
            (400, #"{"error":"etcdserver: mvcc: required revision has been compacted","code":11}"#, .compacted, 11),
            (404, "404 page not found\n", .httpStatus, nil),
            (405, "Method Not Allowed\n", .httpStatus, nil),
        ] as [(Int, String, EtcdError.Code, Int?)])
    func httpErrorsMapToCodes(status: Int, body: String, expected: EtcdError.Code, grpcCode: Int?) {
        let error = EtcdClient.mapHTTPError(status: status, body: Array(body.utf8), subject: "key \"/k\"", endpoint: "http://e:1")
        #expect(error.code == expected)
        #expect(error.httpStatus == status)
        #expect(error.grpcCode == grpcCode)
        #expect(error.endpoint == "http://e:1")
        #expect(!error.message.isEmpty)
        // etcd's own words reach the user, whether or not the body has "message".
        struct Body: Decodable { var error: String }
        if let etcdSays = try? JSONDecoder().decode(Body.self, from: Data(body.utf8)).error {
            #expect(error.message.contains(etcdSays))
        }
    }

    @Test func duplicateKeyInTxnIsAServerErrorFromEtcd() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let key = bytes(uniquePrefix("dup") + "k")
            let error = #expect(throws: EtcdError.self) {
                try client.txn(TxnRequest(success: [.put(PutRequest(key: key, value: [1])), .put(PutRequest(key: key, value: [2]))]))
            }
            #expect(error?.code == .server)
            #expect(error?.message.contains("duplicate key") == true)
        }
    }

    @Test func oneClientServesManyThreadsAtOnce() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let prefix = uniquePrefix("threads")
            let failures = Mutex<[String]>([])
            let threads = 8
            let putsPerThread = 40
            let done = DispatchGroup()
            for thread in 0..<threads {
                done.enter()
                Thread {
                    defer { done.leave() }
                    for index in 0..<putsPerThread {
                        do {
                            try client.put(PutRequest(key: bytes(prefix + "\(thread)/\(index)"), value: bytes("\(thread)-\(index)")))
                        } catch {
                            failures.withLock { $0.append("\(error)") }
                        }
                    }
                }.start()
            }
            done.wait()
            #expect(failures.withLock { $0 }.isEmpty)
            var values = Set<String>()
            try client.scanPrefix(bytes(prefix), pageSize: 100) { page in values.formUnion(page.map { text($0.value) }) }
            #expect(values.count == threads * putsPerThread)
            #expect(values.contains("7-39"))
        }
    }
}
