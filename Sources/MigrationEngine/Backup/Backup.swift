import Dispatch
import EtcdGateway
import Logging
import Synchronization

/// A logical backup: every key under the roots as it was at one revision, in mod-revision
/// order, in the dump format (`DumpWriter`), with a `.sha256` beside it.
public struct BackupInfo: Codable, Sendable, Hashable {
    public var path: String
    public var sha256: String
    public var keys: Int
    public var revision: Int64
}

public enum Backup {
    /// Writes `keys` (as read at `revision`, in mod-revision order) to `path`. Fails with
    /// `.backupFailed` before touching etcd if the file cannot be created or written.
    public static func write<Keys: KeyRevisionBatches>(
        store: any KeyValueService, keys: Keys, count: Int, revision: Int64, to path: String, logger: Logger,
        progress: (Int) -> Void = { _ in }
    ) throws(MigrationError) -> BackupInfo {
        let writer: DumpWriter
        do {
            writer = try DumpWriter(path: path)
        } catch {
            throw MigrationError(.backupFailed, "cannot create the backup file \(path): \(error). Nothing was written to etcd; choose another --backup path.")
        }
        // Values are read in rounds of `parallelReads` txns at once (the reads are
        // independent; each is a pinned-revision range), then written in order.
        let chunk = 100
        let parallelReads = 4
        var source = keys
        var done = 0
        do {
            while true {
                let round = try source.next(max: chunk * parallelReads)
                if round.isEmpty { break }
                let chunkStarts = Array(stride(from: 0, to: round.count, by: chunk))
                let results = Mutex<[Int: Result<[KeyValue?], MigrationError>]>([:])
                DispatchQueue.concurrentPerform(iterations: chunkStarts.count) { i in
                    let slice = round[chunkStarts[i]..<min(chunkStarts[i] + chunk, round.count)]
                    let result = Result { () throws(MigrationError) in try fetchValues(store: store, keys: slice, revision: revision) }
                    results.withLock { $0[i] = result }
                }
                let fetched = results.withLock { $0 }
                for (i, chunkStart) in chunkStarts.enumerated() {
                    let slice = round[chunkStart..<min(chunkStart + chunk, round.count)]
                    for (entry, kv) in zip(slice, try fetched[i]!.get()) {
                        guard let kv else {
                            throw MigrationError(.backupFailed, "\(entry.key.printable) vanished at revision \(revision) while backing up")
                        }
                        try writer.write(kv)
                    }
                }
                done += round.count
                progress(done)
            }
            let sha = try writer.finish()
            logger.info("backup written", metadata: ["path": "\(path)", "keys": "\(done)", "sha256": "\(sha)"])
            return BackupInfo(path: path, sha256: sha, keys: done, revision: revision)
        } catch let error as MigrationError {
            writer.abandon()
            throw error
        } catch {
            writer.abandon()
            throw MigrationError(.backupFailed, "writing the backup \(path) failed: \(error). Nothing was written to etcd; free some space or choose another --backup path.")
        }
    }

    /// Backs up every key under `prefixes` at the current revision. The keys' order goes
    /// through the on-disk sort, so memory does not grow with the cluster.
    public static func take(
        store: any KeyValueService, prefixes: [[UInt8]], to path: String, logger: Logger
    ) throws(MigrationError) -> BackupInfo {
        let order = try RevisionOrderSpill()
        var revision: Int64 = 0
        for prefix in prefixes {
            var pages = store.pages(prefix: prefix, revision: revision, keysOnly: true)
            while let page = try etcd("listing \(prefix.printable)", { () throws(EtcdError) in try pages.next() }) {
                revision = pages.revision
                for kv in page { try order.append(KeyRevision(key: kv.key, modRevision: kv.modRevision), to: "") }
            }
        }
        try order.finish()
        return try write(
            store: store, keys: order.reader(for: ""), count: order.count(of: ""), revision: revision, to: path, logger: logger)
    }
}
