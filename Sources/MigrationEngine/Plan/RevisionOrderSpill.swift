import PlatformShim

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

/// An in-memory list, already in order.
public struct KeyRevisionArray: KeyRevisionBatches {
    private let entries: [KeyRevision]
    private var position = 0

    public init(_ entries: [KeyRevision]) { self.entries = entries }

    public mutating func next(max: Int) -> [KeyRevision] {
        let end = min(position + max, entries.count)
        defer { position = end }
        return Array(entries[position..<end])
    }
}

/// Keys and their mod revisions, in named groups (one per lane, one for the backup), each
/// read back in (mod revision, key) order — held on disk, not in memory, so a scan of a
/// cluster of any size needs the same memory. An external merge sort: entries are buffered
/// up to `chunk`, sorted and written as runs to an unlinked temp file; a group is read by
/// merging its runs.
public final class RevisionOrderSpill: @unchecked Sendable {
    // Appends happen during the (single-threaded) scan; reads only after `finish()`, each
    // reader with its own cursor and pread(2), so readers on several threads are safe.
    private let fd: Int32
    private var end: Int64 = 0
    private var buffers: [String: [KeyRevision]] = [:]
    private var buffered = 0
    private var runs: [String: [(offset: Int64, count: Int)]] = [:]
    public private(set) var counts: [String: Int] = [:]
    let chunk: Int

    public init(chunk: Int = 20_000) throws(MigrationError) {
        self.chunk = max(1, chunk)
        var template = Array((FileManager.default.temporaryDirectory.path + "/pachmigrate-order.XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw MigrationError(
                .invalidState,
                "cannot create a temporary file in \(FileManager.default.temporaryDirectory.path): \(String(cString: strerror(errno))). Nothing was written to etcd; set TMPDIR to a writable directory.")
        }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        self.fd = fd
    }

    deinit { close(fd) }

    public func append(_ entry: KeyRevision, to group: String) throws(MigrationError) {
        buffers[group, default: []].append(entry)
        counts[group, default: 0] += 1
        buffered += 1
        if buffered >= chunk { try flushAll() }
    }

    /// Writes what is buffered; call once all entries are appended.
    public func finish() throws(MigrationError) { try flushAll() }

    public func count(of group: String) -> Int { counts[group] ?? 0 }

    /// The group's entries in (mod revision, key) order.
    public func reader(for group: String) -> SpillReader {
        SpillReader(fd: fd, runs: runs[group] ?? [], owner: self)
    }

    private func flushAll() throws(MigrationError) {
        for (group, var entries) in buffers where !entries.isEmpty {
            entries.sort(by: ClusterScan.revisionOrder)
            var bytes: [UInt8] = []
            bytes.reserveCapacity(entries.count * 64)
            for entry in entries {
                withUnsafeBytes(of: entry.modRevision.littleEndian) { bytes.append(contentsOf: $0) }
                withUnsafeBytes(of: UInt32(entry.key.count).littleEndian) { bytes.append(contentsOf: $0) }
                bytes.append(contentsOf: entry.key)
            }
            var written = 0
            while written < bytes.count {
                let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + written, $0.count - written, off_t(end) + off_t(written)) }
                guard n > 0 else {
                    throw MigrationError(
                        .invalidState,
                        "cannot write the scan's temporary sort file in \(FileManager.default.temporaryDirectory.path): \(String(cString: strerror(errno))). Nothing was written to etcd; free space there or set TMPDIR to another directory.")
                }
                written += n
            }
            runs[group, default: []].append((end, entries.count))
            end += Int64(bytes.count)
        }
        buffers.removeAll(keepingCapacity: false)
        buffered = 0
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
    private let fd: Int32
    private var runs: [Run]
    private let owner: RevisionOrderSpill  // keeps the file open while reading

    private let readSize: Int

    init(fd: Int32, runs: [(offset: Int64, count: Int)], owner: RevisionOrderSpill) {
        self.fd = fd
        self.owner = owner
        self.runs = runs.map { Run(offset: $0.offset, remaining: $0.count) }
        // A bigger cluster has more runs; the reader's buffers share a fixed budget, so its
        // memory does not grow with the cluster (16 KiB each up to 16 runs, then less).
        readSize = max(1024, min(16 * 1024, 256 * 1024 / max(1, runs.count)))
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
        try ensure(i, bytes: 12)
        let revision = readInteger(i, Int64.self)
        let length = Int(readInteger(i, UInt32.self))
        try ensure(i, bytes: length)
        let key = Array(runs[i].buffer[runs[i].position..<runs[i].position + length])
        runs[i].position += length
        runs[i].remaining -= 1
        runs[i].head = KeyRevision(key: key, modRevision: Int64(littleEndian: revision))
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
        let n = fresh.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, want, off_t(runs[i].offset)) }
        guard n >= bytes - available else {
            throw MigrationError(.invalidState, "the temporary sort file ended early (errno \(errno))")
        }
        runs[i].offset += Int64(n)
        runs[i].buffer = Array(runs[i].buffer[runs[i].position...]) + fresh[0..<n]
        runs[i].position = 0
    }
}
