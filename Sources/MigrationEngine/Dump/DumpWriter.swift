import EtcdGateway

/// Writes etcd `KeyValue`s as JSON lines (the shape of etcd's v3 JSON gateway; see
/// `EtcdJSONLine`) to a new file with mode 0600, hashing as it goes, and on `finish()`
/// writes `PATH.sha256` in `sha256sum` format (`<hex>  <basename>\n`) so
/// `sha256sum -c PATH.sha256` works from the dump's directory.
///
/// Streams through a fixed buffer: memory does not grow with the dump.
public final class DumpWriter {
    public let path: String
    /// Nil once finished or abandoned.
    private var file: FileDescriptor?
    private var buffer: [UInt8] = []
    private var digest = SHA256Digest()
    private static let flushThreshold = 1 << 20
    public private(set) var linesWritten = 0
    public private(set) var bytesWritten = 0

    /// Creates `path` (mode 0600). Refuses an existing file unless `overwrite`.
    public init(path: String, overwrite: Bool = false) throws(DumpError) {
        self.path = path
        self.file = try PosixFile.openForWriting(path, overwrite: overwrite)
        buffer.reserveCapacity(Self.flushThreshold + 64 * 1024)
    }

    deinit {
        try? file?.close()
    }

    public func write(_ kv: KeyValue) throws(DumpError) {
        precondition(file != nil, "DumpWriter used after finish()")
        EtcdJSONLine.append(kv, to: &buffer)
        linesWritten += 1
        if buffer.count >= Self.flushThreshold { try flush() }
    }

    public func write<S: Sequence>(contentsOf kvs: S) throws(DumpError) where S.Element == KeyValue {
        for kv in kvs { try write(kv) }
    }

    private func flush() throws(DumpError) {
        guard !buffer.isEmpty else { return }
        guard let file else { return }
        let path = self.path
        var failure: DumpError?
        buffer.withUnsafeBytes { bytes in
            digest.update(bytes)
            do throws(DumpError) { try PosixFile.writeAll(file, bytes, path: path) } catch { failure = error }
        }
        if let failure { throw failure }
        bytesWritten += buffer.count
        buffer.removeAll(keepingCapacity: true)
    }

    /// Closes and deletes the unfinished dump (and writes no checksum): a partial dump
    /// must not be mistaken for a complete one.
    public func abandon() {
        guard let file else { return }
        try? file.close()
        self.file = nil
        PosixFile.remove(path)
    }

    /// Flushes, fsyncs and closes the dump, then writes and fsyncs `PATH.sha256`.
    /// Returns the SHA-256 as lowercase hex.
    ///
    /// `sidecar` (a suffix and its bytes) is written beside the dump as `PATH<suffix>`
    /// (mode 0600) and gets its own line in `PATH.sha256`: the dump itself stays pure etcd
    /// JSON lines (what `convert` and other tools read), tools that know only the first line
    /// still verify the dump, and `sha256sum -c` checks both files.
    @discardableResult
    public func finish(sidecar: (suffix: String, bytes: [UInt8])? = nil) throws(DumpError) -> String {
        try flush()
        guard let file else { preconditionFailure("DumpWriter finished twice") }
        self.file = nil
        try PosixFile.syncAndClose(file, path: path)
        let hex = SHA256Digest.hex(digest.finalize())
        var checksums = "\(hex)  \(PosixFile.basename(path))\n"
        if let sidecar {
            let sidecarPath = path + sidecar.suffix
            try Self.writeFile(sidecarPath, sidecar.bytes)
            var sidecarDigest = SHA256Digest()
            sidecarDigest.update(sidecar.bytes)
            checksums += "\(SHA256Digest.hex(sidecarDigest.finalize()))  \(PosixFile.basename(sidecarPath))\n"
        }
        try Self.writeFile(path + ".sha256", Array(checksums.utf8))
        return hex
    }

    /// Creates (or replaces) a small file, mode 0600, and fsyncs it.
    private static func writeFile(_ path: String, _ contents: [UInt8]) throws(DumpError) {
        let file = try PosixFile.openForWriting(path, overwrite: true)
        do throws(DumpError) {
            try contents.withUnsafeBytes { bytes in
                Result { () throws(DumpError) in try PosixFile.writeAll(file, bytes, path: path) }
            }.get()
        } catch {
            try? file.close()
            throw error
        }
        try PosixFile.syncAndClose(file, path: path)
    }
}

import EtcdModel
import SystemPackage
import PlatformShim
