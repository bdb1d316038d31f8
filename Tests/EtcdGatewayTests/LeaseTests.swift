import EtcdGateway
import EtcdTestSupport
import Foundation
import Synchronization
import Testing

/// Records what `onLost` reported.
final class LossRecorder: Sendable {
    private let errors = Mutex<[EtcdError]>([])
    var reported: [EtcdError] { errors.withLock { $0 } }
    func record(_ error: EtcdError) { errors.withLock { $0.append(error) } }
}

@Suite("Leases against a real etcd")
struct LeaseTests {
    @Test func grantTimeToLiveWithKeysAndRevoke() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let prefix = uniquePrefix("lease")
            let lease = try client.leaseGrant(ttl: 30)
            #expect(lease.id != 0)
            #expect(lease.ttl == 30)
            try client.put(PutRequest(key: bytes(prefix + "a"), value: bytes("1"), lease: lease.id))
            try client.put(PutRequest(key: bytes(prefix + "b"), value: bytes("2"), lease: lease.id))

            let alive = try client.leaseTimeToLive(id: lease.id, keys: true)
            #expect(alive.id == lease.id)
            #expect(alive.grantedTTL == 30)
            #expect(alive.ttl > 0 && alive.ttl <= 30)
            #expect(Set(alive.keys.map(text)) == [prefix + "a", prefix + "b"])
            #expect(try client.leaseTimeToLive(id: lease.id, keys: false).keys.isEmpty)

            #expect(try client.leaseKeepAliveOnce(id: lease.id) == 30)

            try client.leaseRevoke(id: lease.id)
            // Revoke deletes every attached key.
            #expect(try client.range(.prefix(bytes(prefix), countOnly: true)).count == 0)
            #expect(try client.leaseTimeToLive(id: lease.id, keys: true).ttl == -1)
            // A dead lease's keep-alive answer has no TTL.
            #expect(try client.leaseKeepAliveOnce(id: lease.id) == nil)
            let again = #expect(throws: EtcdError.self) { try client.leaseRevoke(id: lease.id) }
            #expect(again?.code == .leaseNotFound)
            #expect(again?.grpcCode == 5)
        }
    }

    @Test func putWithUnknownLeaseIsLeaseNotFound() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let error = #expect(throws: EtcdError.self) {
                try client.put(PutRequest(key: bytes(uniquePrefix("nolease") + "k"), value: bytes("v"), lease: 0x1234_5678))
            }
            #expect(error?.code == .leaseNotFound)
        }
    }

    @Test func backgroundKeeperHoldsAFiveSecondLeaseForTwentySeconds() async throws {
        let (client, lease, keeper, recorder) = try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let lease = try client.leaseGrant(ttl: 5)
            let recorder = LossRecorder()
            let keeper = client.startKeepAlive(leaseID: lease.id, ttl: lease.ttl) { recorder.record($0) }
            return (client, lease, keeper, recorder)
        }
        try await Task.sleep(for: .seconds(20))
        try await onOwnThread {
            let remaining = try client.leaseTimeToLive(id: lease.id, keys: false)
            #expect(remaining.ttl > 0, "the lease expired although it was kept alive")
            #expect(!keeper.isLost)
            #expect(recorder.reported.isEmpty)
            keeper.stop()
            try client.leaseRevoke(id: lease.id)
        }
    }

    @Test func keeperReportsRevokedLeaseAsLost() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let lease = try client.leaseGrant(ttl: 6)
            let recorder = LossRecorder()
            let keeper = client.startKeepAlive(leaseID: lease.id, ttl: lease.ttl) { recorder.record($0) }
            defer { keeper.stop() }
            usleep(300_000)
            #expect(!keeper.isLost)
            try client.leaseRevoke(id: lease.id)
            // The next keep-alive (every TTL/3 = 2 s) finds the lease gone.
            #expect(eventually(timeout: 4) { keeper.isLost })
            #expect(recorder.reported.count == 1)
            #expect(recorder.reported.first?.code == .leaseNotFound)
        }
    }

    @Test func keeperReportsLossWhenKeepAlivesStopGettingThrough() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient(requestTimeout: .seconds(2))
            let lease = try client.leaseGrant(ttl: 3)
            let recorder = LossRecorder()
            let keeper = client.startKeepAlive(leaseID: lease.id, ttl: lease.ttl) { recorder.record($0) }
            defer { keeper.stop() }
            server.pause()
            defer { server.resume() }
            let pausedAt = Date()
            // Without answers, the keeper must give up before the TTL is over.
            #expect(eventually(timeout: 5) { keeper.isLost })
            // TTL − margin after the last confirmed keep-alive, which came before the pause,
            // plus scheduling slack: a machine under a load of 70 has delayed it by 1.3 s. (That
            // no call waits past the keeper's deadline is DialectTests' precise check.)
            #expect(Date().timeIntervalSince(pausedAt) < 4)
            #expect(recorder.reported.count == 1)
            #expect(recorder.reported.first?.message.contains("presumed expired") == true)
            // Why, for an operator whose port-forward or etcd went away: the keep-alive's own failure.
            #expect(
                recorder.reported.first?.message.contains("The last keep-alive failed: ") == true,
                "\(recorder.reported.first?.message ?? "")")
        }
    }
}
