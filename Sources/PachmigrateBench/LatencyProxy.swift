import ArgumentParser
import Glibc
import PlatformShim

/// `proxy`: a TCP proxy that adds network latency between pachmigrate and etcd, for the
/// bench's `--rtt` and the tests. Listens on 127.0.0.1 (a free port unless --port is given),
/// writes the port to --port-file once listening, and forwards every connection to
/// --target, delaying each chunk by half of --rtt in each direction.
///
/// Latency, not throttling: each direction has a reader that stamps every chunk it receives
/// with its due time (now + rtt/2) and a sender that waits for that time and sends it, so
/// pipelined requests overlap as they would on a real link, and bandwidth is not limited.
///
/// Native threads, so that the proxy's own cost per chunk stays in microseconds and does not
/// grow with the number of connections: an earlier proxy in Python handed every chunk between
/// threads under its interpreter lock, which added 0.15–0.25 ms to each round trip on this
/// kind of machine, more with four writers' connections busy and more again over TLS (whose
/// records make more chunks) — the network it modelled was slower than the RTT it was given.
/// Waits sleep (never spin: the proxy shares the cores with etcd and the tool) until an
/// absolute time on CLOCK_MONOTONIC, with the process's timer slack at 1 ns, so that a wait
/// ends within microseconds of its due time rather than 50 µs later. `--self-test` prints
/// how late they end.
///
/// It only connects to --target, which must be on the loopback interface: it is a test
/// fixture, not a relay. SIGTERM or SIGINT ends it with status 0.
struct LatencyProxy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy", abstract: "Forward TCP connections to a loopback target, adding a round-trip time.")

    @Option(help: "127.0.0.1:PORT (or localhost:PORT) to forward to.")
    var target: String?

    @Option(help: "Round trip to add, in milliseconds (half each way).")
    var rtt: Double

    @Option(help: "Port to listen on (default: a free one).")
    var port: Int = 0

    @Option(help: "Write the port here once listening (written whole: a temporary file renamed).")
    var portFile: String?

    @Flag(help: "Measure how late 200 of the proxy's waits end, and exit.")
    var selfTest = false

    func validate() throws {
        if rtt < 0 { throw ValidationError("--rtt must not be negative") }
        if !selfTest {
            guard let target else { throw ValidationError("--target is required") }
            guard targetPort(target) != nil else { throw ValidationError("--target must be 127.0.0.1:PORT or localhost:PORT") }
        }
    }

    private func targetPort(_ target: String) -> UInt16? {
        let parts = target.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "127.0.0.1" || parts[0] == "localhost" else { return nil }
        return UInt16(parts[1])
    }

    func run() throws {
        let delay = Int64(rtt * 500_000)  // half the round trip, in nanoseconds
        Self.sleepPrecisely()
        if selfTest {
            print(Self.selfTest(delayNanoseconds: delay))
            return
        }
        let listener = try Socket.listen(port: UInt16(port))
        let listening = try Socket.localPort(listener)
        signal(SIGPIPE, SIG_IGN)
        signal(SIGTERM) { _ in _exit(0) }
        signal(SIGINT) { _ in _exit(0) }
        // A parent that blocks them for a signal thread of its own (pachmigrate, the tests)
        // passes its mask on: unblocked here, or SIGTERM would stay pending for ever.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGTERM)
        sigaddset(&stopSignals, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)
        print(listening)
        if let portFile {
            let temporary = portFile + ".tmp"
            try writeFile(temporary, "\(listening)\n")
            guard rename(temporary, portFile) == 0 else { throw BenchError(.io, "cannot write \(portFile): errno \(errno)") }
        }
        let upstreamPort = targetPort(target!)!
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                throw BenchError(.io, "accept failed: errno \(errno)")
            }
            guard let upstream = try? Socket.connect(port: upstreamPort) else {
                Posix.writeStandardError("proxy: cannot reach 127.0.0.1:\(upstreamPort)\n")
                close(client)
                continue
            }
            ProxiedConnection(client: client, upstream: upstream, delayNanoseconds: delay).start()
        }
    }

    /// Sets the process's timer slack to 1 ns (Linux), so that a sleep ends when it is due,
    /// not up to 50 µs later. Threads started afterwards inherit it. prctl is variadic in C,
    /// which Swift cannot call: it is called through a fixed-argument pointer to it, as its
    /// integer arguments are passed the same way either way on Linux's ABIs.
    static func sleepPrecisely() {
        typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
        let setTimerSlack: Int32 = 29  // PR_SET_TIMERSLACK
        guard let symbol = dlsym(nil, "prctl") else { return }  // nil: RTLD_DEFAULT
        _ = unsafeBitCast(symbol, to: Prctl.self)(setTimerSlack, 1, 0, 0, 0)
    }

    static func selfTest(delayNanoseconds: Int64, count: Int = 200) -> String {
        var late: [Double] = []
        for _ in 0..<count {
            let due = Monotonic.now() + delayNanoseconds
            Monotonic.sleep(until: due)
            late.append(Double(Monotonic.now() - due) / 1000)
        }
        late.sort()
        let f = { (v: Double) in String(Int(v.rounded())) }
        return "\(count) waits of \(Double(delayNanoseconds) / 1e6) ms: late by median \(f(late[count / 2])) us, "
            + "p99 \(f(late[count * 99 / 100])) us, max \(f(late[count - 1])) us"
    }
}

