import EtcdGateway

import EtcdModel
import PlatformShim
import SystemPackage

/// Reads a dump written by `DumpWriter` (or etcd's own JSON `KeyValue` lines) one line at a
/// time through a fixed buffer: memory stays constant whatever the dump's size.
/// Blank lines are skipped; a bad line throws with its 1-based line number.
public final class DumpReader {
    public let path: String
    /// Nil once the end of the file is reached.
    private var file: FileDescriptor?
    private var chunk: [UInt8]
    private var carry: [UInt8] = []
    private var chunkStart = 0
    private var chunkEnd = 0
    private var atEOF = false
    public private(set) var lineNumber = 0

    public init(path: String, bufferSize: Int = 1 << 20) throws(DumpError) {
        self.path = path
        self.file = try PosixFile.openForReading(path)
        self.chunk = [UInt8](repeating: 0, count: Swift.max(bufferSize, 4096))
    }

    deinit {
        try? file?.close()
    }

    /// The next key-value, nil at the end of the file.
    public func read() throws(DumpError) -> KeyValue? {
        while true {
            guard let line = try nextLine() else { return nil }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0d }) { continue }
            do throws(EtcdJSONLine.ParseError) {
                return try line.withUnsafeBufferPointer { buffer in
                    Result { () throws(EtcdJSONLine.ParseError) -> KeyValue in try EtcdJSONLine.parse(buffer) }
                }.get()
            } catch {
                throw DumpError(
                    code: .malformedLine, path: path, line: lineNumber,
                    message: "not an etcd KeyValue JSON line: \(error.message)")
            }
        }
    }

    /// Every key-value left, for dumps small enough to hold (samples, tests). Not a
    /// `Sequence`: iteration cannot throw, and an error kept aside is an error nobody reads.
    public func readAll() throws(DumpError) -> [KeyValue] {
        var all: [KeyValue] = []
        while let kv = try read() { all.append(kv) }
        return all
    }

    private func nextLine() throws(DumpError) -> [UInt8]? {
        while true {
            if let newline = chunk[chunkStart..<chunkEnd].firstIndex(of: 0x0a) {
                var line = carry
                line.append(contentsOf: chunk[chunkStart..<newline])
                carry.removeAll(keepingCapacity: true)
                chunkStart = newline + 1
                lineNumber += 1
                return line
            }
            carry.append(contentsOf: chunk[chunkStart..<chunkEnd])
            chunkStart = 0
            chunkEnd = 0
            if atEOF {
                guard !carry.isEmpty else { return nil }
                let line = carry
                carry.removeAll()
                lineNumber += 1
                return line
            }
            guard let file else { return nil }
            let path = self.path
            let n = try chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(DumpError) -> Int in try PosixFile.readChunk(file, into: buffer, path: path) }
            }.get()
            if n == 0 {
                atEOF = true
                try? file.close()
                self.file = nil
            }
            chunkEnd = n
        }
    }
}

/// Recomputes the SHA-256 of the dump at `path` and compares it with `PATH.sha256`
/// (`sha256sum` format). Returns the hex digest; throws `.missingChecksum` or `.checksumMismatch`.
@discardableResult
public func verifyDumpChecksum(path: String) throws(DumpError) -> String {
    let checksumPath = path + ".sha256"
    let expected: String
    do throws(DumpError) {
        let file = try PosixFile.openForReading(checksumPath)
        defer { try? file.close() }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = try buffer.withUnsafeMutableBytes { b in
            Result { () throws(DumpError) -> Int in try PosixFile.readChunk(file, into: b, path: checksumPath) }
        }.get()
        let text = String(decoding: buffer[0..<n], as: UTF8.self)
        guard let first = text.split(separator: " ", maxSplits: 1).first, first.count == 64 else {
            throw DumpError(code: .missingChecksum, path: checksumPath, message: "not a sha256sum line")
        }
        expected = first.lowercased()
    } catch {
        if error.code != .io { throw error }
        throw DumpError(
            code: .missingChecksum, path: checksumPath,
            message: "cannot read the checksum file (\(error.message)); without it the dump cannot be trusted")
    }
    let file = try PosixFile.openForReading(path)
    defer { try? file.close() }
    var digest = SHA256Digest()
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = try buffer.withUnsafeMutableBytes { b in
            Result { () throws(DumpError) -> Int in try PosixFile.readChunk(file, into: b, path: path) }
        }.get()
        if n == 0 { break }
        buffer.withUnsafeBytes { digest.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }
    let actual = SHA256Digest.hex(digest.finalize())
    guard actual == expected else {
        throw DumpError(
            code: .checksumMismatch, path: path,
            message:
                "SHA-256 is \(actual) but \(PosixFile.basename(checksumPath)) says \(expected): the dump was altered or truncated; "
                + "do not restore from it"
        )
    }
    return actual
}

/// The sidecar `PATH<suffix>` that `DumpWriter.finish(sidecar:)` wrote, checked against its
/// line in `PATH.sha256`; nil when `PATH.sha256` lists none (a dump written without one, or
/// by an earlier version). `PATH.sha256` decides what belongs to the dump: a sidecar file it
/// does not list is ignored, one it lists must be there and match.
public func readDumpSidecar(path: String, suffix: String) throws(DumpError) -> [UInt8]? {
    let checksumPath = path + ".sha256"
    let sidecarPath = path + suffix
    let name = PosixFile.basename(sidecarPath)
    let checksums = String(decoding: try readSmallFile(checksumPath), as: UTF8.self)
    let listed = checksums.split(separator: "\n").compactMap { line -> Substring? in
        let fields = line.split(separator: " ", maxSplits: 1)
        guard fields.count == 2, fields[1].trimmingPrefix(" ").trimmingPrefix("*") == name else { return nil }
        return fields[0]
    }.first
    guard let listed else { return nil }
    let contents: [UInt8]
    do {
        contents = try readSmallFile(sidecarPath)
    } catch {
        throw DumpError(
            code: .missingChecksum, path: sidecarPath,
            message:
                "\(PosixFile.basename(checksumPath)) lists it but it cannot be read (\(error.message)); the backup is incomplete: "
                + "copy \(name) from where the backup was written (it is written beside every backup) and put it beside "
                + "\(PosixFile.basename(path))")
    }
    var digest = SHA256Digest()
    digest.update(contents)
    let actual = SHA256Digest.hex(digest.finalize())
    guard actual == listed.lowercased() else {
        throw DumpError(
            code: .checksumMismatch, path: sidecarPath,
            message: "SHA-256 is \(actual) but \(PosixFile.basename(checksumPath)) says \(listed): it was altered; do not trust it")
    }
    return contents
}

/// A whole file of at most `limit` bytes (checksum files, sidecars).
private func readSmallFile(_ path: String, limit: Int = 1 << 20) throws(DumpError) -> [UInt8] {
    let file = try PosixFile.openForReading(path)
    defer { try? file.close() }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let n = try buffer.withUnsafeMutableBytes { b in
            Result { () throws(DumpError) -> Int in try PosixFile.readChunk(file, into: b, path: path) }
        }.get()
        if n == 0 { return out }
        out += buffer[0..<n]
        guard out.count <= limit else {
            throw DumpError(code: .io, path: path, message: "larger than \(limit) bytes; not a checksum or sidecar file")
        }
    }
}
