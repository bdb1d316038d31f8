import EtcdGateway
import EtcdTestSupport
import Foundation
import Testing

@Suite("Maintenance against a real etcd")
struct MaintenanceTests {
    @Test func statusReportsVersionSizeAndLeader() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let put = try client.put(PutRequest(key: bytes(uniquePrefix("status") + "k"), value: bytes("v")))
            let status = try client.status()
            #expect(status.version.hasPrefix("3."))
            #expect(status.dbSize > 0)
            #expect(status.leader != 0)
            #expect(status.leader == status.header.memberID)
            #expect(status.raftIndex > 0)
            #expect(status.raftTerm > 0)
            #expect(status.header.revision >= put.header.revision)
        }
    }

    @Test func snapshotStreamsToAFileEtcdctlAccepts() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start()
            defer { server.stop() }
            let client = try server.makeClient()
            // Enough data for several 32 KiB stream chunks.
            let value = [UInt8](repeating: 0x7a, count: 4096)
            for batch in 0..<5 {
                let puts = (0..<100).map { RequestOp.put(PutRequest(key: bytes("/snap/\(batch)/\($0)"), value: value)) }
                #expect(try client.txn(TxnRequest(success: puts)).succeeded)
            }
            let revision = try client.status().header.revision
            let path = server.workDir + "/backup.db"
            let written = try client.snapshot(toFile: path)
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect(written > 2_000_000)
            #expect((attributes[.size] as? NSNumber)?.int64Value == written)

            let output = try runCommand(EtcdBinaries.etcdctl, ["snapshot", "status", path, "-w", "json"])
            let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
            #expect((json["revision"] as? NSNumber)?.int64Value == revision)
            #expect(((json["totalKey"] as? NSNumber)?.intValue ?? 0) >= 500)

            // Asked to stop part way (a signal): the transfer ends at the piece that asked,
            // and no file is left that could pass for a snapshot.
            let stoppedPath = server.workDir + "/stopped.db"
            var asked = 0
            let stopped = #expect(throws: EtcdError.self) {
                try client.snapshot(
                    toFile: stoppedPath,
                    cancelled: {
                        asked += 1
                        return asked > 3
                    })
            }
            #expect(stopped?.code == .cancelled)
            #expect(asked == 4)
            #expect(!FileManager.default.fileExists(atPath: stoppedPath))
        }
    }

    @Test func snapshotNeedsRootUnderAuth() async throws {
        try await onOwnThread {
            let server = try EtcdServer.start(auth: true)
            defer { server.stop() }
            let rootClient = try server.makeClient(credentials: server.rootCredentials)
            try rootClient.put(PutRequest(key: bytes("/s/k"), value: bytes("v")))
            let path = server.workDir + "/root.db"
            #expect(try rootClient.snapshot(toFile: path) > 0)
            try runCommand(EtcdBinaries.etcdctl, ["snapshot", "status", path])

            // Generous: etcd checks the password with bcrypt, which takes seconds on a loaded machine.
            let limited = try server.makeClient(requestTimeout: .seconds(20))
            let deniedPath = server.workDir + "/denied.db"
            let error = #expect(throws: EtcdError.self) { try limited.snapshot(toFile: deniedPath) }
            #expect(error?.code == .permissionDenied)
            #expect(error?.message.contains("root role") == true)
            #expect(!FileManager.default.fileExists(atPath: deniedPath))
        }
    }

    @Test func snapshotToUnwritablePathFailsClearly() async throws {
        try await onOwnThread {
            let client = try EtcdServer.shared().makeClient()
            let error = #expect(throws: EtcdError.self) { try client.snapshot(toFile: "/nonexistent-dir/x.db") }
            #expect(error?.message.contains("/nonexistent-dir/x.db") == true)
        }
    }
}
