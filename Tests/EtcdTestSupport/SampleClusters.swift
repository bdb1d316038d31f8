import EtcdGateway
import EtcdModel
import Foundation
import MigrationEngine

/// The sample clusters under `testdata/` (written by Pachyderm 1.4.8's own code).
public enum SampleData {
    public static var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("testdata/pachyderm-1.4.8-sample").path
    }

    public static func before(_ sample: String) -> String { path(sample, "before.etcd.jsonl") }

    public static func path(_ sample: String, _ file: String) -> String { "\(root)/\(sample)/\(file)" }

    /// The sample as Pachyderm 1.4.8 left it, in file (mod-revision) order.
    public static func keyValues(before sample: String) throws -> [KeyValue] { try keyValues(before(sample)) }

    /// Pachyderm 1.5.0's own result: key → exact value bytes (records only, no index keys).
    public static func pachydermAfter(_ sample: String) throws -> [String: [UInt8]] {
        let text = try String(contentsOfFile: path(sample, "after-pachyderm-1.5.0.decoded.jsonl"), encoding: .utf8)
        var out: [String: [UInt8]] = [:]
        for line in text.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            if object["index"] as? Bool == true { continue }
            out[object["key"] as! String] = [UInt8](Data(base64Encoded: object["value_b64"] as! String)!)
        }
        return out
    }

    public static func keyValues(_ path: String) throws -> [KeyValue] {
        try DumpReader(path: path).readAll()
    }
}

extension EtcdClient {
    /// Loads a dump into an empty etcd as its writer did: lines sharing a mod revision go in
    /// one txn, in file order, so the relative revisions (and order) are reproduced.
    public func seed(dump path: String) throws {
        try seed(try SampleData.keyValues(path))
    }

    /// Loads key-values (in mod-revision order) as `seed(dump:)` does.
    public func seed(_ kvs: [KeyValue]) throws {
        var group: [KeyValue] = []
        func flush() throws {
            guard !group.isEmpty else { return }
            _ = try txn(TxnRequest(success: group.map { .put(PutRequest(key: $0.key, value: $0.value)) }))
            group.removeAll()
        }
        for kv in kvs {
            if let first = group.first, first.modRevision != kv.modRevision || group.count >= 100 { try flush() }
            group.append(kv)
        }
        try flush()
    }

    /// Every key under `prefix` with its value, in mod-revision order (ties by key).
    public func dumpState(prefix: String) throws -> [KeyValue] {
        var all: [KeyValue] = []
        try scanPrefix(Array(prefix.utf8)) { all += $0 }
        return all.sorted { $0.modRevision != $1.modRevision ? $0.modRevision < $1.modRevision : $0.key.lexicographicallyPrecedes($1.key) }
    }
}

/// Key → value of a state, for equality checks.
public func valuesByKey(_ kvs: [KeyValue]) -> [String: [UInt8]] {
    Dictionary(uniqueKeysWithValues: kvs.map { (String(decoding: $0.key, as: UTF8.self), $0.value) })
}

/// Per group (as `group` assigns it; nil = ignored), the keys in mod-revision order.
public func orderByGroup(_ kvs: [KeyValue], group: ([UInt8]) -> String?) -> [String: [String]] {
    var result: [String: [String]] = [:]
    for kv in kvs {  // kvs are in mod-revision order
        if let g = group(kv.key) { result[g, default: []].append(String(decoding: kv.key, as: UTF8.self)) }
    }
    return result
}

/// The at-rest sample with every record copied `scale` times under new keys in the same
/// ordering groups (`…-copy<n>` after the last path segment), interleaved by revision.
public func scaledSample(_ scale: Int) throws -> [KeyValue] {
    let before = try SampleData.keyValues(SampleData.before("at-rest"))
    var kvs: [KeyValue] = []
    var revision: Int64 = 1
    for copy in 0...scale {
        for kv in before where copy == 0 || orderingGroup(kv.key) != nil {
            var next = kv
            if copy > 0 { next.key += bytes("-copy\(copy)") }
            next.createRevision = revision
            next.modRevision = revision
            revision += 1
            kvs.append(next)
        }
    }
    return kvs
}
