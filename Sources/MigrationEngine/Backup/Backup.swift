import EtcdGateway
import EtcdModel
import Logging
import PlatformShim

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A logical backup: every key under the roots as it was at one revision, in mod-revision
/// order, in the dump format (`DumpWriter`), with a `.sha256` beside it and, when the
/// cluster's identity is known, `.origin.json` (`BackupOrigin`).
public struct BackupInfo: Codable, Sendable, Hashable {
    public var path: String
    public var sha256: String
    public var keys: Int
    public var revision: Int64
    public var origin: BackupOrigin?
}

public enum Backup {
    /// About how long writing a backup of `keys` keys averaging `averageBytes` takes here:
    /// the same work (spill read, JSON lines, hashing, the file and its fsync) done for a
    /// sample of up to 4,000 keys in the temp directory, scaled. Nil when the sample could not
    /// be written (the forecast then leaves the backup out rather than guess).
    public static func calibratedSeconds(keys: Int, averageBytes: Int) -> Double? {
        guard keys > 0 else { return 0 }
        let sample = min(keys, 4000)
        let directory = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let path = "\(directory)/pachmigrate-calibration-\(UUID().uuidString).jsonl"
        defer {
            PosixFile.remove(path)
            PosixFile.remove(path + ".sha256")
        }
        do throws(MigrationError) {
            let spill = try RevisionOrderSpill()
            let value = [UInt8](repeating: 0x61, count: max(1, averageBytes - 40))
            for i in 0..<sample {
                let key = Array("calibration/a-typical-record-\(i)".utf8)
                let kv = KeyValue(key: key, value: value, createRevision: Int64(i + 1), modRevision: Int64(i + 1), version: 1, lease: 0)
                try spill.append(KeyRevision(key: key, modRevision: Int64(i + 1), payload: kv.spilled), to: "")
            }
            try spill.finish()
            let start = ContinuousClock.now
            // Silent: its "backup written" would tell an operator (and a log watcher keyed on
            // the event) that a backup exists when none was asked for.
            let silent = Logger(label: "calibration", factory: { _ in SwiftLogNoOpLogHandler() })
            _ = try write(records: spill.reader(for: ""), revision: 0, source: nil, toolVersion: nil, to: path, logger: silent)
            return seconds(ContinuousClock.now - start) * Double(keys) / Double(sample)
        } catch {
            return nil
        }
    }

    /// Fails with `.backupFailed` unless a backup file can be created at `path` (or one is
    /// there already, for `reuse` to judge): so that a mistyped directory or a read-only
    /// mount is found before the scan, which takes minutes on a large cluster, not after it.
    static func requireCreatable(_ path: String) throws(MigrationError) {
        guard !PosixFile.exists(path) else { return }
        do {
            let file = try PosixFile.openForWriting(path, overwrite: false)
            try? file.close()
            PosixFile.remove(path)
        } catch {
            throw MigrationError(.backupFailed, "the backup \(path): \(error.message). Nothing was written to etcd.")
        }
    }

    /// A complete backup already at `path` that holds exactly `records` (the same keys,
    /// values and revisions, in the same order) is this run's own: an earlier attempt took
    /// it and stopped before its first write to etcd (a re-run Job with a fixed backup path,
    /// say). It is kept rather than written again. Returns nil when there is no file at
    /// `path`; fails with `.backupFailed`, naming why, when there is one that is incomplete,
    /// altered, or a backup of anything else, which is never overwritten.
    public static func reuse<Records: KeyRevisionBatches>(
        records: Records, revision: Int64, at path: String, logger: Logger
    ) throws(MigrationError) -> BackupInfo? {
        guard PosixFile.exists(path) else { return nil }
        func refuse(_ why: String) -> MigrationError {
            MigrationError(
                .backupFailed,
                "the backup file \(path) already exists and \(why); it is left as it is. Nothing was written to etcd.")
        }
        let sha: String
        do {
            sha = try verifyDumpChecksum(path: path)
        } catch {
            throw refuse("is not a complete backup (\(error.message))")
        }
        var source = records
        var keys = 0
        do {
            let reader = try DumpReader(path: path)
            while case let batch = try source.next(max: 1000), !batch.isEmpty {
                for entry in batch {
                    let kv = try KeyValue(spilled: entry)
                    guard let stored = try reader.read(), stored == kv else {
                        throw refuse("holds something else than the cluster holds now (first difference at \(kv.key.printable))")
                    }
                    keys += 1
                }
            }
            if try reader.read() != nil { throw refuse("holds more keys than the cluster holds now") }
        } catch let error as MigrationError {
            throw error
        } catch {
            throw refuse("cannot be compared with the cluster (\(error))")
        }
        let origin = try? BackupOrigin.read(backup: path)
        logger.notice("reusing the backup an earlier attempt wrote: it holds exactly what the cluster holds", metadata: ["path": "\(path)"])
        return BackupInfo(path: path, sha256: sha, keys: keys, revision: revision, origin: origin ?? nil)
    }

