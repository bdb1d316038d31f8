import PlatformShim

/// Thin wrappers over POSIX I/O: the dump code needs exact file modes (0600), fsync and
/// streaming reads, which FoundationEssentials does not offer.
enum PosixFile {
    static func errnoText() -> String { String(cString: strerror(errno)) }

    static func openForWriting(_ path: String, overwrite: Bool) throws(DumpError) -> Int32 {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL)
        let fd = open(path, flags, 0o600)
        if fd < 0 {
            if errno == EEXIST {
                throw DumpError(code: .alreadyExists, path: path, message: "already exists; choose another path or remove it first")
            }
            throw DumpError(code: .io, path: path, message: "cannot create: \(errnoText())")
        }
        // The mode given to open() only applies to new files; an overwritten file keeps its
        // mode, and a dump holds every secret in the cluster's metadata.
        if fchmod(fd, 0o600) != 0 {
            let text = errnoText()
            close(fd)
            throw DumpError(code: .io, path: path, message: "cannot set mode 0600: \(text)")
        }
        return fd
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(DumpError) {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw DumpError(code: .io, path: path, message: "write failed: \(errnoText())")
            }
            offset += n
        }
    }

    static func syncAndClose(_ fd: Int32, path: String) throws(DumpError) {
        if fsync(fd) != 0 {
            let text = errnoText()
            close(fd)
            throw DumpError(code: .io, path: path, message: "fsync failed: \(text)")
        }
        if close(fd) != 0 { throw DumpError(code: .io, path: path, message: "close failed: \(errnoText())") }
    }

    static func openForReading(_ path: String) throws(DumpError) -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw DumpError(code: .io, path: path, message: "cannot open: \(errnoText())") }
        return fd
    }

    /// Reads up to `buffer.count` bytes; 0 at end of file.
    static func readChunk(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws(DumpError) -> Int {
        while true {
            let n = read(fd, buffer.baseAddress!, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw DumpError(code: .io, path: path, message: "read failed: \(errnoText())")
        }
    }

    /// Whether anything (a file, a link, a directory) is at `path`.
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func basename(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? path
    }
}
