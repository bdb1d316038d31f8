import EtcdGateway

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where and when a backup was taken: what `restore` compares with the cluster it is
/// pointed at. Written beside the backup as `PATH.origin.json` and listed in `PATH.sha256`
/// (`DumpWriter.finish(sidecar:)`); backups written before it existed have none and are
/// "origin unknown".
public struct BackupOrigin: Codable, Sendable, Hashable {
    public static let fileSuffix = ".origin.json"

    /// etcd's cluster ID and the ID of the member that answered, in hex as `etcdctl
    /// endpoint status` prints them; nil where the store reports none. Two etcds deployed
    /// with the same names and peer URLs get the same cluster ID, so it is one signal among
    /// several, never the whole answer.
    public var clusterID: String?
    public var memberID: String?
    /// The endpoints the backup was read through (as given; for the operator to recognise).
    public var endpoints: [String]
    /// The revision every key was read at.
    public var revision: Int64
    public var keys: Int
    /// `KeyFingerprint` of the backup's (key, create revision) pairs.
    public var keyFingerprint: String
    public var takenAt: String
    public var toolVersion: String?

    public init(
        clusterID: String?, memberID: String?, endpoints: [String], revision: Int64, keys: Int, keyFingerprint: String,
        takenAt: String, toolVersion: String?
    ) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.endpoints = endpoints
        self.revision = revision
        self.keys = keys
        self.keyFingerprint = keyFingerprint
        self.takenAt = takenAt
        self.toolVersion = toolVersion
    }

    /// The origin recorded beside the backup at `path`, nil for a backup without one.
    public static func read(backup path: String) throws(MigrationError) -> BackupOrigin? {
        let bytes: [UInt8]?
        do {
            bytes = try readDumpSidecar(path: path, suffix: fileSuffix)
        } catch {
            throw MigrationError(.restoreFailed, "refusing to restore \(path): \(error)")
        }
        guard let bytes else { return nil }
        do {
            return try JSONDecoder().decode(BackupOrigin.self, from: Data(bytes))
        } catch {
            throw MigrationError(.restoreFailed, "refusing to restore \(path): \(path)\(fileSuffix) is not a backup origin record (\(error))")
        }
    }

    var encoded: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return Array((try? encoder.encode(self)) ?? Data()) + [0x0a]
    }
}

/// Which etcd cluster a store talks to: read from a response header, which every etcd
/// version fills (the maintenance status is not served by every gateway).
public struct ClusterIdentity: Sendable, Hashable, Codable {
    public var clusterID: String?
    public var memberID: String?
    public var endpoints: [String]
    /// The cluster's revision when it was asked.
    public var revision: Int64

    public init(clusterID: String?, memberID: String?, endpoints: [String], revision: Int64) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.endpoints = endpoints
        self.revision = revision
    }

    public static func read(store: any KeyValueService, probe key: [UInt8]) throws(MigrationError) -> ClusterIdentity {
        let header = try etcd("asking etcd which cluster it is") { () throws(EtcdError) in
            try store.range(.prefix(key, countOnly: true))
        }.header
        // An in-memory store answers zeros: no identity rather than a fake one.
        return ClusterIdentity(
            clusterID: header.clusterID == 0 ? nil : String(header.clusterID, radix: 16),
            memberID: header.memberID == 0 ? nil : String(header.memberID, radix: 16),
            endpoints: (store as? EtcdClient)?.configuration.endpoints ?? [], revision: header.revision)
    }
}

/// An order-independent fingerprint of a set of (key, create revision) pairs: the sum,
/// modulo 2^256, of the SHA-256 of each pair. A backup is written in mod-revision order and
/// etcd lists keys in key order; a sum needs neither sorted, so both sides stream. The
/// create revision makes it a cluster's, not just a layout's: two clusters seldom hold the
/// same keys created at the same revisions. (Not a defence against forgery: the sidecar's
/// checksum is what says the file was not altered.)
struct KeyFingerprint {
    private var words: [UInt64] = [0, 0, 0, 0]
    private(set) var count = 0

    mutating func add(key: [UInt8], createRevision: Int64) {
        var digest = SHA256Digest()
        var bytes = SpillBytes()
        bytes.append(key)
        bytes.append(createRevision)
        digest.update(bytes.bytes)
        let hash = digest.finalize()
        var carry: UInt64 = 0
        // Big-endian words, least significant last.
        for i in stride(from: 3, through: 0, by: -1) {
            var word: UInt64 = 0
            for b in hash[(i * 8)..<(i * 8 + 8)] { word = word << 8 | UInt64(b) }
            let (partial, overflow1) = words[i].addingReportingOverflow(word)
            let (sum, overflow2) = partial.addingReportingOverflow(carry)
            words[i] = sum
            carry = (overflow1 ? 1 : 0) + (overflow2 ? 1 : 0)
        }
        count += 1
    }

    var hex: String {
        words.map { word in
            let digits = String(word, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }.joined()
    }
}
