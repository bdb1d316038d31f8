// The one place pachmigrate reaches the C library, and the calls whose Swift shape differs
// between C libraries. pachmigrate is written for Linux with glibc (Debian's toolchain;
// libcurl, etcd and the tests' process handling are Linux-specific); Package.swift
// declares no other platform, and any other fails here, at compile time.

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

/// An OS thread for blocking work that must keep its rhythm whatever Swift's cooperative
/// pool is doing (a lease keep-alive).
public struct OSThread: Sendable, Equatable {
    private let handle: pthread_t

    /// Starts `body` on a new thread; the error number (`pthread_create`'s) when it cannot.
    public static func start(_ body: @escaping @Sendable () -> Void) -> Result<OSThread, ThreadStartError> {
        let box = Unmanaged.passRetained(Body(body))
        var handle = pthread_t()
        let rc = pthread_create(&handle, nil, { raw in
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

    private final class Body: @unchecked Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}

public struct ThreadStartError: Error, Sendable, Hashable {
    public var errorNumber: Int32
}
