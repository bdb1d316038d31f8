import Foundation
import PlatformShim
import Synchronization
import Testing

/// The one concurrency model's fork-join: each index on a thread of its own, all at once,
/// however few the cores (the lane writers spend their time waiting on etcd).
@Suite("OS threads: fork and join")
struct ForkJoinTests {
    @Test(arguments: [0, 1, 2, 8])
    func everyIndexRunsOnceAndAllRunAtOnce(count: Int) {
        let seen = Mutex<[Int]>([])
        let started = Atomic<Int>(0)
        let allTogether = Atomic<Int>(0)
        OSThread.forkJoin(count) { index in
            started.add(1, ordering: .relaxed)
            // A barrier: every index waits (up to 10 s) until all have started. A pool capped
            // at the core count would leave some waiting for the others to finish first.
            var waited = 0
            while started.load(ordering: .relaxed) < count && waited < 10_000 {
                OSThread.sleep(for: .microseconds(1_000))
                waited += 1
            }
            if started.load(ordering: .relaxed) == count { allTogether.add(1, ordering: .relaxed) }
            seen.withLock { $0.append(index) }
        }
        #expect(seen.withLock { $0.sorted() } == Array(0..<count))
        #expect(allTogether.load(ordering: .relaxed) == count)
    }

    /// Threads are told apart in `top -H` and a debugger: the kernel holds each one's name.
    @Test func startedThreadsCarryTheirNames() throws {
        let names = Mutex<[String]>([])
        @Sendable func ownName() -> String {
            (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines) ?? ""
        }
        let thread = try OSThread.start(name: "lease-keeper") { names.withLock { $0.append(ownName()) } }.get()
        thread.join()
        let recordSecondThreadsName: @Sendable (Int) -> Void = { index in
            if index == 1 { names.withLock { $0.append(ownName()) } }
        }
        OSThread.forkJoin(2, name: { "writer-\($0)" }, recordSecondThreadsName)
        // Linux keeps 15 bytes of a name.
        let long = try OSThread.start(name: "a-name-longer-than-fifteen-bytes") { names.withLock { $0.append(ownName()) } }.get()
        long.join()
        #expect(names.withLock { $0 } == ["lease-keeper", "writer-1", "a-name-longer-t"])
    }

    /// The condition threads wait on an event with: woken by the change, or given up after
    /// the timeout (not earlier).
    @Test func aConditionWaitEndsWhenTheValueChangesOrTimesOut() throws {
        let flag = ConditionLock(false)
        let clock = ContinuousClock()
        let start = clock.now
        #expect(!flag.wait(until: { $0 }, timeout: .milliseconds(30)))
        #expect(clock.now - start >= .milliseconds(30))
        let setter = try OSThread.start(name: "setter") {
            OSThread.sleep(for: .milliseconds(20))
            flag.withLockWakingWaiters { $0 = true }
        }.get()
        #expect(flag.wait(until: { $0 }, timeout: .seconds(30)))
        setter.join()
        #expect(flag.wait(until: { $0 }, then: { $0 }))
    }
}
