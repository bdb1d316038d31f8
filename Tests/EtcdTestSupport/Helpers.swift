import EtcdGateway
import Foundation

/// Runs blocking work (libcurl calls, sleeps, process control) on a thread of its own, so
/// tests never block Swift concurrency's cooperative pool.
///
/// The body runs inside the calling test's own task (on an executor that is that thread),
/// not on a bare `Thread`: Swift Testing finds the current test through task-locals, so an
/// `#expect` that fails in the body is reported against the test that called this, and the
/// test fails, instead of against «unknown» while the test prints "passed".
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let executor = OwnThreadExecutor(stackSize: 4 << 20)
    defer { executor.shutdown() }
    return try await withTaskExecutorPreference(executor) { try body() }
}

/// A task executor that runs its jobs one at a time on a thread of its own, which ends
/// once `shutdown` was called and no job is left.
final class OwnThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var finished = false

    init(stackSize: Int) {
        // The thread holds the executor until its loop ends.
        let thread = Thread { [self] in loop() }
        thread.stackSize = stackSize
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func shutdown() {
        condition.lock()
        finished = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !finished { condition.wait() }
            guard !jobs.isEmpty else {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
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
