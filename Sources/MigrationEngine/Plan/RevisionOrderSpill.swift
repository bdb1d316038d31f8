import PlatformShim
import SystemPackage

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A source of keys in (mod revision, key) order, read in batches.
public protocol KeyRevisionBatches {
    /// Up to `max` more entries; empty when done.
    mutating func next(max: Int) throws(MigrationError) -> [KeyRevision]
}

/// Keys and their mod revisions (with their payloads), in named groups (one per lane, one
/// for the backup), each read back in (mod revision, key) order — held on disk, not in
/// memory, so a scan of a cluster of any size needs the same memory. An external merge
/// sort: entries are buffered up to `chunk` entries or `byteBudget` bytes (payloads carry
/// values, so the count alone would not bound memory), sorted and written as runs to an
/// unlinked temp file; a group is read by merging its runs.
public final class RevisionOrderSpill: @unchecked Sendable {
    // Appends happen during the (single-threaded) scan; reads only after `finish()`, each
    // reader with its own cursor and positioned reads, so readers on several threads are safe.
    private let file: FileDescriptor
    private var end: Int64 = 0
    private var buffers: [String: [KeyRevision]] = [:]
    private var buffered = 0
    private var bufferedBytes = 0
    private var runs: [String: [(offset: Int64, count: Int)]] = [:]
    public private(set) var counts: [String: Int] = [:]
    let chunk: Int
    let byteBudget: Int

    public init(chunk: Int = 20_000, byteBudget: Int = 4 << 20) throws(MigrationError) {
        self.chunk = max(1, chunk)
        self.byteBudget = max(1, byteBudget)
        let directory = FileManager.default.temporaryDirectory.path
        do throws(Errno) {
            file = try Posix.unlinkedTemporaryFile(in: directory, prefix: "pachmigrate-order")
        } catch {
            throw MigrationError(
                .invalidState,
                "cannot create a temporary file in \(directory): \(error). Nothing was written to etcd; set TMPDIR to a writable directory."
            )
        }
    }

    deinit { try? file.close() }

    public func append(_ entry: KeyRevision, to group: String) throws(MigrationError) {
        buffers[group, default: []].append(entry)
        counts[group, default: 0] += 1
        buffered += 1
        bufferedBytes += entry.key.count + entry.payload.count + 48
        if buffered >= chunk || bufferedBytes >= byteBudget { try flushAll() }
    }

    /// Writes what is buffered; call once all entries are appended.
    public func finish() throws(MigrationError) { try flushAll() }

    public func count(of group: String) -> Int { counts[group] ?? 0 }

    /// The group's entries in (mod revision, key) order. `budget`: bytes its read buffers
    /// share (the writer, holding a reader per lane, gives each a share of its own).
    public func reader(for group: String, budget: Int = 256 * 1024) -> SpillReader {
        SpillReader(file: file, runs: runs[group] ?? [], budget: budget, owner: self)
    }

    private func flushAll() throws(MigrationError) {
        // Encoded and written in pieces of about `piece` bytes: a whole run's copy would double
        // the memory the budget allows.
        let piece = 1 << 20
        var bytes: [UInt8] = []
        bytes.reserveCapacity(piece + 64 * 1024)
        for (group, var entries) in buffers where !entries.isEmpty {
            entries.sort(by: ClusterScan.revisionOrder)
            let start = end
            for entry in entries {
                withUnsafeBytes(of: entry.modRevision.littleEndian) { bytes.append(contentsOf: $0) }
                withUnsafeBytes(of: UInt32(entry.key.count).littleEndian) { bytes.append(contentsOf: $0) }
                withUnsafeBytes(of: UInt32(entry.payload.count).littleEndian) { bytes.append(contentsOf: $0) }
                bytes.append(contentsOf: entry.key)
                bytes.append(contentsOf: entry.payload)
                if bytes.count >= piece { try write(&bytes) }
            }
            try write(&bytes)
            runs[group, default: []].append((start, entries.count))
        }
        buffers.removeAll(keepingCapacity: false)
        buffered = 0
        bufferedBytes = 0
    }

