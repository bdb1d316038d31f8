// A loopback HTTP/1.1 server that answers from a script, for what no real etcd here can be:
// an etcd 2.x, a service that is not etcd, a member replaced by another version mid-run.
// It records every request's head so tests can check what the client sent.

import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public final class ScriptedHTTPServer: @unchecked Sendable {
    public struct Request: Sendable {
        public var method: String
        public var path: String
        /// Header lines as sent, e.g. `Grpc-Metadata-Token: abc`.
        public var headers: [String]
    }

    public struct Response: Sendable {
        public var status: Int
        public var body: String
        public init(_ status: Int, _ body: String) {
            self.status = status
            self.body = body
        }
    }

    public let endpoint: String
    private let listener: Int32
    private let script: Mutex<@Sendable (Request) -> Response>
    private let log = Mutex<[Request]>([])

    /// Starts serving at once; `script` answers each request.
    public init(script: @escaping @Sendable (Request) -> Response) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket() failed: \(errno)") }
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw TestSupportError("bind/listen failed: \(errno)")
        }
        listener = fd
        endpoint = "http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))"
        self.script = Mutex(script)
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// Replaces the script, as if the server behind the URL were replaced.
    public func answer(with script: @escaping @Sendable (Request) -> Response) {
        self.script.withLock { $0 = script }
    }

    public var requests: [Request] { log.withLock { $0 } }

    public func stop() { shutdown(listener, Int32(SHUT_RDWR)) }

    deinit {
        stop()
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            let thread = Thread { [self] in serve(connection) }
            thread.start()
        }
    }

    /// Serves requests on one keep-alive connection until the client closes it.
    private func serve(_ connection: Int32) {
        defer { close(connection) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            guard let headEnd = findHeadEnd(buffer) else {
                let count = read(connection, &chunk, chunk.count)
                guard count > 0 else { return }
                buffer.append(contentsOf: chunk[..<count])
                continue
            }
            let lines = String(decoding: buffer[..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
            let requestLine = lines[0].split(separator: " ")
            let headers = Array(lines.dropFirst())
            let contentLength =
                headers.lazy.compactMap { line -> Int? in
                    let parts = line.split(separator: ":", maxSplits: 1)
                    return parts.count == 2 && parts[0].lowercased() == "content-length"
                        ? Int(parts[1].trimmingCharacters(in: .whitespaces)) : nil
                }.first ?? 0
            while buffer.count < headEnd + 4 + contentLength {
                let count = read(connection, &chunk, chunk.count)
                guard count > 0 else { return }
                buffer.append(contentsOf: chunk[..<count])
            }
            buffer.removeFirst(headEnd + 4 + contentLength)
            let request = Request(
                method: requestLine.first.map(String.init) ?? "", path: requestLine.dropFirst().first.map(String.init) ?? "",
                headers: headers)
            log.withLock { $0.append(request) }
            let response = script.withLock { $0 }(request)
            let body = Array(response.body.utf8)
            let head = "HTTP/1.1 \(response.status) Scripted\r\nContent-Length: \(body.count)\r\nContent-Type: text/plain\r\n\r\n"
            let bytes = Array(head.utf8) + body
            guard bytes.withUnsafeBytes({ write(connection, $0.baseAddress, $0.count) }) == bytes.count else { return }
        }
    }

    private func findHeadEnd(_ buffer: [UInt8]) -> Int? {
        guard buffer.count >= 4 else { return nil }
        for index in 0...(buffer.count - 4)
        where buffer[index] == 13 && buffer[index + 1] == 10 && buffer[index + 2] == 13 && buffer[index + 3] == 10 {
            return index
        }
        return nil
    }
}

extension ScriptedHTTPServer {
    /// Answers as an etcd of `version` would, for `GET /version` and a range under its
    /// dialect's prefix; 404 for every other path, as etcd does.
    public static func etcdScript(version: String, prefix: String) -> @Sendable (Request) -> Response {
        { request in
            switch (request.method, request.path) {
            case ("GET", "/version"): Response(200, #"{"etcdserver":"\#(version)","etcdcluster":"\#(version)"}"#)
            case ("POST", prefix + "/kv/range"): Response(200, #"{"header":{"revision":"7"}}"#)
            case ("POST", prefix + "/auth/authenticate"): Response(200, #"{"token":"tok-\#(version)"}"#)
            default: Response(404, "404 page not found\n")
            }
        }
    }
}
