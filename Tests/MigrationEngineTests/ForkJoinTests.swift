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
                usleep(1_000)
                waited += 1
            }
            if started.load(ordering: .relaxed) == count { allTogether.add(1, ordering: .relaxed) }
            seen.withLock { $0.append(index) }
        }
        #expect(seen.withLock { $0.sorted() } == Array(0..<count))
        #expect(allTogether.load(ordering: .relaxed) == count)
    }
}
