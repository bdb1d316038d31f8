import EtcdModel
import PlatformShim

/// `PrefixPages` read one page ahead, on a thread of its own: etcd answers the next request
/// while the caller works on the page it has, so a scan takes about the longer of reading
/// and working rather than their sum. One page ahead is enough for that and bounds the
/// memory to one more page. Pages, their revisions and a failure come out in the order they
/// were read, exactly as `PrefixPages.next()` would return them.
///
/// The reader stops after a failure, after the last page, or once this value is released;
/// a request already under way then finishes (within the client's timeout) and is dropped.
public final class PrefetchingPages {
    private enum Item {
        case page([KeyValue], revision: Int64)
        case failure(EtcdError)
        case end
    }

    private struct State {
        var ready: [Item] = []
        var abandoned = false
    }

    private let state = ConditionLock(State())
    /// Set when no thread could be started: `next()` then reads itself, one page at a time.
    private let inline: PagesBox?
    private var finished = false

    /// Starts reading `pages` at once, on a thread named `threadName`.
    public init(_ pages: PrefixPages, threadName: String = "scan-reader") {
        let state = self.state
        let box = PagesBox(pages)
        let started = OSThread.start(name: threadName) { Self.read(box, into: state) }
        if case .success(let thread) = started { thread.detach() }
        inline = (try? started.get()) == nil ? box : nil
    }

    deinit {
        state.withLockWakingWaiters { $0.abandoned = true }
    }

    /// The next page and the revision it was read at, or nil after the last one.
    public func next() throws(EtcdError) -> (page: [KeyValue], revision: Int64)? {
        if finished { return nil }
        if let inline {
            guard let page = try inline.pages.next() else {
                finished = true
                return nil
            }
            return (page, inline.pages.revision)
        }
        let item = state.wait(until: { !$0.ready.isEmpty }, then: { $0.ready.removeFirst() })
        state.wakeWaiters()  // the reader may fetch the next one
        switch item {
        case .page(let page, let revision): return (page, revision)
        case .failure(let error):
            finished = true
            throw error
        case .end:
            finished = true
            return nil
        }
    }

    /// The reader: one page ahead of the consumer at most.
    private static func read(_ box: PagesBox, into state: ConditionLock<State>) {
        while true {
            let go = state.wait(until: { $0.abandoned || $0.ready.isEmpty }, then: { !$0.abandoned })
            guard go else { return }
            let item: Item
            do throws(EtcdError) {
                item = try box.pages.next().map { .page($0, revision: box.pages.revision) } ?? .end
            } catch {
                item = .failure(error)
            }
            state.withLockWakingWaiters { $0.ready.append(item) }
            if case .page = item { continue }
            return
        }
    }

    /// The pager, owned by the reader thread alone once it starts.
    private final class PagesBox: @unchecked Sendable {
        var pages: PrefixPages
        init(_ pages: PrefixPages) { self.pages = pages }
    }
}