/// CLOCK_MONOTONIC in nanoseconds, and absolute sleeps on it.
enum Monotonic {
    static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    /// Returns at or after `due` (restarted after a signal: the time is absolute).
    static func sleep(until due: Int64) {
        var time = timespec(tv_sec: Int(due / 1_000_000_000), tv_nsec: Int(due % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &time, nil) == EINTR {}
    }
}

/// One proxied connection: two directions, each a reader and a sender thread. Either side's
/// failure ends the connection; a clean end (EOF) of one direction is passed on as a
/// half-close, and the connection closes once both directions have ended.
private final class ProxiedConnection: @unchecked Sendable {
    private let client: Int32
    private let upstream: Int32
    private let delay: Int64
    private let ended = ConditionLock((directions: 0, closed: false, threads: 4))

    init(client: Int32, upstream: Int32, delayNanoseconds: Int64) {
        self.client = client
        self.upstream = upstream
        self.delay = delayNanoseconds
        for fd in [client, upstream] {
            // Every chunk goes out when it is due, not when Nagle's algorithm lets it.
            var on: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    func start() {
        for (source, sink, name) in [(client, upstream, "up"), (upstream, client, "down")] {
            let queue = ConditionLock(ChunkQueue())
            _ = OSThread.start(name: "proxy-read-\(name)") {
                self.read(from: source, into: queue)
                self.threadEnded()
            }.map { $0.detach() }
            _ = OSThread.start(name: "proxy-send-\(name)") {
                self.send(from: queue, to: sink)
                self.threadEnded()
            }.map { $0.detach() }
        }
    }

    private func read(from source: Int32, into queue: ConditionLock<ChunkQueue>) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            let due = Monotonic.now() + delay
            // An empty chunk is the end of the stream (delivered late too); nil a failure.
            let chunk: [UInt8]? = count < 0 ? nil : Array(buffer[..<count])
            queue.withLockWakingWaiters { $0.chunks.append((due, chunk)) }
            if count <= 0 { return }
        }
    }

    private func send(from queue: ConditionLock<ChunkQueue>, to sink: Int32) {
        var cleanly = false
        while true {
            let (due, first) = queue.wait(until: { $0.head < $0.chunks.count }, then: { $0.pop() })
            guard let first else { break }
            Monotonic.sleep(until: due)
            guard !first.isEmpty else {
                shutdown(sink, Int32(SHUT_WR))
                cleanly = true
                break
            }
            // Chunks already due go out together: fewer system calls when the sender lags.
            var data = first
            let now = Monotonic.now()
            queue.withLock { queue in
                while let chunk = queue.peek(), let next = chunk.data, !next.isEmpty, chunk.due <= now {
                    data += next
                    _ = queue.pop()
                }
            }
            guard Socket.sendAll(sink, data[...]) else { break }
        }
        finished(cleanly: cleanly)
    }

    private func finished(cleanly: Bool) {
        let closeNow = ended.withLock { state -> Bool in
            state.directions += 1
            guard !state.closed, !cleanly || state.directions == 2 else { return false }
            state.closed = true
            return true
        }
        guard closeNow else { return }
        // shutdown wakes the other direction's threads blocked in recv; they end on their own.
        shutdown(client, Int32(SHUT_RDWR))
        shutdown(upstream, Int32(SHUT_RDWR))
    }

    /// The descriptors are closed once all four threads have ended, so that none of them can
    /// reach a descriptor already reused by a new connection.
    private func threadEnded() {
        guard
            ended.withLock({ state -> Bool in
                state.threads -= 1
                return state.threads == 0
            })
        else { return }
        close(client)
        close(upstream)
    }
}

/// Chunks in flight in one direction, each with its due time; nil is a failed read.
private struct ChunkQueue {
    var chunks: [(due: Int64, data: [UInt8]?)] = []
    var head = 0

    func peek() -> (due: Int64, data: [UInt8]?)? { head < chunks.count ? chunks[head] : nil }

    mutating func pop() -> (due: Int64, data: [UInt8]?) {
        let chunk = chunks[head]
        head += 1
        if head > 1024 && head * 2 > chunks.count {
            chunks.removeFirst(head)
            head = 0
        }
        return chunk
    }
}

/// The few socket calls the proxy makes, with errno turned into BenchError.
private enum Socket {
    static func listen(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError(.io, "socket failed: errno \(errno)") }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 128) == 0 else { throw BenchError(.io, "cannot listen on port \(port): errno \(errno)") }
        return fd
    }

    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError(.io, "socket failed: errno \(errno)") }
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw BenchError(.io, "cannot connect to port \(port): errno \(errno)")
        }
        return fd
    }

    static func localPort(_ fd: Int32) throws -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { throw BenchError(.io, "getsockname failed: errno \(errno)") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Writes all of `bytes`, resuming after partial writes and EINTR; false on failure.
    static func sendAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var rest = bytes
        while !rest.isEmpty {
            let written = rest.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            rest = rest.dropFirst(written)
        }
        return true
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}
