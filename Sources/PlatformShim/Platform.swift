// The system calls swift-system does not cover (in the manner of swift-nio's `Posix`), and
// the calls whose Swift shape differs between C libraries: OS threads, signals, exit.
// pachmigrate is written for Linux with glibc (Debian's toolchain; libcurl, etcd and the
// tests' process handling are Linux-specific); Package.swift declares no other platform,
// and any other fails here, at compile time. Files go through swift-system's
// `FileDescriptor` (EINTR retried, errno as a typed `Errno`).

import CPlatformShims
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#else
#error("pachmigrate is written for Linux with glibc")
#endif

/// File calls `FileDescriptor` lacks, with its conventions: EINTR retried, `Errno` thrown.
public enum Posix {
    /// A new file in `directory`, open for reading and writing and already unlinked, so it
    /// is gone once closed, whatever ends the process (mkstemp(3)).
    public static func unlinkedTemporaryFile(in directory: String, prefix: String) throws(Errno) -> FileDescriptor {
        var template = Array("\(directory)/\(prefix).XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        return FileDescriptor(rawValue: fd)
    }

    /// Sets the file's mode (fchmod(2)): `open`'s mode applies only to a file it creates.
    public static func setPermissions(_ file: FileDescriptor, _ permissions: FilePermissions) throws(Errno) {
        try retryingInterrupt { fchmod(file.rawValue, permissions.rawValue) }
    }

    /// Flushes the file's data and metadata to the disk (fsync(2)).
    public static func sync(_ file: FileDescriptor) throws(Errno) {
        try retryingInterrupt { fsync(file.rawValue) }
    }

    /// Writes `text` to stderr, in one write(2) where the kernel takes it whole (lines of
    /// several threads do not interleave), EINTR retried; what cannot be written is dropped.
    public static func writeStandardError(_ text: String) {
        var text = text
        text.withUTF8 { _ = try? FileDescriptor.standardError.writeAll($0) }
    }

    /// Whether `file` is a terminal (isatty(3)).
    public static func isTerminal(_ file: FileDescriptor) -> Bool { isatty(file.rawValue) == 1 }

    /// Flushes stdout and stderr's buffers (what `print` wrote) to their files.
    public static func flushStandardStreams() { fflush(nil) }

    /// Whether a process `pid` exists on this host (kill(2) with signal 0).
    public static func processExists(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno != ESRCH }

    /// Whether anything (a file, a link, a directory) is at `path`.
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Removes the file at `path`, if there is one (unlink(2)).
    public static func remove(_ path: String) { _ = unlink(path) }

    private static func retryingInterrupt(_ call: () -> Int32) throws(Errno) {
        while call() != 0 {
            guard errno == EINTR else { throw Errno(rawValue: errno) }
        }
    }
}

public enum Platform {
    /// Ends the process at once with `code` (no unwinding; stdio buffers are flushed).
    public static func exit(_ code: Int32) -> Never {
        Glibc.exit(code)
    }
}

/// pachmigrate's one concurrency model: blocking work (every libcurl call blocks) runs on OS
/// threads of its own, started and joined explicitly. Not Dispatch: its pool is sized to the
/// cores, so `--concurrency 4` would get two writers on a 2-core machine, each blocked on
/// etcd's answer while the CPU idles. Not Swift concurrency: a blocking call would hold one
/// of its few cooperative threads. Used for the lease keeper, the lane writers, the
/// history compactor beside them and the signal watcher.
public struct OSThread: Sendable, Equatable {
    private let handle: pthread_t

    /// Starts `body` on a new thread named `name` (as `top -H`, `ps -L` and a debugger show
    /// it; at most 15 bytes are kept); the error number (`pthread_create`'s) when it cannot.
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) -> Result<OSThread, ThreadStartError> {
        let box = Unmanaged.passRetained(
            Body {
                nameCurrent(name)
                body()
            })
        var handle = pthread_t()
        let rc = pthread_create(
            &handle, nil,
            { raw in
                Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
                return nil
            }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            return .failure(ThreadStartError(errorNumber: rc))
        }
        return .success(OSThread(handle: handle))
    }

    /// Names the calling thread (Linux keeps 15 bytes of it).
    public static func nameCurrent(_ name: String) {
        _ = pachmigrate_name_current_thread(name)
    }

    /// Blocks the calling thread for `duration` (nanosleep(2), resumed after a signal). For
    /// code on threads of its own, never on Swift concurrency's cooperative pool.
    public static func sleep(for duration: Duration) {
        let (seconds, attoseconds) = duration.components
        guard seconds > 0 || attoseconds > 0 else { return }
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }

    /// True on the thread itself.
    public var isCurrent: Bool { pthread_equal(handle, pthread_self()) != 0 }

    /// Waits for the thread to end.
    public func join() { pthread_join(handle, nil) }

    /// Lets the thread end on its own; its resources are freed then.
    public func detach() { pthread_detach(handle) }

    /// Runs `body(0)` … `body(count - 1)` at once, each on a thread of its own (index 0 on
    /// the caller's), and returns when all have returned. A thread that cannot be started
    /// leaves its index to the caller's thread. Started threads are named `name(index)`.
    public static func forkJoin(_ count: Int, name: (Int) -> String = { "forkjoin-\($0)" }, _ body: @Sendable (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            var threads: [OSThread] = []
            var inline: [Int] = count > 0 ? [0] : []
            for index in 1..<max(1, count) {
                switch start(name: name(index), { body(index) }) {
                case .success(let thread): threads.append(thread)
                case .failure: inline.append(index)
                }
            }
            for index in inline { body(index) }
            // Joined before returning: `body` does not outlive this call.
            for thread in threads { thread.join() }
        }
    }

    private final class Body: @unchecked Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}

public struct ThreadStartError: Error, Sendable, Hashable {
    public var errorNumber: Int32
}

/// SIGINT, SIGTERM and SIGHUP (the terminal closed: an ssh session dropped, a laptop's
/// window shut), taken by a thread of their own with sigwait(3) rather than by a signal
/// handler (which may run only async-signal-safe code): `start()` blocks them in the
/// calling thread, so it must run first thing in `main`, before any other thread exists
/// (threads inherit the mask). Until a command sets a handler, a signal ends the process
/// as the shell expects (exit 128 + the signal's number).
///
/// `start()` also ignores SIGPIPE. Output piped to `tee` or a log shipper outlives its
/// reader when Ctrl-C or a hangup reaches the whole pipeline: the next log line would
/// otherwise kill the process at once, lock held and stop unfinished, instead of letting it
/// stop after the txn in flight. Writes to a closed pipe then fail (EPIPE) and are dropped.
public enum TerminationSignals {
    private static let handler = Mutex<(@Sendable (Int32) -> Void)?>(nil)

    public static func start() {
        signal(SIGPIPE, SIG_IGN)
        var set = signals()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        if case .success(let thread) = OSThread.start(name: "signals", watch) { thread.detach() }
    }

    /// Calls `body` (on the watcher's thread) for every SIGINT, SIGTERM or SIGHUP from now on.
    public static func onSignal(_ body: @escaping @Sendable (Int32) -> Void) {
        handler.withLock { $0 = body }
    }

    private static func signals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGHUP)
        return set
    }

    @Sendable private static func watch() {
        var set = signals()
        while true {
            var number: Int32 = 0
            guard sigwait(&set, &number) == 0 else { continue }
            guard let body = handler.withLock({ $0 }) else { Platform.exit(128 + number) }
            body(number)
        }
    }
}
