import EtcdGateway
import Foundation

/// Runs blocking work (libcurl calls, sleeps, process control) on a thread of its own, so
/// tests never block Swift concurrency's cooperative pool.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.stackSize = 4 << 20
        thread.start()
    }
}

/// UTF-8 bytes of a string, for keys and values.
public func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

public func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// A key prefix unique to one test, so tests can share a server.
public func uniquePrefix(_ name: String) -> String { "/test/\(name)/\(UUID().uuidString)/" }

nonisolated(unsafe) private var sharedServerForExit: EtcdServer?
private let sharedServerLock = NSLock()

extension EtcdServer {
    /// One plain server shared by the tests that only need isolated key prefixes; it is
    /// stopped (and its data deleted) when the test process exits.
    public static func shared() throws -> EtcdServer {
        sharedServerLock.lock()
        defer { sharedServerLock.unlock() }
        if let server = sharedServerForExit { return server }
        let server = try EtcdServer.start()
        sharedServerForExit = server
        atexit { sharedServerForExit?.stop() }
        return server
    }
}

/// Polls `condition` until it holds or `timeout` passes.
public func eventually(timeout: TimeInterval, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}
