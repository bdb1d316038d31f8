// The one place pachmigrate reaches the C library, and the calls whose Swift shape differs
// between C libraries. pachmigrate is written for Linux with glibc (Debian's toolchain;
// libcurl, etcd and the tests' process handling are Linux-specific); Package.swift
// declares no other platform, and any other fails here, at compile time.

import Synchronization

#if canImport(Glibc)
@_exported import Glibc
#else
#error("pachmigrate is written for Linux with glibc")
#endif

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

    /// Starts `body` on a new thread; the error number (`pthread_create`'s) when it cannot.
    public static func start(_ body: @escaping @Sendable () -> Void) -> Result<OSThread, ThreadStartError> {
        let box = Unmanaged.passRetained(Body(body))
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

    /// True on the thread itself.
    public var isCurrent: Bool { pthread_equal(handle, pthread_self()) != 0 }

    /// Waits for the thread to end.
    public func join() { pthread_join(handle, nil) }

    /// Lets the thread end on its own; its resources are freed then.
    public func detach() { pthread_detach(handle) }

    /// Runs `body(0)` … `body(count - 1)` at once, each on a thread of its own (index 0 on
    /// the caller's), and returns when all have returned. A thread that cannot be started
    /// leaves its index to the caller's thread.
    public static func forkJoin(_ count: Int, _ body: @Sendable (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            var threads: [OSThread] = []
            var inline: [Int] = count > 0 ? [0] : []
            for index in 1..<max(1, count) {
                switch start({ body(index) }) {
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

/// SIGINT and SIGTERM, taken by a thread of their own with sigwait(3) rather than by a
/// signal handler (which may run only async-signal-safe code): `start()` blocks them in the
/// calling thread, so it must run first thing in `main`, before any other thread exists
/// (threads inherit the mask). Until a command sets a handler, a signal ends the process
/// as the shell expects (exit 128 + the signal's number).
public enum TerminationSignals {
    private static let handler = Mutex<(@Sendable (Int32) -> Void)?>(nil)

    public static func start() {
        var set = signals()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        if case .success(let thread) = OSThread.start(watch) { thread.detach() }
    }

    /// Calls `body` (on the watcher's thread) for every SIGINT or SIGTERM from now on.
    public static func onSignal(_ body: @escaping @Sendable (Int32) -> Void) {
        handler.withLock { $0 = body }
    }

    private static func signals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
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
