import PlatformShim
import SystemPackage

/// The dump files' I/O on swift-system's `FileDescriptor` (EINTR retried, errno typed):
/// exact file modes (0600), fsync and streaming reads, which FoundationEssentials does not
/// offer. Every failure comes back as a `DumpError` naming the path.
enum PosixFile {
    static func openForWriting(_ path: String, overwrite: Bool) throws(DumpError) -> FileDescriptor {
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(
                FilePath(path), .writeOnly, options: [.create, .closeOnExec, overwrite ? .truncate : .exclusiveCreate],
                permissions: .ownerReadWrite)
        } catch Errno.fileExists {
            throw DumpError(code: .alreadyExists, path: path, message: "already exists; choose another path or remove it first")
        } catch {
            throw DumpError(code: .io, path: path, message: "cannot create: \(error)")
        }
        // The mode given to open() only applies to new files; an overwritten file keeps its
        // mode, and a dump holds every secret in the cluster's metadata.
        do throws(Errno) {
            try Posix.setPermissions(file, .ownerReadWrite)
        } catch {
            try? file.close()
            throw DumpError(code: .io, path: path, message: "cannot set mode 0600: \(error)")
        }
        return file
    }

    static func writeAll(_ file: FileDescriptor, _ bytes: UnsafeRawBufferPointer, path: String) throws(DumpError) {
        do {
            _ = try file.writeAll(bytes)
        } catch {
            throw DumpError(code: .io, path: path, message: "write failed: \(error)")
        }
    }

    static func syncAndClose(_ file: FileDescriptor, path: String) throws(DumpError) {
        do throws(Errno) {
            try Posix.sync(file)
        } catch {
            try? file.close()
            throw DumpError(code: .io, path: path, message: "fsync failed: \(error)")
        }
        do { try file.close() } catch { throw DumpError(code: .io, path: path, message: "close failed: \(error)") }
    }

    static func openForReading(_ path: String) throws(DumpError) -> FileDescriptor {
        do {
            return try FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec)
        } catch {
            throw DumpError(code: .io, path: path, message: "cannot open: \(error)")
        }
    }

    /// Reads up to `buffer.count` bytes; 0 at end of file.
    static func readChunk(_ file: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, path: String) throws(DumpError) -> Int {
        do {
            return try file.read(into: buffer)
        } catch {
            throw DumpError(code: .io, path: path, message: "read failed: \(error)")
        }
    }

    /// Removes the file at `path`, if any (what a failed write leaves).
    static func remove(_ path: String) { Posix.remove(path) }

    /// Whether anything (a file, a link, a directory) is at `path`.
    static func exists(_ path: String) -> Bool { Posix.exists(path) }

    static func basename(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? path
    }
}
