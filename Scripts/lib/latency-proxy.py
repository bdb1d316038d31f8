#!/usr/bin/env python3
"""A TCP proxy that adds network latency, for the bench and the tests (standard library only).

    python3 Scripts/lib/latency-proxy.py --target 127.0.0.1:2379 --rtt 2 [--port-file PATH]

Listens on 127.0.0.1 (a free port unless --port is given), prints the port on stdout (and
writes it to --port-file, if given, once it is listening) and forwards every connection to
--target, delaying each chunk by half of --rtt (milliseconds) in each direction.

Latency, not throttling: each direction has a reader that stamps every chunk it receives
with its due time (now + rtt/2) and a sender that waits for that time and sends it. A chunk
read while earlier ones are still in flight does not wait for them to arrive first, so
pipelined requests overlap as they would on a real link, and bandwidth is not limited.

The waits have to be finer than the delays they add (0.25 ms at 0.5 ms RTT). A sleeping
thread wakes up to its timer slack late (50 us by default on Linux), so the proxy sets its
slack to 1 ns: its waits then end within tens of microseconds, without spinning. It must not
spin: on a machine whose cores it shares with etcd and the tool being measured, a spinning
proxy takes CPU from both (an earlier version that spun the last 0.2 ms of each wait used
9 CPU seconds in a 36 s migrate) and a preempted spin ends a timeslice late anyway.
`--self-test` prints how late the waits end.

It only ever connects to --target, which must be on the loopback interface: it is a test
fixture, not a general relay. SIGTERM or SIGINT closes everything and exits 0.
"""

import argparse
import collections
import ctypes
import os
import signal
import socket
import sys
import threading
import time

CHUNK_BYTES = 65536
PR_SET_TIMERSLACK = 29


def sleep_precisely():
    """Sets this process's timer slack to 1 ns (Linux): a sleep then ends when it is due,
    not up to 50 us later. Threads started afterwards inherit it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (AttributeError, OSError):
        pass  # not Linux: the default slack only makes the waits a little later


def wait_until(due):
    """Returns at perf_counter() >= due, late by microseconds (see sleep_precisely)."""
    while True:
        remaining = due - time.perf_counter()
        if remaining <= 0:
            return
        time.sleep(remaining)


class Direction:
    """One direction of one connection: a reader stamping chunks, a sender delivering them."""

    def __init__(self, source, sink, delay, on_close):
        self.source = source
        self.sink = sink
        self.delay = delay
        self.on_close = on_close
        self.chunks = collections.deque()
        self.ready = threading.Condition()

    def start(self):
        threading.Thread(target=self.read, daemon=True).start()
        threading.Thread(target=self.send, daemon=True).start()

    def read(self):
        try:
            while True:
                data = self.source.recv(CHUNK_BYTES)
                due = time.perf_counter() + self.delay
                with self.ready:
                    # An empty chunk is the end of the stream: it is delivered late too.
                    self.chunks.append((due, data))
                    self.ready.notify()
                if not data:
                    return
        except OSError:
            with self.ready:
                self.chunks.append((time.perf_counter(), None))
                self.ready.notify()

    def send(self):
        try:
            while True:
                with self.ready:
                    while not self.chunks:
                        self.ready.wait()
                    due, data = self.chunks.popleft()
                if data is None:  # the source failed: so does the connection
                    break
                wait_until(due)
                if not data:
                    self.sink.shutdown(socket.SHUT_WR)
                    self.on_close(True)
                    return
                # Chunks already due go out together: fewer syscalls when the sender lags.
                with self.ready:
                    while self.chunks and self.chunks[0][1] and self.chunks[0][0] <= time.perf_counter():
                        data += self.chunks.popleft()[1]
                self.sink.sendall(data)
        except OSError:
            pass
        self.on_close(False)


class Connection:
    def __init__(self, client, target, delay, registry):
        self.client = client
        self.registry = registry
        self.lock = threading.Lock()
        self.closed = False
        self.ended = 0
        try:
            self.upstream = socket.create_connection(target)
        except OSError as error:
            print(f"latency-proxy: cannot reach {target[0]}:{target[1]}: {error}", file=sys.stderr)
            client.close()
            return
        for s in (client, self.upstream):
            # Every chunk goes out when it is due, not when Nagle lets it.
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        registry.add(self)
        Direction(client, self.upstream, delay, self.finished).start()
        Direction(self.upstream, client, delay, self.finished).start()

    def finished(self, cleanly):
        """A direction is done: a failure ends the connection, a clean end once both are."""
        with self.lock:
            self.ended += 1
            if cleanly and self.ended < 2:
                return
        self.close()

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.registry.discard(self)


def self_test(delay, count=200):
    """Prints how late wait_until ends for `count` waits of `delay`: the proxy's precision."""
    late = []
    for _ in range(count):
        due = time.perf_counter() + delay
        wait_until(due)
        late.append((time.perf_counter() - due) * 1e6)
    late.sort()
    print(
        f"{count} waits of {delay * 1e3:.3f} ms: late by median {late[count // 2]:.1f} us, "
        f"p99 {late[int(count * 0.99)]:.1f} us, max {late[-1]:.1f} us"
    )


def main():
    parser = argparse.ArgumentParser(description="TCP proxy adding latency (see the module docstring).")
    parser.add_argument("--target", help="HOST:PORT to forward to (loopback only)")
    parser.add_argument("--rtt", type=float, required=True, help="round trip to add, in milliseconds")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--port-file", help="also write the port here once listening")
    parser.add_argument("--self-test", action="store_true", help="measure the waits' precision and exit")
    args = parser.parse_args()
    delay = args.rtt / 2000
    if args.rtt < 0:
        parser.error("--rtt must not be negative")
    sleep_precisely()
    if args.self_test:
        self_test(delay)
        return 0
    if not args.target:
        parser.error("--target is required")
    host, _, port = args.target.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        parser.error("--target must be 127.0.0.1:PORT or localhost:PORT")
    target = ("127.0.0.1", int(port))

    # The default 5 ms would let a thread that holds the interpreter delay a due chunk by that.
    sys.setswitchinterval(0.0001)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    port = listener.getsockname()[1]

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A parent may start us with them blocked (a test runner's thread does): they would
    # stay pending, and we would never stop.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    if args.port_file:
        # Written whole, then renamed: a caller polling for it never reads half a number.
        partial = args.port_file + ".partial"
        with open(partial, "w") as f:
            f.write(f"{port}\n")
        os.replace(partial, args.port_file)
    print(port, flush=True)

    connections = set()
    # The kernel may hand SIGTERM to any thread; Python runs the handler in the main thread
    # only between bytecodes, so the main thread must not block in accept() for good.
    listener.settimeout(0.2)
    try:
        while True:
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            client.setblocking(True)
            Connection(client, target, delay, connections)
    except SystemExit:
        pass
    finally:
        listener.close()
        for connection in list(connections):
            connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