    /// Appends `bytes` to the file at `end`, and empties it.
    private func write(_ bytes: inout [UInt8]) throws(MigrationError) {
        do {
            _ = try file.writeAll(toAbsoluteOffset: end, bytes)
        } catch {
            throw MigrationError(
                .invalidState,
                "cannot write the scan's temporary sort file in \(FileManager.default.temporaryDirectory.path): "
                    + "\(error). Nothing was written to etcd; free space there or set TMPDIR to another directory."
            )
        }
        end += Int64(bytes.count)
        bytes.removeAll(keepingCapacity: true)
    }
}

/// Merges one group's sorted runs.
public struct SpillReader: KeyRevisionBatches {
    private struct Run {
        var offset: Int64
        var remaining: Int
        var buffer: [UInt8] = []
        var position = 0
        var head: KeyRevision?
    }
    private let file: FileDescriptor
    private var runs: [Run]
    private let owner: RevisionOrderSpill  // keeps the file open while reading

    private let readSize: Int

    init(file: FileDescriptor, runs: [(offset: Int64, count: Int)], budget: Int, owner: RevisionOrderSpill) {
        self.file = file
        self.owner = owner
        self.runs = runs.map { Run(offset: $0.offset, remaining: $0.count) }
        // A bigger cluster has more runs; the reader's buffers share a fixed budget, so its
        // memory does not grow with the cluster (16 KiB each up to 16 runs, then less).
        readSize = max(1024, min(16 * 1024, budget / max(1, runs.count)))
    }

    public mutating func next(max: Int) throws(MigrationError) -> [KeyRevision] {
        var out: [KeyRevision] = []
        out.reserveCapacity(max)
        for i in runs.indices where runs[i].head == nil { try advance(i) }
        while out.count < max {
            var best: Int?
            for i in runs.indices {
                guard let head = runs[i].head else { continue }
                if let b = best, let current = runs[b].head, !ClusterScan.revisionOrder(head, current) { continue }
                best = i
            }
            guard let b = best else { break }
            out.append(runs[b].head!)
            try advance(b)
        }
        return out
    }

    /// Decodes the next entry of run `i` into its head (nil when the run is done).
    private mutating func advance(_ i: Int) throws(MigrationError) {
        guard runs[i].remaining > 0 else {
            runs[i].head = nil
            return
        }
        try ensure(i, bytes: 16)
        let revision = readInteger(i, Int64.self)
        let length = Int(readInteger(i, UInt32.self))
        let payloadLength = Int(readInteger(i, UInt32.self))
        try ensure(i, bytes: length + payloadLength)
        let start = runs[i].position
        let key = Array(runs[i].buffer[start..<start + length])
        let payload = Array(runs[i].buffer[start + length..<start + length + payloadLength])
        runs[i].position += length + payloadLength
        runs[i].remaining -= 1
        runs[i].head = KeyRevision(key: key, modRevision: revision, payload: payload)
    }

    private mutating func readInteger<T: FixedWidthInteger>(_ i: Int, _: T.Type) -> T {
        let size = MemoryLayout<T>.size
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { destination in
            runs[i].buffer.withUnsafeBytes { source in
                destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[runs[i].position..<runs[i].position + size]))
            }
        }
        runs[i].position += size
        return T(littleEndian: value)
    }

    /// Makes at least `bytes` unread bytes available in run `i`'s buffer.
    private mutating func ensure(_ i: Int, bytes: Int) throws(MigrationError) {
        let available = runs[i].buffer.count - runs[i].position
        guard available < bytes else { return }
        let want = max(bytes - available, readSize)
        var fresh = [UInt8](repeating: 0, count: want)
        // A positioned read may return less than asked before the end: read until enough.
        var n = 0
        while n < bytes - available {
            let offset = runs[i].offset + Int64(n)
            let read: Int
            do {
                read = try fresh.withUnsafeMutableBytes {
                    try file.read(fromAbsoluteOffset: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[n...]))
                }
            } catch {
                throw MigrationError(.invalidState, "cannot read the scan's temporary sort file: \(error)")
            }
            guard read > 0 else { throw MigrationError(.invalidState, "the temporary sort file ended early") }
            n += read
        }
        runs[i].offset += Int64(n)
        runs[i].buffer = Array(runs[i].buffer[runs[i].position...]) + fresh[0..<n]
        runs[i].position = 0
    }
}