    /// Writes `records` (keys with their values as read at `revision`, spilled by the scan
    /// as `KeyValue.spilled`, in mod-revision order) to `path`. The values come from the
    /// read that pinned `revision`, so the backup costs no second read of the cluster. Fails
    /// with `.backupFailed` before touching etcd if the file cannot be created or written.
    /// A stop asked for while it writes deletes the unfinished file (no `.sha256` is
    /// written), so nothing that could pass for a complete backup is left. `source` (the
    /// cluster the records were read from) goes into the backup's origin, so that `restore`
    /// can tell whether it is pointed at the same cluster.
    public static func write<Records: KeyRevisionBatches>(
        records: Records, revision: Int64, source: ClusterIdentity?, toolVersion: String?, to path: String,
        stop: StopSignal = StopSignal(), logger: Logger,
        progress: (Int) -> Void = { _ in }
    ) throws(MigrationError) -> BackupInfo {
        let writer: DumpWriter
        do {
            writer = try DumpWriter(path: path)
        } catch {
            // A file there without its checksum is most often an earlier backup that was killed
            // or quit half way: say so, since an operator may take it for a finished one.
            let unfinished =
                error.code == .alreadyExists && !PosixFile.exists(path + ".sha256")
                ? " (it has no \(PosixFile.basename(path)).sha256 beside it: an unfinished backup, of a run killed or quit half way)"
                : ""
            throw MigrationError(
                .backupFailed, "cannot create the backup file \(path): \(error)\(unfinished). Nothing was written to etcd.")
        }
        var records = records
        var done = 0
        var fingerprint = KeyFingerprint()
        do {
            while case let batch = try records.next(max: 1000), !batch.isEmpty {
                for entry in batch {
                    let kv = try KeyValue(spilled: entry)
                    fingerprint.add(key: kv.key, createRevision: kv.createRevision)
                    try writer.write(kv)
                }
                done += batch.count
                progress(done)
                try stop.checkBeforeWriting("the backup (the unfinished file \(path) was deleted)")
            }
            let origin = source.map {
                BackupOrigin(
                    clusterID: $0.clusterID, memberID: $0.memberID, endpoints: $0.endpoints, revision: revision, keys: done,
                    keyFingerprint: fingerprint.hex, takenAt: timestamp(), toolVersion: toolVersion)
            }
            let sha = try writer.finish(sidecar: origin.map { (BackupOrigin.fileSuffix, $0.encoded) })
            // A notice: the milestone that says a rollback is possible from here on.
            logger.notice(
                "backup written", metadata: ["event": "backup-written", "path": "\(path)", "keys": .stringConvertible(done), "sha256": "\(sha)"])
            return BackupInfo(path: path, sha256: sha, keys: done, revision: revision, origin: origin)
        } catch let error as MigrationError {
            writer.abandon()
            throw error
        } catch {
            writer.abandon()
            throw MigrationError(
                .backupFailed,
                "writing the backup \(path) failed: \(error). Nothing was written to etcd.")
        }
    }

    /// Backs up every key under `prefixes` at the current revision: one read of each key
    /// with its value, sorted into mod-revision order on disk, so memory does not grow with
    /// the cluster.
    public static func take(
        store: any KeyValueService, prefixes: [[UInt8]], to path: String, toolVersion: String? = nil, stop: StopSignal = StopSignal(),
        logger: Logger
    ) throws(MigrationError) -> BackupInfo {
        let source = try prefixes.first.map { (prefix) throws(MigrationError) in try ClusterIdentity.read(store: store, probe: prefix) }
        let order = try RevisionOrderSpill()
        var revision: Int64 = 0
        for prefix in prefixes {
            var pages = store.pages(prefix: prefix, revision: revision)
            while let page = try etcd("reading \(prefix.printable)", { () throws(EtcdError) in try pages.next() }) {
                revision = pages.revision
                for kv in page { try order.append(KeyRevision(key: kv.key, modRevision: kv.modRevision, payload: kv.spilled), to: "") }
                try stop.checkBeforeWriting("the read for the backup")
            }
        }
        try order.finish()
        return try write(
            records: order.reader(for: ""), revision: revision, source: source, toolVersion: toolVersion, to: path, stop: stop,
            logger: logger)
    }
}
