import EtcdTestSupport
import Foundation
import PlatformShim
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The tests start etcds, proxies and pachmigrate runs from many threads at once, and read a
/// run's exit status from Foundation. `spawnChild` must keep a long-lived child from hiding a
/// short one's end (CI once read -1 for a usage error that had exited at once).
@Suite("children started from many threads")
struct ChildProcessTests {
    @Test func aShortChildStartedBesideLongOnesIsSeenEnding() async throws {
        try await onOwnThread {
            // The test process holds hundreds of descriptors (etcd connections, logs, captured
            // output); the more it holds, the longer Foundation's window between listing them
            // and spawning, and the likelier another thread's socket slips into a child.
            // 500 more: without `spawnChild`'s lock, 3 of 180 short children go unseen, as with
            // 2,000. Not 2,000: from about 1,360 entries in /proc/self/fd, Foundation's listing
            // of them reads past glibc's buffer (swift-corelibs-foundation PR #5472, not in
            // Swift 6.3) and crashed whichever test spawned a child then.
            let held = (0..<500).map { _ in open("/dev/null", O_RDONLY | O_CLOEXEC) }.filter { $0 >= 0 }
            defer { for fd in held { close(fd) } }
            let longLived = Mutex<[Process]>([])
            defer {
                for process in longLived.withLock({ $0 }) { kill(process.processIdentifier, SIGKILL) }
            }
            let unseenEnds = Mutex(0)
            let spawnErrors = Mutex<[String]>([])
            OSThread.forkJoin(4, name: { "spawner-\($0)" }) { index in
                for _ in 0..<(index == 0 ? 150 : 60) {
                    let process = Process()
                    process.standardOutput = FileHandle.nullDevice
                    process.standardError = FileHandle.nullDevice
                    process.executableURL = URL(fileURLWithPath: index == 0 ? "/bin/sleep" : "/bin/true")
                    process.arguments = index == 0 ? ["30"] : []
                    do {
                        try spawnChild(process)
                    } catch {
                        spawnErrors.withLock { $0.append("\(error)") }
                        continue
                    }
                    if index == 0 {
                        longLived.withLock { $0.append(process) }
                        OSThread.sleep(for: .milliseconds(4))
                    } else if !waitForExit(process, seconds: 10) {
                        unseenEnds.withLock { $0 += 1 }
                    }
                }
            }
            #expect(held.count == 500)
            #expect(spawnErrors.withLock { $0 }.isEmpty)
            #expect(unseenEnds.withLock { $0 } == 0, "short children still 'running' 10 s after they were started")
        }
    }
}
